"""Server-Sent Events: one long-lived ``text/event-stream`` response over many topics.

Each event's ``id:`` is a cursor over every topic of the stream, so the browser's
``Last-Event-ID`` resumes the whole stream. The first frame is always ``rt.open``
(``{"cursor", "recovered", "lost"}``); presence changes are ``rt.presence``; a topic
that lost events mid-stream gets ``rt.reset``; a stream ended by the server gets
``rt.close`` with a reason and the cursor to resume from.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from collections.abc import Callable

from .. import access, metrics
from ..conf import get_settings
from ..core import sse as framing
from ..core.cursors import Cursor, Position
from ..core.events import Event
from ..hub import get_hub
from ..policy import effective_user
from ..presence import connection_id, get_presence
from ..subscriber import Item, Notice, Reset, SlowConsumer, Subscriber, SubscriberClosed
from . import flow, limits
from .common import authorize_all, subscribe_topic, wait_disconnect
from .http import Request, Send

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    # nginx: don't buffer; "no-transform" keeps compressing proxies from holding frames.
    (b"x-accel-buffering", b"no"),
]


HEARTBEAT = Notice("heartbeat")
#: Text per write (characters): a big batch is written in parts, each waiting for room,
#: so the server never holds one batch's whole text at once.
WRITE_CHUNK = 64 * 1024


class _Stream:
    """Formats items into SSE frames, tracking the stream's cursor."""

    __slots__ = ("idle", "key", "positions", "single", "sub")

    def __init__(self, positions: dict[str, Position], key: bytes, sub: Subscriber) -> None:
        self.positions = positions
        self.key = key
        self.single = len(positions) == 1
        self.sub = sub
        self.idle = 0  # heartbeat ticks since the stream last wrote

    def cursor(self) -> str:
        return Cursor(self.positions).encode(self.key)

    def frame(self, item: Event | Reset | Notice) -> str:
        if isinstance(item, Event):
            self.positions[item.topic] = item.position
            if self.single:
                # One topic: the event's own id is the stream cursor, and the whole frame
                # is built once per process for every stream.
                return item.sse_frame
            # The cursor is base64url: no line break can get into the id line.
            return "id: " + self.cursor() + "\n" + item.sse_tail
        if isinstance(item, Reset):
            self.positions[item.topic] = item.position
            data = json.dumps({"topic": item.topic, "cursor": self.cursor()})
            return framing.format_event(data, event="rt.reset", id=self.cursor())
        if item.kind == "presence":
            return framing.format_event(json.dumps(item.data), event="rt.presence")
        if item.kind == "heartbeat":
            return _HEARTBEAT_FRAME
        if item.kind == access.TOPIC_ENDED:
            # rtdelivery.unsubscribe(): the topic is no longer this stream's.
            ended = item.data if isinstance(item.data, dict) else {}
            return framing.format_event(
                json.dumps({**ended, "cursor": self.cursor()}), event="rt.unsubscribed"
            )
        return ""

    def close_frame(self, reason: str) -> str:
        data = json.dumps({"reason": reason, "cursor": self.cursor()})
        return framing.format_event(data, event="rt.close")


_HEARTBEAT_FRAME = framing.format_comment("hb")


class _Heartbeats:
    """One task per event loop keeps idle streams alive, instead of a timer armed on
    every wait of every stream: every SSE_HEARTBEAT/2 seconds it counts a tick on each
    stream, and a stream silent for two ticks gets a heartbeat comment queued."""

    def __init__(self) -> None:
        self.streams: set[_Stream] = set()
        self.task: asyncio.Task[None] | None = None

    def add(self, stream: _Stream) -> None:
        self.streams.add(stream)
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())

    def discard(self, stream: _Stream) -> None:
        self.streams.discard(stream)
        if not self.streams and self.task is not None:
            self.task.cancel()
            self.task = None

    async def _run(self) -> None:
        while self.streams:
            await asyncio.sleep(get_settings().sse_heartbeat / 2)
            for stream in self.streams:
                stream.idle += 1
                if stream.idle >= 2:
                    stream.idle = 0
                    stream.sub.push_notice(HEARTBEAT)


_heartbeats: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Heartbeats] = (
    weakref.WeakKeyDictionary()
)


def _heartbeats_for_loop() -> _Heartbeats:
    loop = asyncio.get_running_loop()
    beats = _heartbeats.get(loop)
    if beats is None:
        beats = _heartbeats[loop] = _Heartbeats()
    return beats


async def handle(request: Request, send: Send) -> None:
    conf = get_settings()
    topics = request.topics()
    cursor = request.cursor(last_event_id=True)
    # client= is accepted (a client sends it on every transport) but adds nothing: the
    # stream is present as a connection of its own while it is open (not counted twice).
    request.client_id()
    await authorize_all(request, topics)
    with limits.hold("sse", *await limits.client_of(request)):
        hub = get_hub()
        sub = Subscriber(conf.queue_size)
        # Writes wait for room under every server (Daphne's own send never does), and a
        # shutdown ends the stream with rt.close going_away (rtdelivery.shutdown).
        link = flow.connect(send, sub, scope_type="http")
        send = link.send
        positions: dict[str, Position] = {}
        lost: list[str] = []
        gone = False

        async def watch() -> None:
            # The client went away: wake the stream (get() raises SubscriberClosed).
            nonlocal gone
            await wait_disconnect(request.receive)
            gone = True
            sub.close()

        disconnect = asyncio.ensure_future(watch())
        conn_id = connection_id()
        present: list[str] = []  # presence topics joined (left when the stream ends)
        registration: access.Registration | None = None
        try:
            # Token expiry and rtdelivery.disconnect() reach it (authenticated users only).
            session = request.session()
            registration = await access.register(
                sub, await request.user(), getattr(session, "session_key", None), conn_id, "sse"
            )
            for topic in topics:
                await subscribe_topic(hub, sub, topic, cursor.get(topic), positions, lost)
                if conf.topic_options(topic).presence:
                    present.append(topic)  # first: a join failing half-way is still left
                    who = effective_user(await request.user(), topic)
                    await get_presence().join(topic, conn_id, who)
            stream = _Stream(positions, conf.cursor_key, sub)
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            opening = json.dumps({"cursor": stream.cursor(), "recovered": not lost, "lost": lost})
            await _write(
                send,
                framing.format_retry(conf.sse_retry)
                + framing.format_event(opening, event="rt.open", id=stream.cursor()),
            )
            beats = _heartbeats_for_loop()
            beats.add(stream)
            try:
                await _pump(sub, stream, send, lambda: gone)
            finally:
                beats.discard(stream)
        finally:
            try:
                disconnect.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await disconnect
                if registration is not None:
                    registration.close()
                await hub.unsubscribe_all(sub)
                for topic in present:
                    with contextlib.suppress(Exception):
                        await get_presence().leave(topic, conn_id)
            finally:
                link.release()


async def _write(send: Send, text: str, *, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": text.encode(), "more_body": more})


async def _pump(
    sub: Subscriber,
    stream: _Stream,
    send: Send,
    gone: Callable[[], bool],
) -> None:
    """Write queued items as they come (heartbeats arrive as queued notices too)."""
    while True:
        try:
            items = await sub.get()
        except SlowConsumer:
            metrics.slow_consumer_ended("sse", "", None, stream.positions)
            await _write(send, stream.close_frame("too_slow"), more=False)
            return
        except SubscriberClosed:
            if not gone():
                await _write(send, stream.close_frame("going_away"), more=False)
            return
        if gone():
            return
        stream.idle = 0
        if await _write_items(sub, stream, send, items):
            return


async def _write_items(sub: Subscriber, stream: _Stream, send: Send, items: list[Item]) -> bool:
    """Write ``items`` in writes of about WRITE_CHUNK bytes: each one waits for room in the
    server's buffer, and a connection that overflowed meanwhile stops at once (its cursor
    covers what was written; the next get() raises SlowConsumer). True when an ``end``
    notice (access ended) ended the stream with ``rt.close``."""
    parts: list[str] = []
    size = delivered = 0
    for item in items:
        if isinstance(item, Notice) and item.kind == access.END:
            parts.append(stream.close_frame(str(item.data)))
            await _write(send, "".join(parts), more=False)
            metrics.delivered["sse"].n += delivered
            return True
        text = stream.frame(item)
        if not text:
            continue
        parts.append(text)
        size += len(text)
        delivered += isinstance(item, Event)
        if size >= WRITE_CHUNK:
            await _write(send, "".join(parts))
            parts, size = [], 0
            if sub.overflowed:
                break
    if parts:
        await _write(send, "".join(parts))
    metrics.delivered["sse"].n += delivered
    return False
