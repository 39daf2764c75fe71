"""What rtdelivery sees of the server's own transport under one connection.

Backpressure: a bounded inbox (``QUEUE_SIZE``) only bounds memory if the writer stops
taking items while the client does not read. Uvicorn's ``send`` waits while its write
buffer is over the high-water mark, so the writer stops by itself. Daphne's ``send``
never waits: it hands the bytes to Twisted, whose write buffer grows without limit.
Under Daphne the writer therefore registers itself with Twisted as a streaming producer
(``IPushProducer``, Twisted's own flow-control interface): Twisted pauses it when the
transport holds more than its buffer size (64 KiB) and resumes it once the buffer has
drained, and :meth:`Link.send` waits while it is paused. Both servers then behave
alike: a client that stops reading holds its writer back, its inbox overflows and the
connection ends with ``too_slow`` and its cursor.

Daphne hands an application ``functools.partial(Server.handle_reply, protocol)`` as
``send``; the protocol is a Twisted ``Request`` (HTTP) or an autobahn WebSocket
protocol. Uvicorn's ``send`` is a method of an object with the asyncio ``transport``.
:class:`rtdelivery.asgi.RealtimeApplication` records the server's own ``send`` (before
any middleware wraps it) in :data:`server_send`; without it the ``send`` a transport
got is used, through Channels' session wrapper. A connection under Daphne whose
transport cannot be found is not bounded: a warning is logged once (docs/deployment.md).

The link also serves the graceful shutdown (:mod:`rtdelivery.shutdown`): bytes not yet
handed to the kernel (to wait for them to flush) and an abort for stuck clients.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
import sys
import weakref
from contextvars import ContextVar
from typing import Any, Protocol

from .. import metrics, shutdown
from ..subscriber import Subscriber
from .http import Send

logger = logging.getLogger("rtdelivery.transports")

#: The ASGI server's own ``send`` for the current connection (set by RealtimeApplication).
server_send: ContextVar[Send | None] = ContextVar("rtdelivery_server_send", default=None)

#: How many ``send`` wrappers deep the search for the server's ``send`` looks.
MAX_UNWRAP = 8
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


class Link:
    """One connection's view of its server transport (this base: nothing to see).

    Write with :attr:`send`; :mod:`rtdelivery.shutdown` calls :meth:`go_away`,
    :meth:`pending` and :meth:`abort`.
    """

    __slots__ = ("__weakref__", "send", "sub", "task")

    #: Whether :meth:`write_texts` can write (else it always returns False).
    direct = False

    def __init__(self, send: Send, sub: Subscriber) -> None:
        #: The ``send`` the connection writes with: the server's own where it waits for
        #: room by itself (no extra call per frame), else one that waits (Daphne).
        self.send: Send = send
        self.sub = sub
        self.task = asyncio.current_task()

    def go_away(self) -> None:
        """The server is shutting down: end the connection with ``going_away``."""
        self.sub.close()

    def pending(self) -> int:
        """Bytes written by the application that the server has not handed to the kernel."""
        return 0

    def abort(self) -> None:
        """Drop the connection at once (a client that stopped reading, at shutdown)."""
        if self.task is not None:
            self.task.cancel()

    def release(self) -> None:
        """The connection is over: unhook from the server's transport."""
        shutdown.untrack(self)

    def write_texts(self, texts: list[str]) -> bool:
        """Write these WebSocket text messages at once, if the server's socket allows it
        now (open, not over its write buffer's high-water mark); False: nothing was
        written, send them through the ASGI ``send`` (which waits for room)."""
        return False

    def write_text(self, text: str) -> bool:
        """:meth:`write_texts` for one message (no list built per connection and event)."""
        return False


class _AsyncioLink(Link):
    """Uvicorn (or any server whose ``send`` waits for room): only shutdown needs it."""

    __slots__ = ("_transport",)

    def __init__(self, send: Send, sub: Subscriber, transport: Any) -> None:
        super().__init__(send, sub)
        self._transport = transport

    def pending(self) -> int:
        try:
            return int(self._transport.get_write_buffer_size())
        except Exception:  # closed transport
            return 0

    def abort(self) -> None:
        self._transport.abort()


#: WebSocket text frames (server to client: never masked), built once per process.
_frames: dict[int, tuple[str, bytes]] = {}
_frame_bytes = 0
#: Bytes of frames (and their texts) kept: the latest events', which every connection
#: writes in turn. Small, so that it adds little to a process's memory (a full cache is
#: dropped and built again: a miss costs one encode).
FRAME_CACHE_BYTES = 256 * 1024


def text_frame(text: str) -> bytes:
    """``text`` as one WebSocket text frame (FIN, no mask, no extension), cached."""
    cached = _frames.get(id(text))
    if cached is not None and cached[0] is text:
        return cached[1]
    payload = text.encode()
    n = len(payload)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    frame = head + payload
    global _frame_bytes
    _frame_bytes += 2 * len(frame)
    if _frame_bytes > FRAME_CACHE_BYTES:
        _frames.clear()
        _frame_bytes = 2 * len(frame)
    _frames[id(text)] = (text, frame)  # the text kept: its id is not reused meanwhile
    return frame


class RoundWriter(Protocol):
    """What :class:`WriteRound` flushes (a WebSocket connection's writing half)."""

    def flush_round(self) -> int: ...


class WriteRound:
    """Writes that wait for the end of the current event-loop step, all in one callback.

    The hub hands an event to every local subscriber in one pass; a connection that can
    write to its socket itself (:attr:`Link.direct`) asks to be flushed here instead of
    waking its writer task, so one callback writes the event to every such socket (as a
    raw broadcast loop does) rather than one task step per connection, and events that
    arrive in the same step go out in one write per socket.
    """

    __slots__ = ("_due",)

    def __init__(self) -> None:
        self._due: list[RoundWriter] = []

    def add(self, writer: RoundWriter) -> None:
        """Call ``writer.flush_round()`` once the current step is over (once per
        :meth:`add`); it returns how many events it delivered. (The writer, not a bound
        method: nothing is allocated per connection and event, which would feed the
        garbage collector's generation 0 a thousand objects per event.)"""
        if not self._due:
            # Always called on the loop's own thread (the hub's fan-out, a reply).
            asyncio.get_running_loop().call_soon(self._run)
        self._due.append(writer)

    def _run(self) -> None:
        due, self._due = self._due, []
        delivered = 0
        for writer in due:
            try:
                delivered += writer.flush_round()
            except Exception:  # one connection's fault is not the others'
                logger.exception("direct WebSocket write failed")
        if delivered:
            metrics.delivered["ws"].n += delivered  # once per round, not per socket


_rounds: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WriteRound] = (
    weakref.WeakKeyDictionary()
)


def write_round() -> WriteRound:
    """The running loop's :class:`WriteRound`."""
    loop = asyncio.get_running_loop()
    round_ = _rounds.get(loop)
    if round_ is None:
        # Not holding the loop: the entry goes with it.
        round_ = _rounds[loop] = WriteRound()
    return round_


class _UvicornWebSocketLink(_AsyncioLink):
    """Uvicorn's websockets-sansio WebSocket protocol: the writer hands a batch of events
    to the socket in one ``transport.write``, each frame built once per process (a
    server's frames are not masked: the same bytes for every connection), instead of one
    ASGI ``send`` per event that encodes and frames it again for every connection.

    Only while the protocol is open and writable, and without a negotiated extension
    (permessage-deflate compresses per connection: then each message still goes through
    the protocol object, but the batch is one write). Everything else (accept, close,
    replies, a socket over its high-water mark) goes through the ASGI ``send``.
    """

    __slots__ = ("_protocol",)
    direct = True

    def __init__(self, send: Send, sub: Subscriber, transport: Any, protocol: Any) -> None:
        super().__init__(send, sub, transport)
        self._protocol = protocol

    def _open(self) -> bool:
        p = self._protocol
        return not (
            p.close_sent
            or p.disconnected
            or not p.handshake_complete
            or not p.writable.is_set()
            or p.transport.is_closing()
            or p.conn.state is not _OPEN
        )

    def write_texts(self, texts: list[str]) -> bool:
        if len(texts) == 1:
            return self.write_text(texts[0])
        p = self._protocol
        try:
            if not self._open():
                return False
            conn = p.conn
            if conn.extensions:
                for text in texts:
                    conn.send_text(text.encode())
                p.transport.write(b"".join(conn.data_to_send()))
            else:
                p.transport.write(b"".join([text_frame(text) for text in texts]))
        except Exception:  # another Uvicorn than the one this was written for: use send
            logger.debug("direct WebSocket write failed", exc_info=True)
            return False
        return True

    def write_text(self, text: str) -> bool:
        p = self._protocol
        try:
            if not self._open():
                return False
            conn = p.conn
            if conn.extensions:
                conn.send_text(text.encode())
                p.transport.write(b"".join(conn.data_to_send()))
            else:
                p.transport.write(text_frame(text))
        except Exception:  # another Uvicorn than the one this was written for: use send
            logger.debug("direct WebSocket write failed", exc_info=True)
            return False
        return True


def _uvicorn_ws_protocol(owner: Any) -> Any:
    """Uvicorn's websockets-sansio protocol object, if ``owner`` is one (else None): the
    class itself, or rtdelivery's lighter subclass of it (rtdelivery.contrib.uvicorn),
    which keeps every attribute the direct path reads. Other subclasses may change
    what the parent does: they go through ``send``."""
    cls = type(owner)
    name = (cls.__module__, cls.__name__)
    if name == ("rtdelivery.contrib.uvicorn", "WebSocketProtocol") or (
        name[1] == "WebSocketsSansIOProtocol"
        and name[0].startswith("uvicorn.protocols.websockets.")
    ):
        return owner
    return None


try:  # the websockets library's connection state, for the direct path above
    from websockets.protocol import State as _State

    _OPEN: Any = _State.OPEN
except ImportError:  # pragma: no cover - no websockets: no Uvicorn sansio protocol either
    _OPEN = object()


class _TwistedLink(Link):
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
            # Twisted wants the producer gone before the request finishes.
            self._unregister()
        await self._send(message)
        # Like Uvicorn's send: return once the transport has room again (or is gone,
        # or the server is shutting down and the goodbye must get through).
        while self._paused and not self._stopped and not shutdown.closing():
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

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


def connect(send: Send, sub: Subscriber, *, scope_type: str, flow: bool = True) -> Link:
    """The :class:`Link` of the current connection, tracked for shutdown.

    ``flow``: the writer needs backpressure (SSE, WebSocket); a long poll answers once.
    Call :meth:`Link.release` when the connection ends.
    """
    raw = _unwrap(server_send.get() or send)
    link: Link
    if isinstance(raw, functools.partial) and raw.args and _is_daphne(raw.func):
        link = _daphne_link(send, sub, raw.args[0], scope_type, flow)
    else:
        owner = getattr(raw, "__self__", None)
        transport = getattr(owner, "transport", None)
        protocol = _uvicorn_ws_protocol(owner) if scope_type == "websocket" else None
        if protocol is not None and raw != send:
            # Only when the transport writes with the server's own send: a middleware
            # that wraps send (to watch or change messages) sees every message.
            protocol = None
        if protocol is not None and hasattr(transport, "get_write_buffer_size"):
            link = _UvicornWebSocketLink(send, sub, transport, protocol)
        elif hasattr(transport, "get_write_buffer_size") and hasattr(transport, "abort"):
            link = _AsyncioLink(send, sub, transport)
        else:
            link = Link(send, sub)
            if flow and _twisted_running():
                _warn_once(scope_type, "its transport could not be found")
    shutdown.track(link)
    return link


def _unwrap(send: Any) -> Any:
    """The server's ``send`` under Channels' session wrapper (its ``real_send``)."""
    for _ in range(MAX_UNWRAP):
        inner = getattr(getattr(send, "__self__", None), "real_send", None)
        if inner is None:
            break
        send = inner
    return send


def _is_daphne(func: Any) -> bool:
    owner = getattr(func, "__self__", None)
    return type(owner).__module__.startswith("daphne.")


def _daphne_link(send: Send, sub: Subscriber, protocol: Any, scope_type: str, flow: bool) -> Link:
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
            protocol.onCloseHandshakeTimeout = functools.partial(
                _close_handshake_timed_out, protocol, asyncio.get_running_loop()
            )
    link = _TwistedLink(send, sub, transport, None)
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
        _warn_once(scope_type, f"Twisted refused the producer ({exc})")
    return link


def _close_handshake_timed_out(protocol: Any, loop: asyncio.AbstractEventLoop) -> None:
    """autobahn's ``onCloseHandshakeTimeout``, without its reset.

    autobahn aborts the connection (RST), and the client's kernel then discards what it
    had not read: a client that stalled for longer than the timeout never sees its
    ``too_slow`` frame and cursor. Close the socket as websockets does instead: Twisted
    writes what it holds, then FIN. A client that reads nothing for
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
    if transport is not None and hasattr(transport, "abortConnection"):
        loop.call_later(CLOSE_FLUSH_TIMEOUT, transport.abortConnection)


def _twisted_running() -> bool:
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


def _warn_once(scope_type: str, why: str) -> None:
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
