"""SSE framing, checked by a parser that follows the WHATWG event-stream algorithm.

https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtdelivery.core.sse import format_comment, format_event, format_retry
from tests.core.strategies import FAST

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass
class Dispatched:
    type: str
    data: str
    last_event_id: str


@dataclass
class EventSource:
    """The client side of the algorithm: feed it the stream, read what it dispatched."""

    events: list[Dispatched] = field(default_factory=list)
    last_event_id: str = ""
    reconnection_time: int | None = None
    _data: str = ""
    _type: str = ""
    _id_buffer: str = ""
    _started: bool = False

    def feed(self, stream: str) -> EventSource:
        if not self._started:
            self._started = True
            if stream.startswith("\ufeff"):  # one leading BOM is skipped
                stream = stream[1:]
        *lines, rest = _LINE_END.split(stream)
        # Framing functions emit whole lines only: nothing may be left unterminated.
        assert rest == "", f"unterminated line {rest!r}"
        for line in lines:
            self._line(line)
        return self

    def _line(self, line: str) -> None:
        if line == "":
            self._dispatch()
        elif line.startswith(":"):
            pass  # comment
        elif ":" in line:
            name, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
            self._field(name, value)
        else:
            self._field(line, "")

    def _field(self, name: str, value: str) -> None:
        if name == "event":
            self._type = value
        elif name == "data":
            self._data += value + "\n"
        elif name == "id":
            if "\x00" not in value:
                self._id_buffer = value
        elif name == "retry" and value and all("0" <= c <= "9" for c in value):
            self.reconnection_time = int(value)
        # any other field is ignored

    def _dispatch(self) -> None:
        self.last_event_id = self._id_buffer
        if self._data == "":
            self._type = ""
            return
        data = self._data[:-1] if self._data.endswith("\n") else self._data
        self.events.append(Dispatched(self._type or "message", data, self.last_event_id))
        self._data = ""
        self._type = ""


def parse(stream: str) -> EventSource:
    return EventSource().feed(stream)


def expected_data(data: str) -> str:
    """What a browser sees: line breaks normalized to LF, NUL replaced (it is not sent)."""
    return _LINE_END.sub("\n", data).replace("\x00", "\ufffd")


# Text that stresses framing: line breaks of every kind, NUL, colons, field names, BOM.
_pieces = st.sampled_from(
    [
        "\n",
        "\r",
        "\r\n",
        "\n\n",
        "\x00",
        ":",
        " ",
        "data: ",
        "event: evil",
        "id: 1",
        "retry: 1",
        "\ufeff",
        "\u2028",
        "\u0085",
        "é",
        "{}",
    ]
)
framing_text = st.lists(st.one_of(_pieces, st.text(max_size=5)), max_size=12).map("".join)
safe_field = st.text(
    alphabet=st.characters(exclude_characters="\r\n\x00", exclude_categories=("Cs",)),
    max_size=20,
)


# -- the parser itself -------------------------------------------------------------------------


def test_parser_follows_the_spec_examples() -> None:
    src = parse("data: YHOO\ndata: +2\ndata: 10\n\n")
    assert src.events == [Dispatched("message", "YHOO\n+2\n10", "")]
    src = parse(": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\n")
    assert src.events == [
        Dispatched("message", "first event", "1"),
        Dispatched("message", "second event", ""),
    ]
    src = parse("data\n\ndata\ndata\n\ndata:\n")
    # The first block fires with empty data, the middle one with "\n", the last never fires.
    assert src.events == [Dispatched("message", "", ""), Dispatched("message", "\n", "")]
    assert parse("\n\nid: 5\n\n").events == []  # blank lines alone dispatch nothing
    src = parse("data:test\n\ndata: test\n\n")
    assert [e.data for e in src.events] == ["test", "test"]
    assert parse("data:  two spaces\n\n").events[0].data == " two spaces"
    assert parse("data: a\r\ndata: b\rdata: c\n\r").events[0].data == "a\nb\nc"


# -- format_event ------------------------------------------------------------------------------


def test_format_event_exact_output() -> None:
    assert format_event('{"a":1}') == 'data: {"a":1}\n\n'
    assert format_event("x", event="rt.open", id="C1") == "id: C1\nevent: rt.open\ndata: x\n\n"
    assert format_event("a\nb") == "data: a\ndata: b\n\n"


@FAST
@given(framing_text)
def test_any_data_comes_back_with_normalized_line_breaks(data: str) -> None:
    stream = format_event(data)
    src = parse(stream)
    assert src.events == [Dispatched("message", expected_data(data), "")]


@FAST
@given(st.text())
def test_any_unicode_data_comes_back(data: str) -> None:
    assert parse(format_event(data)).events == [Dispatched("message", expected_data(data), "")]


@FAST
@given(framing_text, safe_field, safe_field)
def test_event_type_and_id_come_back(data: str, event: str, id_: str) -> None:
    src = parse(format_event(data, event=event, id=id_))
    assert src.events == [Dispatched(event or "message", expected_data(data), id_)]
    assert src.last_event_id == id_


@FAST
@given(st.lists(st.tuples(framing_text, safe_field), min_size=1, max_size=5))
def test_data_cannot_break_framing_of_a_sequence(messages: list[tuple[str, str]]) -> None:
    stream = "".join(format_event(data, event="t", id=id_) for data, id_ in messages)
    src = parse(stream)
    assert src.events == [Dispatched("t", expected_data(d), i) for d, i in messages]


@FAST
@given(framing_text)
def test_output_has_only_lf_line_ends_and_no_nul(data: str) -> None:
    stream = format_event(data)
    assert "\r" not in stream
    assert "\x00" not in stream
    assert stream.endswith("\n\n")
    lines = stream[:-2].split("\n")
    assert all(line.startswith("data: ") for line in lines)


def test_injection_attempt_stays_inside_data() -> None:
    data = "x\n\nevent: evil\nid: 666\ndata: injected\r\rretry: 1\n"
    src = parse(format_event(data, event="message", id="ok"))
    assert src.events == [Dispatched("message", expected_data(data), "ok")]
    assert src.reconnection_time is None


def test_nul_in_data_is_replaced_not_sent() -> None:
    stream = format_event("a\x00b")
    assert stream == "data: a\ufffdb\n\n"
    assert parse(stream).events[0].data == "a\ufffdb"


def test_trailing_line_break_in_data_is_kept() -> None:
    assert parse(format_event("abc\n")).events[0].data == "abc\n"
    assert parse(format_event("\n")).events[0].data == "\n"
    assert parse(format_event("\r\n")).events[0].data == "\n"


def test_empty_data_is_delivered_as_empty() -> None:
    assert format_event("") == "data: \n\n"
    assert parse(format_event("")).events == [Dispatched("message", "", "")]


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nb", "\n", "a\x00b", "\x00"])
@pytest.mark.parametrize("name", ["id", "event"])
def test_id_and_event_with_cr_lf_nul_raise(name: str, bad: str) -> None:
    message = f"SSE {name} must not contain CR, LF or NUL, got {bad!r}."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        format_event("x", **{name: bad})


def test_empty_id_resets_last_event_id() -> None:
    src = parse(format_event("a", id="1") + format_event("b", id=""))
    assert [e.last_event_id for e in src.events] == ["1", ""]


# -- comments and retry ------------------------------------------------------------------------------


def test_format_comment_exact_output() -> None:
    assert format_comment() == ": \n\n"
    assert format_comment("ping") == ": ping\n\n"
    assert format_comment("a\nb\r\nc\rd") == ": a\n: b\n: c\n: d\n\n"


@FAST
@given(framing_text, framing_text)
def test_comments_dispatch_nothing_and_do_not_disturb_events(comment: str, data: str) -> None:
    assert parse(format_comment(comment)).events == []
    stream = format_comment(comment) + format_event(data, id="1") + format_comment(comment)
    src = parse(stream)
    assert src.events == [Dispatched("message", expected_data(data), "1")]
    assert src.reconnection_time is None


@FAST
@given(st.integers(min_value=0, max_value=10**9))
def test_retry_sets_the_reconnection_time(ms: int) -> None:
    stream = format_retry(ms)
    assert stream == f"retry: {ms}\n\n"
    src = parse(stream + format_event("x"))
    assert src.reconnection_time == ms
    assert src.events == [Dispatched("message", "x", "")]


def test_retry_rejects_negative_values() -> None:
    with pytest.raises(ValueError, match=r"^retry must be >= 0 milliseconds, got -1\.$"):
        format_retry(-1)
