"""Daphne's link: backpressure through Twisted's producers, and the close handshake.

Daphne's ``send`` never waits: it hands the bytes to Twisted, whose write buffer grows
without limit. The writer therefore registers itself with Twisted as a streaming producer
(``IPushProducer``, Twisted's own flow-control interface): Twisted pauses it when the
transport holds more than its buffer size (64 KiB) and resumes it once the buffer has
drained, and :meth:`TwistedLink.send` waits while it is paused.

Daphne hands an application ``functools.partial(Server.handle_reply, protocol)`` as
``send``; the protocol is a Twisted ``Request`` (HTTP) or an autobahn WebSocket protocol.
A connection under Daphne whose transport cannot be found is not bounded: a warning is
logged once (docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
from typing import Any

from .. import shutdown
from ..subscriber import Subscriber
from .http import Send
from .links import Link

logger = logging.getLogger("rtdelivery.transports")

#: How long a WebSocket client gets to answer the server's close frame (seconds).
#: autobahn (Daphne) waits 1 s and then resets the connection, which throws away what
#: the client has not read yet, the ``too_slow`` frame and its cursor included; the
#: websockets library (Uvicorn) waits 10 s and then closes the socket (FIN, after what
#: was written). rtdelivery gives Daphne's sockets the same: 10 s, then a close.
CLOSE_HANDSHAKE_TIMEOUT = 10.0
#: How long after that close a client that still reads nothing keeps its socket (and the
#: bytes written to it) under Daphne before it is reset: a bound on what a stalled
#: client can hold, long enough for one that stalled for a while to read its cursor.
CLOSE_FLUSH_TIMEOUT = 60.0

_warned: set[str] = set()


class TwistedLink(Link):
    """Daphne: the writer is a streaming producer of Twisted's transport.

    Registered as the Request's producer (HTTP), or as the producer behind the
    transport's own for a WebSocket (Daphne leaves the upgraded request's HTTPChannel
    registered on the transport, and it forwards pause/resume to its request producer).
    """

    __slots__ = ("_consumer", "_paused", "_send", "_stopped", "_transport", "_waiter")

    def __init__(self, send: Send, sub: Subscriber, transport: Any, consumer: Any) -> None:
        super().__init__(send, sub)
        self._send = send
        self.send = self._send_when_room
        self._transport = transport
        self._consumer = consumer
        self._paused = False
        self._stopped = False
        self._waiter: asyncio.Future[None] | None = None

    # -- IPushProducer, called by Twisted on the event loop's thread --------------------
    def pauseProducing(self) -> None:  # Twisted's IPushProducer names
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._wake()

    def stopProducing(self) -> None:
        self._stopped = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- Link --------------------------------------------------------------------------
    async def _send_when_room(self, message: dict[str, Any]) -> None:
        if message.get("type") == "http.response.body" and not message.get("more_body"):
            # Twisted wants the producer gone before the request finishes; nothing
            # would resume it now, and nothing is left to write.
            self._unregister()
            await self._send(message)
            return
        await self._send(message)
        # Like Uvicorn's send: return once the transport has room again (or is gone,
        # or the server is shutting down and the goodbye must get through). Also once
        # the inbox overflowed, or closed with nothing left in it: then the writer has
        # only the goodbye left to write (too_slow and its cursor, a few hundred
        # bytes), so the connection ends now instead of when the client reads again,
        # and the close handshake's timeout bounds how long a client that never reads
        # keeps it. (Closed with items queued, as access.end() does: they wait for
        # room, so that the socket's buffer stays bounded.)
        sub = self.sub
        while self._paused and not self._stopped and not _only_goodbye_left(sub):
            self._waiter = asyncio.get_running_loop().create_future()
            # Nobody waits in the inbox's get() meanwhile: it calls on_ready instead.
            hooked = sub.on_ready is None
            if hooked:
                sub.on_ready = self._inbox_changed
            try:
                await self._waiter
            finally:
                self._waiter = None
                if hooked and sub.on_ready == self._inbox_changed:
                    sub.on_ready = None

    def _inbox_changed(self) -> None:
        if _only_goodbye_left(self.sub):
            self._wake()

    def go_away(self) -> None:
        super().go_away()
        self._wake()

    def pending(self) -> int:
        t = self._transport
        try:
            # Twisted's FileDescriptor: the bytes buffer not yet written, plus the list
            # of chunks waiting to be joined into it.
            return len(t.dataBuffer) - t.offset + t._tempDataLen  # type: ignore[no-any-return]
        except AttributeError:  # another kind of transport (TLS): no figure
            return 0

    def abort(self) -> None:
        self._transport.abortConnection()

    def release(self) -> None:
        self._unregister()
        super().release()

    def _unregister(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            # A Request or transport (producer), or Daphne's HTTPChannel (_requestProducer).
            registered = getattr(consumer, "producer", None) or getattr(
                consumer, "_requestProducer", None
            )
            if registered is self:
                consumer.unregisterProducer()
        except Exception:  # the connection is gone: nothing left to unhook
            logger.debug("unregisterProducer failed", exc_info=True)


def _only_goodbye_left(sub: Subscriber) -> bool:
    """Whether nothing but the connection's goodbye is left to write, or the server is
    shutting down (and the goodbye must get through)."""
    return sub.overflowed or (sub.closed and not sub.queued()) or shutdown.closing()


def is_daphne(func: Any) -> bool:
    owner = getattr(func, "__self__", None)
    return type(owner).__module__.startswith("daphne.")


def daphne_link(send: Send, sub: Subscriber, protocol: Any, scope_type: str, flow: bool) -> Link:
    if scope_type == "http":
        channel = getattr(protocol, "channel", None)
        transport = getattr(channel, "transport", None)
    else:
        transport = getattr(protocol, "transport", None)
        # An autobahn protocol option, copied to each protocol from Daphne's factory.
        if getattr(protocol, "closeHandshakeTimeout", None) is not None:
            protocol.closeHandshakeTimeout = max(
                protocol.closeHandshakeTimeout, CLOSE_HANDSHAKE_TIMEOUT
            )
            timed_out = functools.partial(
                _close_handshake_timed_out, protocol, asyncio.get_running_loop()
            )
            protocol.onCloseHandshakeTimeout = timed_out
            # Daphne's keepalive ping (autobahn) resets the socket too when it goes
            # unanswered: while the close is under way, that is the same timeout.
            ping_timed_out = getattr(protocol, "onAutoPingTimeout", None)
            if ping_timed_out is not None:
                protocol.onAutoPingTimeout = functools.partial(
                    _ping_timed_out, protocol, ping_timed_out, timed_out
                )
    link = TwistedLink(send, sub, transport, None)
    if not flow:
        return link
    try:
        if scope_type == "http":
            protocol.registerProducer(link, True)
            link._consumer = protocol
        elif transport is not None:  # None: the client is already gone
            # Daphne leaves the upgraded request's HTTPChannel registered as the
            # transport's producer; it forwards pause/resume to a request producer.
            channel = getattr(transport, "producer", None)
            consumer = transport if channel is None else channel
            consumer.registerProducer(link, True)
            link._consumer = consumer
    except Exception as exc:
        warn_once(scope_type, f"Twisted refused the producer ({exc})")
    return link


def _close_handshake_timed_out(protocol: Any, loop: asyncio.AbstractEventLoop) -> None:
    """autobahn's ``onCloseHandshakeTimeout``, without its reset.

    autobahn aborts the connection (RST), and the client's kernel then discards what it
    had not read: a client that stalled for longer than the timeout never sees its
    ``too_slow`` frame and cursor. Close the socket as websockets does instead: Twisted
    writes what it holds, then FIN. The application hears of the disconnect now (Daphne
    would tell it only once the socket is gone), and a client that reads nothing for
    :data:`CLOSE_FLUSH_TIMEOUT` more is reset after all.
    """
    protocol.closeHandshakeTimeoutCall = None
    if protocol.state == protocol.STATE_CLOSED:
        return
    protocol.wasClean = False
    protocol.wasNotCleanReason = "the peer did not answer the close frame in time"
    protocol.wasCloseHandshakeTimeout = True
    transport = protocol.transport
    logger.info(
        "WebSocket %s did not answer the close frame within %.0f s: closing its socket "
        "once it has read what was sent (reset in %.0f s otherwise)",
        getattr(protocol, "peer", "client"),
        protocol.closeHandshakeTimeout,
        CLOSE_FLUSH_TIMEOUT,
    )
    protocol.dropConnection(abort=False)
    queue = getattr(protocol, "application_queue", None)
    if queue is not None:
        # Daphne's own onClose puts one more when the socket is gone: the application
        # has ended by then, and nothing reads it.
        queue.put_nowait({"type": "websocket.disconnect", "code": 1006})
    if transport is not None and hasattr(transport, "abortConnection"):
        loop.call_later(CLOSE_FLUSH_TIMEOUT, _reset, transport)


def _reset(transport: Any) -> None:
    """Reset a socket whose client still had not read what was sent, if it is still open
    (a TLS transport that is gone raises on a second abort)."""
    if getattr(transport, "connected", False) and not getattr(transport, "disconnected", False):
        transport.abortConnection()


def _ping_timed_out(protocol: Any, ping_timed_out: Any, close_timed_out: Any) -> None:
    """autobahn's ``onAutoPingTimeout``: once the server's close frame is out, the
    close's timeout instead (no reset that would discard the ``too_slow`` frame)."""
    if protocol.state == protocol.STATE_CLOSING and getattr(protocol, "closedByMe", False):
        protocol.autoPingTimeoutCall = None
        call = getattr(protocol, "closeHandshakeTimeoutCall", None)
        if call is not None:  # due no more (txaio's batched call: cancel() only)
            with contextlib.suppress(Exception):
                call.cancel()
        close_timed_out()
    else:
        ping_timed_out()


def twisted_running() -> bool:
    """Whether this loop is Twisted's (Daphne's): only to warn, so best effort."""
    # Twisted's reactor module is replaced in sys.modules by the reactor itself.
    reactor: Any = sys.modules.get("twisted.internet.reactor")
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    return bool(getattr(reactor, "running", False)) and (
        getattr(reactor, "_asyncioEventloop", None) is loop
    )


def warn_once(scope_type: str, why: str) -> None:
    if scope_type in _warned:
        return
    _warned.add(scope_type)
    logger.warning(
        "rtdelivery cannot bound memory for %s connections under Daphne: %s. A client "
        "that stops reading makes the server buffer everything sent to it. Serve the "
        "project through rtdelivery.asgi.rtdelivery_application (docs/deployment.md).",
        "WebSocket" if scope_type == "websocket" else "SSE",
        why,
    )
