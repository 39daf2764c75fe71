"""The event model: wire JSON, WebSocket frame, history records, type and data validation."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtdelivery.core.cursors import Cursor, Position, event_id
from rtdelivery.core.errors import EventTooLarge, InvalidEvent
from rtdelivery.core.events import MAX_TYPE_LENGTH, Event, encode_data, validate_type
from tests.core.strategies import FAST, event_types, json_data, small_positions, topics

KEY = hashlib.sha256(b"rtdelivery.cursor:test-secret").digest()
WIRE_KEYS = ["id", "topic", "seq", "type", "data", "time"]
TIMES = st.integers(min_value=0, max_value=2**53)
_HI = {"text": "hi"}


def make_event(
    data: Any = _HI, *, topic: str = "chat.lobby", seq: int = 3, epoch: int = 77, **kw: Any
) -> Event:
    return Event(
        topic,
        seq,
        epoch,
        kw.pop("type", "message"),
        encode_data(data, 10**6),
        kw.pop("time", 1_700_000_000_123),
        key=KEY,
        **kw,
    )


# -- wire form ----------------------------------------------------------------------------------


@FAST
@given(topics, small_positions, event_types, json_data, TIMES)
def test_raw_is_json_with_exactly_the_wire_fields(
    topic: str, pos: Position, etype: str, data: Any, time: int
) -> None:
    event = Event(topic, pos.seq, pos.epoch, etype, encode_data(data, 10**6), time, key=KEY)
    parsed = json.loads(event.raw)
    assert list(parsed) == WIRE_KEYS
    assert parsed == {
        "id": event_id(topic, pos.epoch, pos.seq, KEY),
        "topic": topic,
        "seq": pos.seq,
        "type": etype,
        "data": json.loads(json.dumps(data)),  # e.g. -0.0 and dict key order as JSON has them
        "time": time,
    }
    assert parsed == event.as_dict()
    assert Cursor.decode(parsed["id"], KEY) == Cursor({topic: pos})


@FAST
@given(topics, small_positions, event_types, json_data, TIMES)
def test_ws_frame_is_the_event_with_op_first(
    topic: str, pos: Position, etype: str, data: Any, time: int
) -> None:
    event = Event(topic, pos.seq, pos.epoch, etype, encode_data(data, 10**6), time, key=KEY)
    frame = json.loads(event.ws_frame)
    assert list(frame) == ["op", *WIRE_KEYS]
    assert frame == {"op": "event", **json.loads(event.raw)}


def test_raw_is_compact_and_exact() -> None:
    event = make_event({"a": [1, "é"]}, id="ID")
    assert event.raw == (
        '{"id":"ID","topic":"chat.lobby","seq":3,"type":"message",'
        '"data":{"a":[1,"é"]},"time":1700000000123}'
    )
    assert event.ws_frame == (
        '{"op":"event","id":"ID","topic":"chat.lobby","seq":3,"type":"message",'
        '"data":{"a":[1,"é"]},"time":1700000000123}'
    )


def test_raw_and_ws_frame_are_built_once() -> None:
    event = make_event()
    assert event.raw is event.raw
    assert event.ws_frame is event.ws_frame


def test_prebuilt_raw_is_used_as_is() -> None:
    raw = '{"id":"x","topic":"t","seq":1,"type":"message","data":1,"time":2}'
    event = Event("t", 1, 1, "message", "1", 2, key=KEY, id="x", raw=raw)
    assert event.raw is raw
    assert json.loads(event.ws_frame) == {"op": "event", **json.loads(raw)}


def test_id_defaults_to_the_event_cursor_and_can_be_given() -> None:
    event = make_event(seq=9, epoch=5)
    assert event.id == event_id("chat.lobby", 5, 9, KEY)
    assert make_event(id="given").id == "given"


def test_data_position_and_repr() -> None:
    event = make_event({"n": [1, 2]}, seq=4, epoch=8, type="chat.msg")
    assert event.data == {"n": [1, 2]}
    assert event.position == Position(8, 4)
    assert type(event.position) is Position
    assert repr(event) == "<Event chat.lobby#4 epoch=8 type=chat.msg>"


def test_data_json_null_is_json_null() -> None:
    event = Event("t", 1, 1, "message", "null", 0, key=KEY)
    assert json.loads(event.raw)["data"] is None
    assert event.data is None


# -- history records ----------------------------------------------------------------------------


def assert_same_event(a: Event, b: Event) -> None:
    assert (a.topic, a.seq, a.epoch, a.type, a.data_json, a.time, a.id) == (
        b.topic,
        b.seq,
        b.epoch,
        b.type,
        b.data_json,
        b.time,
        b.id,
    )
    assert a.raw == b.raw


@pytest.mark.parametrize(
    "data",
    [
        "a|b|c",
        {"x|y": "1|2|3", "z": "|"},
        ["|", "||", "|||"],
        "😀 é ü 中文 \u2028 \u0000",
        {"emoji": "🎉|🎉", "text": "line1\nline2\r\n"},
        "",
        None,
        0,
    ],
)
def test_record_round_trip_keeps_pipes_and_unicode(data: Any) -> None:
    event = make_event(data, type="x:y")
    record = event.to_record()
    assert record == "3|1700000000123|x:y|" + json.dumps(
        data, ensure_ascii=False, separators=(",", ":")
    )
    for form in (record, record.encode("utf-8")):
        back = Event.from_record("chat.lobby", 77, form, KEY)
        assert_same_event(back, event)
        assert back.data == data


@FAST
@given(topics, small_positions, event_types, json_data, TIMES)
def test_record_round_trip_property(
    topic: str, pos: Position, etype: str, data: Any, time: int
) -> None:
    event = Event(topic, pos.seq, pos.epoch, etype, encode_data(data, 10**6), time, key=KEY)
    back = Event.from_record(topic, pos.epoch, event.to_record().encode("utf-8"), KEY)
    assert_same_event(back, event)


# -- validate_type ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "etype", ["message", "a", "chat:message", "x-y_z.1:2", "A" * MAX_TYPE_LENGTH]
)
def test_valid_types(etype: str) -> None:
    assert validate_type(etype) is etype


@pytest.mark.parametrize(
    "etype", ["a b", "a|b", 'a"b', "é", "a\n", "a\r", "a\x00", "a/b", "{}", "a,b", "a\\b"]
)
def test_invalid_types_are_rejected_with_the_rules(etype: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_type(etype)
    assert info.value.message == (
        f"Expected an event type of 1 to {MAX_TYPE_LENGTH} letters, digits or '_.:-', "
        f"got {etype!r}."
    )
    assert info.value.code == "invalid_event"
    assert info.value.status == 400


def test_empty_and_too_long_types_are_rejected() -> None:
    with pytest.raises(InvalidEvent, match="got ''"):
        validate_type("")
    too_long = "a" * (MAX_TYPE_LENGTH + 1)
    with pytest.raises(InvalidEvent) as info:
        validate_type(too_long)
    assert f"got {'a' * MAX_TYPE_LENGTH!r}" in info.value.message  # quoted, truncated


@pytest.mark.parametrize(("value", "name"), [(None, "NoneType"), (1, "int"), (b"m", "bytes")])
def test_non_string_types_are_rejected(value: object, name: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_type(value)
    assert info.value.message == f"Expected the event type as a string, got {name}."


@FAST
@given(st.text(max_size=70))
def test_type_validation_matches_the_rule(text: str) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")
    reserved = text[:3].lower() == "rt."  # rtdelivery's own SSE frame names
    if 1 <= len(text) <= MAX_TYPE_LENGTH and set(text) <= allowed and not reserved:
        assert validate_type(text) == text
    else:
        with pytest.raises(InvalidEvent):
            validate_type(text)


@FAST
@given(event_types)
def test_valid_types_need_no_json_escaping(etype: str) -> None:
    # Event.raw inserts the type without escaping; that is only right for this alphabet.
    assert json.dumps(etype) == f'"{etype}"'
    assert "|" not in etype  # the history record separator


# -- encode_data --------------------------------------------------------------------------------


def test_encode_data_is_compact_utf8_json() -> None:
    assert encode_data({"a": [1, 2], "b": "é"}, 100) == '{"a":[1,2],"b":"é"}'
    assert encode_data(None, 100) == "null"
    assert encode_data("😀", 100) == '"😀"'


@FAST
@given(json_data)
def test_encode_data_round_trips(data: Any) -> None:
    text = encode_data(data, 10**6)
    assert json.loads(text) == json.loads(json.dumps(data))


def test_size_limit_counts_utf8_bytes_inclusive() -> None:
    assert encode_data("é", 4) == '"é"'  # 4 bytes: quote, 2-byte é, quote
    with pytest.raises(EventTooLarge) as info:
        encode_data("é", 3)
    assert info.value.message == "Expected event data of at most 3 bytes as JSON, got 4 bytes."
    assert info.value.code == "too_large"
    assert info.value.status == 413


def test_large_data_is_rejected_with_sizes() -> None:
    with pytest.raises(EventTooLarge, match=r"at most 65536 bytes as JSON, got 70002 bytes"):
        encode_data("x" * 70000, 65536)


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        ({1, 2}, "Object of type set is not JSON serializable"),
        (object(), "Object of type object is not JSON serializable"),
        (b"bytes", "Object of type bytes is not JSON serializable"),
        ({"when": 1j}, "Object of type complex is not JSON serializable"),
        ({(1, 2): "tuple key"}, "keys must be str, int, float, bool or None, not tuple"),
        (math.nan, "Out of range float values are not JSON compliant"),
        (math.inf, "Out of range float values are not JSON compliant"),
        ({"deep": [1, -math.inf]}, "Out of range float values are not JSON compliant"),
    ],
)
def test_unserializable_data_is_rejected_clearly(data: Any, detail: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        encode_data(data, 10**6)
    assert info.value.message.startswith("Expected JSON-serializable event data: ")
    assert detail in info.value.message
    assert info.value.code == "invalid_event"
    assert info.value.status == 400


def test_circular_data_is_rejected() -> None:
    data: list[Any] = []
    data.append(data)
    with pytest.raises(InvalidEvent, match="Circular reference detected"):
        encode_data(data, 10**6)


def test_deeply_nested_data_is_rejected_not_a_crash() -> None:
    data: list[Any] = []
    for _ in range(100_000):
        data = [data]
    with pytest.raises(InvalidEvent) as info:
        encode_data(data, 10**9)
    assert info.value.message == "Expected JSON-serializable event data: nested too deeply."


@pytest.mark.parametrize("data", ["\ud800", {"k": "a\udfffb"}, {"\udc00": 1}])
def test_lone_surrogates_are_rejected_not_a_crash(data: Any) -> None:
    # json.loads('"\\ud800"') produces such a string, so clients can send it.
    with pytest.raises(InvalidEvent) as info:
        encode_data(data, 10**6)
    assert info.value.message.startswith(
        "Expected event data of valid Unicode text: it contains a lone surrogate"
    )


def test_surrogate_pairs_from_json_are_fine() -> None:
    data = json.loads('"\\ud83d\\ude00"')
    assert encode_data(data, 100) == '"😀"'


@pytest.mark.parametrize("event_type", ["rt.open", "rt.close", "RT.reset", "rt.presence", "Rt.x"])
def test_reserved_rt_prefix_is_refused(event_type: str) -> None:
    # Publishers must not be able to forge SSE control frames in other clients' streams.
    with pytest.raises(InvalidEvent, match="reserved"):
        validate_type(event_type)


@pytest.mark.parametrize("event_type", ["rtx", "rt", "rt-open", "chat.rt.open"])
def test_names_near_the_reserved_prefix_are_allowed(event_type: str) -> None:
    assert validate_type(event_type) == event_type
