"""Presence: who is currently subscribed to a topic (for chat rooms).

Streaming connections (WebSocket, SSE) on topics with ``"presence": True`` join on
subscribe and leave on unsubscribe/disconnect. Join and leave are broadcast to every
process as ``presence`` notices (not topic events: no seq, not in history).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .conf import get_settings
from .core.errors import RTDeliveryError
from .core.topics import group_name


class PresenceDisabled(RTDeliveryError):
    code = "presence_disabled"


def presence_enabled(topic: str) -> None:
    """Raise :class:`PresenceDisabled` unless ``topic`` has presence turned on."""
    if not get_settings().topic_options(topic).presence:
        raise PresenceDisabled(f"Presence is not enabled for topic {topic!r}.")


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


class MemoryPresence:
    """One process: the embedded default."""

    def __init__(self) -> None:
        self._topics: dict[str, dict[str, dict[str, Any]]] = {}

    async def join(self, topic: str, conn_id: str, user: Any) -> None:
        info = describe(user)
        self._topics.setdefault(topic, {})[conn_id] = info
        await _broadcast(topic, "join", conn_id, info)

    async def leave(self, topic: str, conn_id: str) -> None:
        info = self._topics.get(topic, {}).pop(conn_id, None)
        if info is not None:
            await _broadcast(topic, "leave", conn_id, info)

    async def snapshot(self, topic: str) -> dict[str, Any]:
        return summarize(self._topics.get(topic, {}))


async def _broadcast(topic: str, action: str, conn_id: str, info: dict[str, Any]) -> None:
    from .hub import PRESENCE_TYPE, get_layer

    await get_layer().group_send(
        group_name(topic),
        {
            "type": PRESENCE_TYPE,
            "topic": topic,
            "data": {
                "topic": topic,
                "action": action,
                "user": info,
                "connection": conn_id,
                "time": int(time.time() * 1000),
            },
        },
    )


_instances: dict[asyncio.AbstractEventLoop | None, Any] = {}
_memory = MemoryPresence()


def get_presence() -> Any:
    """The presence store for the configured history backend."""
    return _memory
