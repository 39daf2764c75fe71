"""django-eventstream's SSE stream, served by rtdelivery (fast path and view).

What a django-eventstream client sees is what django-eventstream sends: 2 KiB of
padding, ``stream-open``, then each event as ``event:``, ``id:`` and ``data:`` lines
(ids: :mod:`.ids`), ``keep-alive`` events while idle, ``stream-reset`` (``{"channels":
[...]}``) when rtdelivery could not continue a channel from the client's id
(``recovered: false``), and ``stream-error`` (id ``error``) for a bad request or a
refused channel. Channels come from the project's ChannelManager and the URL kwargs
(``channels``, ``channel``, ``format-channels``) or ``?channel=``; the client resumes with
``Last-Event-ID`` or ``?lastEventId=``.

Underneath it is rtdelivery's SSE transport: one hub subscription per channel's topic,
backlog from history, gap repair, no thread per stream, bounded memory (a client that
stops reading is ended and resumes by its id; the text cache is bounded in bytes).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable
from typing import Any

from ... import access, metrics
from ...authentication import check_refused
from ...conf import get_settings
from ...core.cursors import Position
from ...core.events import Event
from ...history import get_history
from ...hub import get_hub
from ...subscriber import Notice, Reset, Subscriber
from ...transports import limits, serving, streaming
from ...transports.common import subscribe_topic
from ...transports.http import Request, Send
from .channels import channels_for_request, unreadable
from .data import sse_text
from .ids import ERROR_ID, BadEventId, make_id, parse_id
from .names import InvalidChannel, channel_to_topic

HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
OPENING = ":" + " " * 2048 + "\n\nevent: stream-open\ndata:\n\n"
KEEP_ALIVE = "event: keep-alive\ndata:\n\n"
#: An even epoch is never a topic's (real ones are odd): a resume from it is "not
#: recovered" (see _since).
NOT_AN_EPOCH = 2
_LINES = re.compile(r"\r\n|\r|\n")
#: The ``transport`` label of the bridge's metrics.
TRANSPORT = "eventstream"


def encode_event(event_type: str, data: str, event_id: str | None = None) -> str:
    """django-eventstream's ``sse_encode_event``."""
    out = f"event: {event_type}\n"
    if event_id:
        out += f"id: {event_id}\n"
    return out + "".join(f"data: {line}\n" for line in _LINES.split(data)) + "\n"


def encode_error(condition: str, text: str, **extra: Any) -> str:
    """django-eventstream's ``sse_encode_error``."""
    data = json.dumps({"condition": condition, "text": text, **extra})
    return encode_event("stream-error", data, ERROR_ID)


#: An event's ``data:`` lines are built once per process for every stream (the id line
#: differs per stream) and kept in a cache bounded in bytes: up to SMALL_EVENTS events of
#: at most SMALL_EVENT_BYTES (a burst's worth), and the last LARGE_EVENTS larger ones (a
#: fan-out writes the same event to every stream at once). At most about 2 MiB plus
#: 2 * LARGE_EVENTS * MAX_EVENT_BYTES (1 MiB at the default 64 KiB).
SMALL_EVENT_BYTES = 4096
SMALL_EVENTS = 256
LARGE_EVENTS = 8


def _tail(data_json: str) -> str:
    return "".join(f"data: {line}\n" for line in _LINES.split(sse_text(data_json))) + "\n"


_small_tail = functools.lru_cache(maxsize=SMALL_EVENTS)(_tail)
_large_tail = functools.lru_cache(maxsize=LARGE_EVENTS)(_tail)


def event_tail(data_json: str) -> str:
    """The ``data:`` lines (and the blank line) of an event whose data is ``data_json``."""
    if len(data_json) <= SMALL_EVENT_BYTES:
        return _small_tail(data_json)
    return _large_tail(data_json)


class _Stream(streaming.Stream):
    """An open bridge stream: formats queued items as django-eventstream frames."""

    __slots__ = ("channels", "ended")

    def __init__(
        self, channels: dict[str, str], positions: dict[str, Position], sub: Subscriber
    ) -> None:
        super().__init__(sub, positions)
        self.channels = channels  # topic -> channel, in the id's order
        #: A stream-error was written: nothing more is (the response ends).
        self.ended = False

    def event_id(self) -> str:
        return make_id((channel, self.positions[topic]) for topic, channel in self.channels.items())

    def frame(self, item: Event | Reset | Notice) -> str:
        if self.ended:
            return ""
        if isinstance(item, Event):
            self.positions[item.topic] = item.position
            head = f"event: {item.type}\nid: {self.event_id()}\n"
            return head + event_tail(item.data_json)
        if isinstance(item, Reset):
            self.positions[item.topic] = item.position
            return self.reset([self.channels[item.topic]])
        if item.kind == "heartbeat":
            return KEEP_ALIVE
        if item.kind == access.TOPIC_ENDED and isinstance(item.data, dict):
            # rtdelivery.unsubscribe(): what django-eventstream sends a kicked listener,
            # and then, as it does after any stream-error, the response ends (closing the
            # subscriber makes the pump end it; a client cannot resume from id "error").
            topic = item.data.get("topic", "")
            channel = self.channels.get(topic, "")
            self.positions.pop(topic, None)
            self.ended = True
            self.sub.close()
            return encode_error(
                "forbidden", f"Permission denied to channels: {channel}", channels=[channel]
            )
        return ""

    def reset(self, channels: list[str]) -> str:
        return encode_event("stream-reset", json.dumps({"channels": channels}), self.event_id())

    def close_frame(self, reason: str) -> str:
        # django-eventstream has no such frame: the response ends and the browser comes
        # back with Last-Event-ID (the id of the last frame written), losing nothing.
        return ""


class _Refused(Exception):
    """Answered the way django-eventstream answers a bad or refused request."""

    def __init__(self, status: int, body: str, content_type: bytes) -> None:
        self.status, self.body, self.content_type = status, body, content_type

    @classmethod
    def bad_request(cls, text: str) -> _Refused:
        return cls(200, encode_error("bad-request", f"Invalid request: {text}."), HEADERS[0][1])


async def _answer(send: Send, refused: _Refused) -> None:
    headers = [(b"content-type", refused.content_type), *HEADERS[1:]]
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": refused.body.encode()})


def _last_event_id(request: Request) -> str | None:
    text = request.header("last-event-id")
    if not text:
        for value in reversed(request.query.get("lastEventId", [])):
            if value:
                return value
    return text or None


async def _since(topics: dict[str, str], seqs: dict[str, int], epochs: dict[str, int]) -> dict:
    """Where each topic resumes: the client's seq in the epoch its id names, or in the
    current epoch for an id without one. A seq the epoch never reached (ids are not
    signed) is never passed on as such: it reads as a lost history (not recovered)."""
    heads = await get_history().heads(list(topics))
    since: dict[str, Position | None] = {}
    for topic, channel in topics.items():
        seq = seqs.get(channel)
        if seq is None:
            since[topic] = None
            continue
        head = heads.get(topic)
        epoch = epochs.get(channel, head.epoch if head is not None else 0)
        if head is None:
            since[topic] = Position(0, 0) if seq == 0 else Position(NOT_AN_EPOCH, seq)
        elif (epoch == head.epoch and seq > head.seq) or (epoch % 2 == 0 and epoch != 0):
            since[topic] = Position(NOT_AN_EPOCH, seq)
        else:
            since[topic] = Position(epoch, seq)
    return since


async def handle(request: Request, send: Send) -> None:
    """The bridge's stream as a handler (views); the fast path runs :func:`_serve`."""
    await streaming.serve(_open, request, send)


def _serve(request: Request, method: str, send: Send) -> Awaitable[None]:
    return streaming.serve(_open, request, send, method)


async def _open(request: Request, start: Send, send: Send) -> _Stream | None:
    """The open stream, or None when the request was answered as django-eventstream
    answers a bad or refused one."""
    try:
        return await _opened(request, start, send)
    except _Refused as refused:
        await _answer(start, refused)
        return None


async def _opened(request: Request, start: Send, send: Send) -> _Stream:
    user = check_refused(await request.user())
    url_route = request.scope.get("url_route") or {}
    view_kwargs = dict(url_route.get("kwargs") or {})
    django_request = request.django
    if django_request is None:
        django_request = request.as_django()
        django_request.user = user
    channels = await channels_for_request(django_request, view_kwargs)
    if not channels:
        raise _Refused.bad_request("No channels specified")
    if len(channels) > get_settings().max_topics:
        raise _Refused.bad_request("Channel limit exceeded")
    try:
        topics = {channel_to_topic(channel): channel for channel in channels}
    except InvalidChannel as exc:
        raise _Refused.bad_request(exc.message.rstrip(".")) from exc
    last_id = _last_event_id(request)
    seqs: dict[str, int] = {}
    epochs: dict[str, int] = {}
    if last_id == ERROR_ID:
        raise _Refused(
            400,
            "Invalid request: Can't resume session after stream-error.\n",
            b"text/html; charset=utf-8",
        )
    if last_id:
        try:
            parsed = parse_id(last_id)
        except BadEventId as exc:
            raise _Refused.bad_request("Failed to parse Last-Event-ID or lastEventId") from exc
        seqs, epochs = parsed.seqs, parsed.epochs
    refused, code = await unreadable(user, topics)
    if refused:
        metrics.refused(TRANSPORT, 403, code)
        raise _Refused(
            200,
            encode_error(
                "forbidden",
                "Permission denied to channels: " + ", ".join(refused),
                channels=refused,
            ),
            HEADERS[0][1],
        )
    since = await _since(topics, seqs, epochs)
    conf = get_settings()
    hub = get_hub()
    stream = _Stream(topics, {}, Subscriber(conf.queue_size))
    sub = stream.sub
    try:
        stream.open(hub, limits.hold("sse", *await limits.client_of(request)), send)
        if request.django is None:  # a view is cancelled by Django when the client leaves
            stream.watch(request.receive)
        session = request.session()
        stream.registration = await access.register(
            sub, user, getattr(session, "session_key", None)
        )
        lost: list[str] = []
        for topic in topics:
            await subscribe_topic(hub, sub, topic, since[topic], stream.positions, lost)
        await start({"type": "http.response.start", "status": 200, "headers": HEADERS})
        opening = OPENING
        if lost:
            opening += stream.reset([topics[topic] for topic in lost])
        await stream.write(opening)
        streaming.heartbeats_for_loop().add(stream)
    except BaseException:
        await stream.close()
        raise
    return stream


setattr(handle, serving.STREAM, _serve)
for _labelled in (handle, _open):  # read by metrics.endpoint_of
    setattr(_labelled, "metrics_label", TRANSPORT)  # noqa: B010
