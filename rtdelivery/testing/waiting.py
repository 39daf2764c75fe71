"""Bounded waits: the default timeouts every helper uses, and :func:`wait_until`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["DEFAULT_TIMEOUT", "NO_EVENT_TIMEOUT", "wait_until"]

#: Default bound (seconds) of every wait for something that should happen.
DEFAULT_TIMEOUT = 2.0
#: Default time (seconds) an ``assert_no_event`` watches for a stray event.
NO_EVENT_TIMEOUT = 0.2


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    within: float = 10.0,
    what: str = "",
    interval: float = 0.01,
) -> None:
    """Poll ``predicate`` (sync or async) every ``interval`` seconds until it holds;
    fail with an ``AssertionError`` naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
        await asyncio.sleep(interval)
