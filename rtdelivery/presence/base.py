"""The presence interface shared by both stores, and what they share: a user's public
identity (:func:`describe`), the snapshot's shape (:func:`summarize`), the broadcast of
``join``/``leave`` notices and the polling clients' expiry timer (:class:`_Deadlines`)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from .. import backplane
from ..core.errors import Unavailable

logger = logging.getLogger("rtdelivery.presence")


def describe(user: Any) -> dict[str, Any]:
    """The public identity of a connection's user: id and display name, or anonymous."""
    if user is not None and getattr(user, "is_authenticated", False):
        name = user.get_full_name() if hasattr(user, "get_full_name") else ""
        return {"id": str(user.pk), "name": name or user.get_username()}
    return {"id": None, "name": None}


def summarize(entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{"users": [{"id", "name", "connections"}], "anonymous": n, "count": n}``."""
    users: dict[str, dict[str, Any]] = {}
    anonymous = 0
    for info in entries.values():
        if info.get("id") is None:
            anonymous += 1
            continue
        entry = users.setdefault(info["id"], {**info, "connections": 0})
        entry["connections"] += 1
    return {
        "users": sorted(users.values(), key=lambda u: u["id"]),
        "anonymous": anonymous,
        "count": len(entries),
    }


class Presence:
    """The interface of both stores."""

    async def join(self, topic: str, conn_id: str, user: Any) -> None:
        """Add connection ``conn_id`` of ``user`` to ``topic``; broadcast ``join``."""
        raise NotImplementedError

    async def leave(self, topic: str, conn_id: str) -> None:
        """Remove ``conn_id`` from ``topic``; broadcast ``leave`` if it was there."""
        raise NotImplementedError

    async def snapshot(self, topic: str) -> dict[str, Any]:
        """Who is on ``topic`` now (see :func:`summarize`)."""
        raise NotImplementedError

    async def seen(self, entries: list[tuple[str, Any]], conn_id: str, ttl: float) -> None:
        """Polling client ``conn_id`` was seen on each ``(topic, user)`` of ``entries``:
        present there until ``ttl`` seconds from now unless seen again. ``join`` is
        broadcast where it was not present, ``leave`` once it expires."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Stop the running loop's background work (no leaves are sent)."""


class _Deadlines:
    """Keys due at event-loop times, and one task (per loop) that hands the keys whose
    time came to ``due``. Setting a key again moves it (the older time is skipped)."""

    def __init__(self, due: Callable[[list[Any]], Awaitable[None]]) -> None:
        self._due = due
        self.at: dict[Hashable, float] = {}
        self._heap: list[tuple[float, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def set(self, key: Hashable, when: float) -> None:
        self.at[key] = when
        heapq.heappush(self._heap, (when, key))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="rtdelivery-presence-expiry")
        elif self._heap[0][0] == when:
            self._wake.set()  # sooner than the timer sleeps for

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._heap:
            when, key = self._heap[0]
            if self.at.get(key) != when:
                heapq.heappop(self._heap)  # moved or gone since
                continue
            delay = when - loop.time()
            if delay > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                continue
            due = []
            while self._heap and self._heap[0][0] <= loop.time():
                when, key = heapq.heappop(self._heap)
                if self.at.get(key) == when:
                    del self.at[key]
                    due.append(key)
            try:
                await self._due(due)
            except Unavailable:
                pass  # logged by outage; the entries expire in Redis, swept by the next touch
            except Exception:
                logger.warning("Could not expire presence entries", exc_info=True)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _broadcast(topic: str, action: str, conn_id: str, info: dict[str, Any]) -> None:
    await backplane.send_presence(backplane.get_layer(), topic, action, conn_id, info)
