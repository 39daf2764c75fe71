"""In-memory presence: one process (the embedded default)."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from .base import Presence, _broadcast, _Deadlines, describe, summarize


class MemoryPresence(Presence):
    """One process: the embedded default."""

    def __init__(self) -> None:
        self._topics: dict[str, dict[str, dict[str, Any]]] = {}
        #: Polling clients' expiry timers, per event loop: (topic, conn id) keys.
        self._deadlines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = (
            weakref.WeakKeyDictionary()
        )
        _instances.add(self)

    async def join(self, topic: str, conn_id: str, user: Any) -> None:
        info = describe(user)
        self._topics.setdefault(topic, {})[conn_id] = info
        await _broadcast(topic, "join", conn_id, info)

    async def leave(self, topic: str, conn_id: str) -> None:
        entries = self._topics.get(topic, {})
        info = entries.pop(conn_id, None)
        if not entries:
            self._topics.pop(topic, None)
        if info is not None:
            await _broadcast(topic, "leave", conn_id, info)

    async def snapshot(self, topic: str) -> dict[str, Any]:
        return summarize(self._topics.get(topic, {}))

    async def seen(self, entries: list[tuple[str, Any]], conn_id: str, ttl: float) -> None:
        loop = asyncio.get_running_loop()
        deadlines = self._deadlines.get(loop)
        if deadlines is None:
            deadlines = self._deadlines[loop] = _Deadlines(self._expire)
        when = loop.time() + ttl
        for topic, user in entries:
            info = describe(user)
            present = self._topics.setdefault(topic, {})
            new = conn_id not in present
            present[conn_id] = info
            deadlines.set((topic, conn_id), when)
            if new:
                await _broadcast(topic, "join", conn_id, info)

    async def _expire(self, keys: list[tuple[str, str]]) -> None:
        for topic, conn_id in keys:
            await self.leave(topic, conn_id)

    async def aclose(self) -> None:
        deadlines = self._deadlines.pop(asyncio.get_running_loop(), None)
        if deadlines is not None:
            await deadlines.aclose()


_instances: weakref.WeakSet[MemoryPresence] = weakref.WeakSet()
