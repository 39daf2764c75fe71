"""What rtdelivery sees of the server's own transport under one connection.

Backpressure: a bounded inbox (``QUEUE_SIZE``) only bounds memory if the writer stops
taking items while the client does not read. Uvicorn's ``send`` waits while its write
buffer is over the high-water mark, so the writer stops by itself; Daphne's never waits,
and its link (:mod:`rtdelivery.transports.daphne`) makes it wait through Twisted's
producers. Both servers then behave alike: a client that stops reading holds its writer
back, its inbox overflows and the connection ends with ``too_slow`` and its cursor.

:func:`connect` finds the link (:mod:`rtdelivery.transports.links`) of a connection.
Uvicorn's ``send`` is a method of an object with the asyncio ``transport``; Daphne's a
``functools.partial`` of its server. :class:`rtdelivery.asgi.RealtimeApplication` records
the server's own ``send`` (before any middleware wraps it) in :data:`server_send`; without
it the ``send`` a transport got is used, through Channels' session wrapper.

Under Uvicorn's websockets-sansio protocol, events are written straight to the socket by
the process's write round (:class:`WriteRound`), each frame encoded once per process.

The link also serves the graceful shutdown (:mod:`rtdelivery.shutdown`): bytes not yet
handed to the kernel (to wait for them to flush) and an abort for stuck clients.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
import weakref
from contextvars import ContextVar
from typing import Any, Protocol

from .. import metrics, shutdown
from ..subscriber import Subscriber
from . import daphne
from .http import Send
from .links import AsyncioLink, Link

__all__ = [
    "Link",
    "RoundWriter",
    "WriteRound",
    "connect",
    "server_send",
    "text_frame",
    "write_round",
]

logger = logging.getLogger("rtdelivery.transports")

#: The ASGI server's own ``send`` for the current connection (set by RealtimeApplication).
server_send: ContextVar[Send | None] = ContextVar("rtdelivery_server_send", default=None)

#: How many ``send`` wrappers deep the search for the server's ``send`` looks.
MAX_UNWRAP = 8

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


class _UvicornWebSocketLink(AsyncioLink):
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


def connect(send: Send, sub: Subscriber, *, scope_type: str, flow: bool = True) -> Link:
    """The :class:`Link` of the current connection, tracked for shutdown.

    ``flow``: the writer needs backpressure (SSE, WebSocket); a long poll answers once.
    Call :meth:`Link.release` when the connection ends.
    """
    raw = _unwrap(server_send.get() or send)
    link: Link
    if isinstance(raw, functools.partial) and raw.args and daphne.is_daphne(raw.func):
        link = daphne.daphne_link(send, sub, raw.args[0], scope_type, flow)
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
            link = AsyncioLink(send, sub, transport)
        else:
            link = Link(send, sub)
            if flow and daphne.twisted_running():
                daphne.warn_once(scope_type, "its transport could not be found")
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
