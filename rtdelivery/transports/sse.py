"""Server-Sent Events: one long-lived ``text/event-stream`` response over many topics.

Each event's ``id:`` is a cursor over every topic of the stream, so the browser's
``Last-Event-ID`` resumes the whole stream. The first frame is always ``rt.open``
(``{"cursor", "recovered", "lost"}``); presence changes are ``rt.presence``; a topic
that lost events mid-stream gets ``rt.reset``; a stream ended by the server gets
``rt.close`` with a reason and the cursor to resume from.

An open stream is one coroutine that keeps nothing of the request
(:mod:`rtdelivery.transports.streaming`); this module opens it and writes its frames.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable

from .. import access
from ..conf import get_settings
from ..core import sse as framing
from ..core.cursors import Cursor
from ..core.events import Event
from ..hub import get_hub
from ..policy import effective_user
from ..presence import connection_id
from ..subscriber import Notice, Reset, Subscriber
from . import limits, serving, streaming
from .common import authorize_all, subscribe_topic
from .http import Request, Send

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    # nginx: don't buffer; "no-transform" keeps compressing proxies from holding frames.
    (b"x-accel-buffering", b"no"),
]


class _Stream(streaming.Stream):
    """An open SSE stream: formats items into SSE frames, tracking the stream's cursor."""

    __slots__ = ("key", "single")

    def __init__(self, sub: Subscriber, key: bytes) -> None:
        super().__init__(sub)
        self.key = key
        self.single = False

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


async def handle(request: Request, send: Send) -> None:
    """``GET sse?topic=T[&cursor=C]`` as a handler (views); the fast path runs
    :func:`_serve` instead (see :data:`rtdelivery.transports.serving.STREAM`)."""
    await streaming.serve(_open, request, send)


def _serve(request: Request, method: str, send: Send) -> Awaitable[None]:
    return streaming.serve(_open, request, send, method)


setattr(handle, serving.STREAM, _serve)


async def _open(request: Request, start: Send, send: Send) -> _Stream:
    """Subscribe, start the response through ``start`` and write ``rt.open``; the stream
    keeps nothing of ``request`` (rtdelivery.transports.streaming)."""
    conf = get_settings()
    topics = request.topics()
    cursor = request.cursor(last_event_id=True)
    # client= is accepted (a client sends it on every transport) but adds nothing: the
    # stream is present as a connection of its own while it is open (not counted twice).
    request.client_id()
    await authorize_all(request, topics)
    hub = get_hub()
    stream = _Stream(Subscriber(conf.queue_size), conf.cursor_key)
    sub = stream.sub
    try:
        stream.open(hub, limits.hold("sse", *await limits.client_of(request)), send)
        if request.django is None:  # a view is cancelled by Django when the client leaves
            stream.watch(request.receive)
        conn_id = connection_id()
        # Token expiry and rtdelivery.disconnect() reach it (authenticated users only).
        session = request.session()
        stream.registration = await access.register(
            sub, await request.user(), getattr(session, "session_key", None), conn_id, "sse"
        )
        lost: list[str] = []
        for topic in topics:
            await subscribe_topic(hub, sub, topic, cursor.get(topic), stream.positions, lost)
            if conf.topic_options(topic).presence:
                who = effective_user(await request.user(), topic)
                await stream.join_presence(topic, conn_id, who)
        stream.single = len(stream.positions) == 1
        await start({"type": "http.response.start", "status": 200, "headers": HEADERS})
        opening = json.dumps({"cursor": stream.cursor(), "recovered": not lost, "lost": lost})
        await stream.write(
            framing.format_retry(conf.sse_retry)
            + framing.format_event(opening, event="rt.open", id=stream.cursor())
        )
        streaming.heartbeats_for_loop().add(stream)
    except BaseException:
        await stream.close()
        raise
    return stream
