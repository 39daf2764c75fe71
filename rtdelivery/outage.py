"""Backend outages: one log line when Redis becomes unreachable, one when it is back.

Every Redis-backed operation (history, presence, the channel layer) reports here: a
failure with :func:`record_failure` (or :func:`unavailable`, which also builds the
:class:`~rtdelivery.core.errors.Unavailable` to raise), a success with
:func:`record_success`. The state is process-wide (every event loop and thread).

Logged on the ``rtdelivery.outage`` logger, never with a traceback:

- WARNING when an outage starts, with the failed operation and the Redis error (which
  may name the server's address: that stays in the log, clients only get
  ``Unavailable.MESSAGE``); a reminder WARNING at most every :data:`LOG_INTERVAL`
  seconds while it lasts;
- INFO when it ends (the first success after failures), with its length.

Flapping is rate-limited: an outage that starts less than :data:`LOG_INTERVAL` seconds
after the previous WARNING is counted but not logged (nor is its end), unless it lasts
until the next reminder; the next WARNING says how many went unlogged.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Protocol

from redis.exceptions import RedisError

from . import metrics
from .core.errors import Unavailable

logger = logging.getLogger("rtdelivery.outage")

#: What "the backend cannot be reached" raises: redis-py wraps socket errors in
#: ``RedisError`` (``ConnectionError``, ``TimeoutError``); ``OSError`` covers the rest
#: (raw socket errors, the builtin ``TimeoutError``, which is an ``OSError``).
BACKEND_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)

#: At most one WARNING per this many seconds (start, reminder, or a new outage).
LOG_INTERVAL = 60.0


class RecoveryListener(Protocol):
    def backend_recovered(self) -> None:
        """Called (in whichever thread noticed) when an outage ends; must not block."""


@dataclass
class _State:
    down_since: float | None = None  # monotonic; None while the backend works
    failures: int = 0  # failed operations in the current outage
    logged: bool = False  # a WARNING was written for the current outage
    last_warning: float = float("-inf")
    unlogged: int = 0  # outages not logged since the last WARNING


_lock = threading.Lock()
_state = _State()
_listeners: weakref.WeakSet[RecoveryListener] = weakref.WeakSet()


def record_failure(exc: BaseException, what: str) -> None:
    """Count one failed backend operation (``what``, e.g. ``"history read"``)."""
    now = time.monotonic()
    with _lock:
        state = _state
        starting = state.down_since is None
        if starting:
            state.down_since, state.failures, state.logged = now, 0, False
        state.failures += 1
        metrics.redis_failure(what, starting)
        if now - state.last_warning < LOG_INTERVAL:
            state.unlogged += starting
            return
        state.last_warning = now
        first, state.logged = not state.logged, True
        if first and not starting:
            state.unlogged -= 1  # counted as unlogged when it started: it is logged now
        unlogged, state.unlogged = state.unlogged, 0
        duration, failures = now - (state.down_since or now), state.failures
    detail = f"{what}: {type(exc).__name__}: {exc}"
    extra = f" ({unlogged} shorter outage(s) since the last report not logged)" if unlogged else ""
    if first:
        logger.warning(
            "Realtime backend (Redis) unavailable; clients get 'unavailable' (503) until it "
            "is back%s. First failure: %s",
            extra,
            detail,
        )
    else:
        logger.warning(
            "Realtime backend (Redis) still unavailable after %.0fs, %d failed operations%s. "
            "Last failure: %s",
            duration,
            failures,
            extra,
            detail,
        )


def record_success() -> None:
    """A backend operation worked: ends the outage, if there is one (cheap otherwise)."""
    if _state.down_since is None:  # the common case, without the lock
        return
    with _lock:
        state = _state
        if state.down_since is None:
            return
        duration, failures, logged = (
            time.monotonic() - state.down_since,
            state.failures,
            state.logged,
        )
        state.down_since, state.failures, state.logged = None, 0, False
    metrics.redis_recovered()
    if logged:
        logger.info(
            "Realtime backend (Redis) available again after %.1fs (%d failed operations).",
            duration,
            failures,
        )
    for listener in list(_listeners):
        try:
            listener.backend_recovered()
        except Exception:  # one listener's bug must not stop the others
            logger.exception("Outage recovery listener %r failed", listener)


def unavailable(exc: BaseException, what: str) -> Unavailable:
    """Record ``exc`` and return the :class:`Unavailable` to raise in its place
    (``raise outage.unavailable(exc, "history read") from exc``)."""
    record_failure(exc, what)
    return Unavailable()


def is_down() -> bool:
    """Whether the last backend operation failed (an outage is going on)."""
    return _state.down_since is not None


def failures() -> int:
    """Failed operations in the current outage (0 when there is none)."""
    return _state.failures if _state.down_since is not None else 0


def add_listener(listener: RecoveryListener) -> None:
    """Call ``listener.backend_recovered()`` whenever an outage ends (held weakly)."""
    _listeners.add(listener)


def remove_listener(listener: RecoveryListener) -> None:
    _listeners.discard(listener)


def reset() -> None:
    """Forget the current outage and the log rate limit (tests)."""
    global _state
    with _lock:
        _state = _State()


class _ChannelsRedisFilter(logging.Filter):
    """channels-redis's pub/sub layer logs a traceback every second while Redis is down
    ("Unexpected exception in receive task"): count those as outage failures instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BACKEND_ERRORS):
            record_failure(exc, "channel layer receive")
            return False
        return True


_filter = _ChannelsRedisFilter()


def quiet_layer_logs() -> None:
    """Route channels-redis's per-second connection tracebacks through this module."""
    pubsub_logger = logging.getLogger("channels_redis.pubsub")
    if _filter not in pubsub_logger.filters:
        pubsub_logger.addFilter(_filter)
