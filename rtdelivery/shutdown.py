"""Graceful shutdown: on SIGTERM (or SIGINT) every connection says goodbye first.

Servers end open connections their own way: Uvicorn closes WebSockets with 1012 and
waits forever for a streaming response to end; Daphne cancels every application and
drops its sockets. Neither tells a client where to resume. So rtdelivery puts a handler
in front of the server's own (installed once, from the first connection or the ASGI
lifespan, in the main thread, only over a handler the server installed with
``signal.signal``). On the first signal:

1. every open connection is told the server is going away: an SSE stream gets
   ``event: rt.close`` ``{"reason": "going_away", "cursor"}`` and ends, a WebSocket is
   closed with 1001 (4002 under Daphne), a held long poll is answered with its cursor.
   Connections opened from then on get the same at once;
2. rtdelivery waits until they are over and their last bytes have left the server's
   write buffers, for at most ``RTDELIVERY["SHUTDOWN_TIMEOUT"]`` seconds; connections
   still open then (clients that stopped reading) are aborted;
3. the server's own handler runs with the same signal, and the server shuts down as
   usual. A second signal goes straight to the server's handler.

``SHUTDOWN_TIMEOUT = None`` leaves the signals to the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from typing import Any, Protocol

from .conf import get_settings

logger = logging.getLogger("rtdelivery.shutdown")

SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: After aborting stuck connections, how long their handlers get to notice (seconds).
ABORT_GRACE = 0.5
#: How often the last bytes' flush is checked (seconds); no event says "flushed".
FLUSH_POLL = 0.01


class Tracked(Protocol):
    """A connection as shutdown sees it (:class:`rtdelivery.transports.links.Link`)."""

    task: asyncio.Task[Any] | None

    def go_away(self) -> None: ...
    def pending(self) -> int: ...
    def abort(self) -> None: ...


class _State:
    def __init__(self) -> None:
        self.installed = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.previous: dict[int, Any] = {}
        self.closing = False
        self.live: set[Tracked] = set()
        #: Connections that ended during the shutdown, until their bytes are flushed.
        self.ended: list[Tracked] = []
        self.changed: asyncio.Event | None = None
        self.task: asyncio.Task[None] | None = None


_state = _State()


def closing() -> bool:
    """Whether the process is shutting down (connections are being told to go away)."""
    return _state.closing


def install() -> None:
    """Chain rtdelivery's handler in front of the server's SIGTERM/SIGINT handlers.

    Idempotent and cheap after the first call. Does nothing outside the main thread
    (signals can only be handled there), when ``SHUTDOWN_TIMEOUT`` is None, or for a
    signal whose handler the server did not set with ``signal.signal`` (the default
    action, Python's KeyboardInterrupt, or an event loop's ``add_signal_handler``,
    which cannot be chained).
    """
    if _state.installed or threading.current_thread() is not threading.main_thread():
        return
    _state.installed = True
    try:
        if get_settings().shutdown_timeout is None:
            return
    except Exception:  # misconfigured: reported by the checks and by every endpoint
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    for signum in SIGNALS:
        current = signal.getsignal(signum)
        if _chainable(current):
            _state.previous[signum] = current
            signal.signal(signum, _on_signal)
    if _state.previous:
        _state.loop = loop
        _state.changed = asyncio.Event()


def _chainable(handler: Any) -> bool:
    if not callable(handler) or handler is signal.default_int_handler:
        return False
    # asyncio's and uvloop's add_signal_handler() put a no-op here and dispatch through
    # the wakeup fd: the server's callback would run anyway, so there is nothing to chain.
    return getattr(handler, "__name__", "") != "_sighandler_noop"


def track(conn: Tracked) -> None:
    """Count ``conn`` as open; told to go away at once if the shutdown has begun."""
    install()
    if _state.loop is None or asyncio.get_running_loop() is not _state.loop:
        return  # not the server's loop (WSGI's background loop): the server's business
    _state.live.add(conn)
    if _state.closing:
        conn.go_away()


def untrack(conn: Tracked) -> None:
    """``conn`` is over (called once it has sent its last message)."""
    if conn not in _state.live:
        return
    _state.live.discard(conn)
    if _state.closing:
        _state.ended.append(conn)
        if not _state.live and _state.changed is not None:
            _state.changed.set()


def _on_signal(signum: int, frame: Any) -> None:
    previous = _state.previous.get(signum)
    loop = _state.loop
    if _state.closing or loop is None or not loop.is_running():
        # A second signal, or no loop to say goodbye on: straight to the server.
        _chain(previous, signum, frame)
        return
    _state.closing = True
    loop.call_soon_threadsafe(_start, signum, previous)


def _start(signum: int, previous: Any) -> None:
    _state.task = asyncio.ensure_future(_drain(signum, previous))


async def _drain(signum: int, previous: Any) -> None:
    try:
        timeout = get_settings().shutdown_timeout or 0.0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        live = list(_state.live)
        logger.info(
            "%s: telling %d rtdelivery connection(s) to go away (at most %.1f s)",
            signal.Signals(signum).name,
            len(live),
            timeout,
        )
        for conn in live:
            with contextlib.suppress(Exception):
                conn.go_away()
        await _wait_all_ended(deadline)
        stuck = list(_state.live)
        if stuck:
            logger.warning(
                "%d rtdelivery connection(s) did not end within SHUTDOWN_TIMEOUT (%.1f s); "
                "aborting them",
                len(stuck),
                timeout,
            )
            for conn in stuck:
                with contextlib.suppress(Exception):
                    conn.abort()
            await _wait_all_ended(loop.time() + ABORT_GRACE)
            for conn in list(_state.live):
                if conn.task is not None:
                    conn.task.cancel()
        # The goodbyes are written; wait (bounded) until they have left the server's
        # buffers, or the server's own shutdown may drop them (Daphne does).
        while loop.time() < deadline and any(  # noqa: ASYNC110 - nothing signals "flushed"
            _pending(conn) for conn in _state.ended
        ):
            await asyncio.sleep(FLUSH_POLL)
    except Exception:
        logger.exception("rtdelivery's graceful shutdown failed; the server shuts down")
    finally:
        _chain(previous, signum, None)


async def _wait_all_ended(deadline: float) -> None:
    loop = asyncio.get_running_loop()
    changed = _state.changed
    while _state.live and changed is not None:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), remaining)


def _pending(conn: Tracked) -> int:
    try:
        return conn.pending()
    except Exception:
        return 0


def _chain(previous: Any, signum: int, frame: Any) -> None:
    if callable(previous):
        previous(signum, frame)
