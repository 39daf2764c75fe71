"""An open event stream (SSE, the django-eventstream bridge): one coroutine, nothing more.

Idle streams are many and their memory is a published figure (docs/performance.md), so
an open stream keeps only what it needs: its inbox, the cursor it has written, its link
to the server, what it must give back when it ends (the held-request count, the access
registration, presence). Not the scope, the headers, the :class:`Request` or a Django
``HttpRequest``. :func:`serve` is the one coroutine that opens it and then writes it:
no nested frame while it waits but :meth:`Subscriber.get`'s, and no task of its own.
The client's departure is noticed without a task too (:meth:`Stream.watch`), and one
task per event loop keeps every idle stream alive (:class:`Heartbeats`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from .. import access, metrics
from ..conf import get_settings
from ..core.cursors import Position
from ..core.errors import RTDeliveryError
from ..core.events import Event
from ..hub import Hub
from ..presence import get_presence
from ..subscriber import Item, Notice, Reset, SlowConsumer, Subscriber, SubscriberClosed
from . import flow, limits
from .common import wait_disconnect
from .http import Receive, Request, Send
from .serving import open_stream

logger = logging.getLogger("rtdelivery.transports")

HEARTBEAT = Notice("heartbeat")
#: Text per write (characters): a big batch is written in parts, each waiting for room,
#: so the server never holds one batch's whole text at once.
WRITE_CHUNK = 64 * 1024


class Stream:
    """One open stream: what it keeps while idle, and how it ends. A transport's subclass
    turns items into frames (:meth:`frame`, :meth:`close_frame`)."""

    __slots__ = (
        "_receive",
        "_receiving",
        "conn_id",
        "gone",
        "held",
        "hub",
        "idle",
        "link",
        "positions",
        "present",
        "registration",
        "sub",
    )

    def __init__(self, sub: Subscriber, positions: dict[str, Position] | None = None) -> None:
        self.sub = sub
        #: Where the stream is in each topic: what it has written (its cursor).
        self.positions: dict[str, Position] = {} if positions is None else positions
        self.idle = 0  # heartbeat ticks since the stream last wrote
        self.gone = False  # the client went away
        self.held: limits.Held | None = None
        self.hub: Hub | None = None
        self.link: flow.Link | None = None
        self.registration: access.Registration | None = None
        #: Presence topics joined (left when the stream ends), and the id they know it by.
        self.present: list[str] | None = None
        self.conn_id = ""
        self._receive: Receive | None = None
        self._receiving: Any = None  # receive()'s coroutine in flight, or a fallback task

    def open(self, hub: Hub, held: limits.Held, send: Send) -> None:
        """Take ``held`` (given back by :meth:`close`) and connect to the server."""
        self.held = held
        self.hub = hub
        # Writes wait for room under every server (Daphne's own send never does), and a
        # shutdown ends the stream with its close frame (rtdelivery.shutdown).
        self.link = flow.connect(send, self.sub, scope_type="http")

    # -- frames (the transport's) ----------------------------------------------------
    def frame(self, item: Event | Reset | Notice) -> str:
        raise NotImplementedError

    def close_frame(self, reason: str) -> str:
        raise NotImplementedError

    # -- writing ---------------------------------------------------------------------
    async def write(self, text: str, *, more: bool = True) -> None:
        assert self.link is not None, "Expected open() before write()."
        await self.link.send(
            {"type": "http.response.body", "body": text.encode(), "more_body": more}
        )

    async def write_items(self, items: list[Item]) -> bool:
        """Write ``items`` in writes of about WRITE_CHUNK bytes: each one waits for room
        in the server's buffer, and a stream that overflowed meanwhile stops at once (its
        cursor covers what was written; the next get() raises SlowConsumer). True when an
        ``end`` notice (access ended) ended the stream with its close frame."""
        parts: list[str] = []
        size = delivered = 0
        for item in items:
            if isinstance(item, Notice) and item.kind == access.END:
                parts.append(self.close_frame(str(item.data)))
                await self.write("".join(parts), more=False)
                metrics.delivered["sse"].n += delivered
                return True
            text = self.frame(item)
            if not text:
                continue
            parts.append(text)
            size += len(text)
            delivered += isinstance(item, Event)
            if size >= WRITE_CHUNK:
                await self.write("".join(parts))
                parts, size = [], 0
                if self.sub.overflowed:
                    break
        if parts:
            await self.write("".join(parts))
        metrics.delivered["sse"].n += delivered
        return False

    # -- the client leaving ------------------------------------------------------------
    def watch(self, receive: Receive) -> None:
        """Close the inbox when ``receive()`` says ``http.disconnect``, without a task.

        ``receive()``'s coroutine is stepped here and from the callbacks of the futures
        it waits on, as a task steps its coroutine: a stream costs no task, no frame of
        its own and no wrapper around the server's frames. Anything a task would be
        needed for (a bare yield aside) falls back to one."""
        self._receive = receive
        if not _steps_safely(receive):
            self._receiving = asyncio.ensure_future(self._watch_task())
            return
        try:
            self._receiving = _steppable(receive())
        except Exception:
            logger.debug("receive() failed: the stream ends", exc_info=True)
            self._left()
            return
        self._step()

    def _step(self, _done: object = None) -> None:
        it = self._receiving
        if it is None or isinstance(it, asyncio.Future):
            return  # over (or a fallback task has it)
        try:
            while True:
                try:
                    waited = it.send(None)
                except StopIteration as stop:
                    message = stop.value
                    if not isinstance(message, dict) or message.get("type") == "http.disconnect":
                        self._left()
                        return
                    # The request's (empty) body: read on, until the client leaves.
                    it = self._receiving = _steppable(self._receive())  # type: ignore[misc]
                    continue
                break
        except (Exception, asyncio.CancelledError):  # its future cancelled, say
            logger.debug("receive() failed: the stream ends", exc_info=True)
            self._left()
            return
        if waited is None:  # a bare yield: step again on the next loop iteration
            asyncio.get_running_loop().call_soon(self._step)
        elif getattr(waited, "_asyncio_future_blocking", False):
            waited._asyncio_future_blocking = False
            waited.add_done_callback(self._step)
        else:  # not an asyncio future: let a task run receive() from the start
            it.close()
            self._receiving = asyncio.ensure_future(self._watch_task())

    async def _watch_task(self) -> None:
        assert self._receive is not None
        try:
            await wait_disconnect(self._receive)
        except Exception:
            logger.debug("receive() failed: the stream ends", exc_info=True)
        # Not on cancellation (_unwatch: the stream is over already).
        self._left()

    def _left(self) -> None:
        self._receiving = None
        self.gone = True
        self.sub.close()  # wakes the stream: get() raises SubscriberClosed

    def _unwatch(self) -> None:
        it, self._receiving = self._receiving, None
        self._receive = None
        if isinstance(it, asyncio.Future):
            it.cancel()
        elif it is not None:
            # The server's receive() gives up its wait (its finally blocks run); one that
            # refuses to end is no reason to keep the stream's subscriptions.
            with contextlib.suppress(Exception):
                it.close()

    # -- ending ------------------------------------------------------------------------
    async def join_presence(self, topic: str, conn_id: str, who: Any) -> None:
        if self.present is None:
            self.present, self.conn_id = [], conn_id
        self.present.append(topic)  # first: a join failing half-way is still left
        await get_presence().join(topic, conn_id, who)

    async def close(self) -> None:
        """Give back everything the stream holds (once the response is over)."""
        try:
            self._unwatch()
            heartbeats_for_loop().discard(self)
            if self.registration is not None:
                self.registration.close()
            if self.hub is not None:
                await self.hub.unsubscribe_all(self.sub)
            for topic in self.present or ():
                with contextlib.suppress(Exception):
                    await get_presence().leave(topic, self.conn_id)
        finally:
            if self.link is not None:
                self.link.release()
            if self.held is not None:
                self.held.release()


def _steps_safely(receive: Receive) -> bool:
    """Whether ``receive`` is one :meth:`Stream.watch` may step without a task: the
    servers' own, known to wait only on asyncio futures and to use neither context
    variables nor ``current_task()`` (Uvicorn's HTTP protocols; ``asyncio.Queue.get``:
    Daphne, Hypercorn, Channels' communicators). A ``receive`` wrapped by middleware
    (tracing spans, timeouts, task groups) runs in a task, as it expects."""
    if getattr(receive, "__func__", None) is asyncio.Queue.get:
        return True
    owner = getattr(receive, "__self__", None)
    return getattr(receive, "__name__", "") == "receive" and type(owner).__module__.startswith(
        "uvicorn.protocols.http."
    )


def _steppable(awaitable: Awaitable[Any]) -> Any:
    """What steps ``awaitable``: a coroutine itself, else its ``__await__()`` iterator."""
    return awaitable if hasattr(awaitable, "send") else awaitable.__await__()


Opener = Callable[[Request, Send, Send], Awaitable[Stream | None]]


async def serve(opener: Opener, request: Request, send: Send, method: str | None = None) -> None:
    """Open a stream with ``opener(request, start, send)`` and write it until it ends.

    ``method`` given (the fast path): the opening runs under
    :func:`~rtdelivery.transports.serving.run_handler`'s rules (CORS, preflight, method,
    errors answered as JSON), which a view's handler already runs under. The opener
    starts the response through ``start`` and returns the stream (None: it answered
    otherwise). From then on this coroutine keeps the stream only: it is the frame that
    waits for the life of the stream, with :meth:`Subscriber.get`'s under it.
    """
    if method is None:
        stream = await opener(request, send, send)
    else:
        stream = await open_stream(opener, method, request, send)
    del request  # see the docstring
    if stream is None:
        return
    sub = stream.sub
    try:
        while True:
            try:
                items = await sub.get()
            except SlowConsumer:
                metrics.slow_consumer_ended("sse", "", None, stream.positions)
                await stream.write(stream.close_frame("too_slow"), more=False)
                return
            except SubscriberClosed:
                if not stream.gone:
                    await stream.write(stream.close_frame("going_away"), more=False)
                return
            if stream.gone:
                return
            stream.idle = 0
            if await stream.write_items(items):
                return
    except RTDeliveryError:  # after the response started: it ends, as run_handler ends it
        pass
    except Exception:
        logger.exception("rtdelivery stream failed")
    finally:
        await stream.close()


class Heartbeats:
    """One task per event loop keeps idle streams alive, instead of a timer armed on
    every wait of every stream: every SSE_HEARTBEAT/2 seconds it counts a tick on each
    stream, and a stream silent for two ticks gets a heartbeat notice queued."""

    def __init__(self) -> None:
        self.streams: set[Stream] = set()
        self.task: asyncio.Task[None] | None = None

    def add(self, stream: Stream) -> None:
        self.streams.add(stream)
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())

    def discard(self, stream: Stream) -> None:
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


_heartbeats: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Heartbeats] = (
    weakref.WeakKeyDictionary()
)


def heartbeats_for_loop() -> Heartbeats:
    loop = asyncio.get_running_loop()
    beats = _heartbeats.get(loop)
    if beats is None:
        beats = _heartbeats[loop] = Heartbeats()
    return beats


__all__ = ["Heartbeats", "Stream", "serve"]
