"""The event: one published message in a topic, and its JSON wire form."""

from __future__ import annotations

import json
import re
from typing import Any

from .cursors import Position, event_id
from .errors import EventTooLarge, InvalidEvent
from .sse import format_event

MAX_TYPE_LENGTH = 64
RESERVED_TYPE_PREFIX = "rt."
_TYPE_RE = re.compile(r"[A-Za-z0-9_.:\-]+")


def validate_type(event_type: object) -> str:
    """Return ``event_type`` if valid: 1-64 of letters, digits and ``_.:-``."""
    if not isinstance(event_type, str):
        raise InvalidEvent(f"Expected the event type as a string, got {type(event_type).__name__}.")
    if not 0 < len(event_type) <= MAX_TYPE_LENGTH or not _TYPE_RE.fullmatch(event_type):
        raise InvalidEvent(
            f"Expected an event type of 1 to {MAX_TYPE_LENGTH} letters, digits or '_.:-', "
            f"got {event_type[:MAX_TYPE_LENGTH]!r}."
        )
    if event_type[:3].lower() == RESERVED_TYPE_PREFIX:
        # SSE control frames (rt.open, rt.reset, rt.presence, rt.close) use these names.
        raise InvalidEvent(
            f"Expected an event type not starting with {RESERVED_TYPE_PREFIX!r} "
            f"(reserved for rtdelivery's own frames), got {event_type!r}."
        )
    return event_type


def encode_data(data: Any, max_bytes: int) -> str:
    """Serialize event data once; raise before anything is stored if it can't be sent."""
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"Expected JSON-serializable event data: {exc}.") from exc
    except RecursionError as exc:
        raise InvalidEvent("Expected JSON-serializable event data: nested too deeply.") from exc
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidEvent(
            "Expected event data of valid Unicode text: it contains a lone surrogate "
            f"({text[exc.start : exc.end]!r})."
        ) from exc
    if size > max_bytes:
        raise EventTooLarge(
            f"Expected event data of at most {max_bytes} bytes as JSON, got {size} bytes."
        )
    return text


class Event:
    """One event of a topic. ``raw`` is its JSON wire form, built once and shared."""

    __slots__ = (
        "_raw",
        "_sse",
        "_sse_tail",
        "_ws",
        "data_json",
        "duplicate",
        "epoch",
        "id",
        "position",
        "seq",
        "time",
        "topic",
        "type",
    )

    def __init__(
        self,
        topic: str,
        seq: int,
        epoch: int,
        type: str,  # noqa: A002 - the wire contract's name
        data_json: str,
        time: int,
        *,
        key: bytes,
        id: str | None = None,  # noqa: A002
        raw: str | None = None,
        duplicate: bool = False,
    ) -> None:
        self.topic = topic
        self.seq = seq
        self.epoch = epoch
        self.type = type
        self.data_json = data_json
        self.time = time
        self.id = id if id is not None else event_id(topic, epoch, seq, key)
        self._raw = raw
        #: A publish that repeated an idempotency key: this is the first publish's event.
        self.duplicate = duplicate
        self._ws: str | None = None
        self._sse: str | None = None
        self._sse_tail: str | None = None
        #: Where this event is in its topic; built once, shared by every subscriber.
        self.position = Position(epoch, seq)

    @property
    def data(self) -> Any:
        return json.loads(self.data_json)

    @property
    def raw(self) -> str:
        """``{"id", "topic", "seq", "type", "data", "time"}`` as compact JSON."""
        if self._raw is None:
            # topic, type and id come from fixed alphabets: no escaping needed.
            self._raw = (
                f'{{"id":"{self.id}","topic":"{self.topic}","seq":{self.seq},'
                f'"type":"{self.type}","data":{self.data_json},"time":{self.time}}}'
            )
        return self._raw

    @property
    def ws_frame(self) -> str:
        """The WebSocket ``event`` frame, built once per process for all subscribers."""
        if self._ws is None:
            self._ws = '{"op":"event",' + self.raw[1:]
        return self._ws

    @property
    def sse_frame(self) -> str:
        """The SSE message for a one-topic stream (its ``id:`` is the event's own id),
        built once per process for all subscribers."""
        if self._sse is None:
            self._sse = format_event(self.raw, event=self.type, id=self.id)
        return self._sse

    @property
    def sse_tail(self) -> str:
        """``event:`` and ``data:`` lines, for streams that put their own ``id:`` first."""
        if self._sse_tail is None:
            self._sse_tail = format_event(self.raw, event=self.type)
        return self._sse_tail

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "topic": self.topic,
            "seq": self.seq,
            "type": self.type,
            "data": self.data,
            "time": self.time,
        }

    def __repr__(self) -> str:
        return f"<Event {self.topic}#{self.seq} epoch={self.epoch} type={self.type}>"

    # History records: "<seq>|<time>|<type>|<data json>" (type has no "|").
    def to_record(self) -> str:
        return f"{self.seq}|{self.time}|{self.type}|{self.data_json}"

    @classmethod
    def from_record(cls, topic: str, epoch: int, record: str | bytes, key: bytes) -> Event:
        if isinstance(record, bytes):
            record = record.decode("utf-8")
        seq, time, type_, data_json = record.split("|", 3)
        return cls(topic, int(seq), epoch, type_, data_json, int(time), key=key)
