"""Presence: who is currently subscribed to a topic (for chat rooms).

Streaming connections (WebSocket, SSE) on topics with ``"presence": True`` join on
subscribe and leave on unsubscribe/disconnect. Join and leave are broadcast to every
process as ``presence`` notices (not topic events: no seq, not in history).

Two stores, chosen like the history backend (``RTDELIVERY["HISTORY_BACKEND"]``):

- :class:`MemoryPresence` (:mod:`.memory`): one process (the embedded default).
- :class:`RedisPresence` (:mod:`.redis`): shared by every process; each process refreshes
  its own entries, and the entries of a process that stops refreshing expire
  ``PRESENCE_TTL`` seconds later (then a ``leave`` is broadcast for each, once).

Polling clients (``poll``, ``longpoll`` with ``client=<id>``) are present too, without a
connection to refresh them: each request marks the client seen (:meth:`Presence.seen`, one
pipelined script per request), and its entry expires ``PRESENCE_POLL_TTL`` seconds after the
request (a long poll: after its timeout) unless the client asks again; a per-loop timer
sweeps it then, so its ``leave`` goes out on time.

Join, leave and snapshot raise :class:`~rtdelivery.core.errors.Unavailable` when Redis
(the store or the channel layer) cannot be reached.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from typing import Any

from ..conf import PerSettings, Settings, get_settings
from ..core.errors import PresenceDisabled
from ..core.errors import PresenceUnavailable as PresenceUnavailable  # the old name, re-exported
from .base import Presence, describe, summarize
from .memory import MemoryPresence, _instances
from .redis import SWEEP_MARGIN, RedisPresence, _redis_instances

__all__ = [
    "SWEEP_MARGIN",
    "MemoryPresence",
    "Presence",
    "PresenceUnavailable",
    "RedisPresence",
    "aclose_presence",
    "connection_id",
    "describe",
    "get_presence",
    "poll_connection_id",
    "presence_enabled",
    "reset_presence",
    "summarize",
]

_ids = itertools.count(1)


def connection_id() -> str:
    """A connection id unique among this process's connections: ``"<pid>.<n>"``."""
    return f"{os.getpid()}.{next(_ids)}"


def poll_connection_id(client: str, user: Any) -> str:
    """The presence connection id of polling client ``client`` (its ``client=``) of ``user``:
    the same on every request and process, ``"c.<hex>"``. Keyed by ``SECRET_KEY`` and the
    user: presence frames show it to everyone, and it reveals neither the client's own id
    (nobody else can keep that entry alive) nor lets another user take it over."""
    user_id = describe(user)["id"] or ""
    digest = hashlib.blake2b(
        f"{client}\n{user_id}".encode(),
        key=get_settings().cursor_key[:32],
        person=b"rt.presence.poll",
        digest_size=10,
    )
    return "c." + digest.hexdigest()


def presence_enabled(topic: str) -> None:
    """Raise :class:`PresenceDisabled` unless ``topic`` has presence turned on."""
    if not get_settings().topic_options(topic).presence:
        raise PresenceDisabled(f"Presence is not enabled for topic {topic!r}.", topic=topic)


def _build(conf: Settings) -> Presence:
    return RedisPresence(conf) if conf.history_backend == "redis" else MemoryPresence()


_presence = PerSettings(_build)


def get_presence() -> Presence:
    """The presence store for the configured history backend (one per settings object:
    new settings, e.g. in tests, give a new store)."""
    return _presence.get()


async def aclose_presence() -> None:
    """Stop the running loop's refresh tasks (tests, shutdown). Entries left in Redis
    expire after ``PRESENCE_TTL``."""
    for presence in [*_redis_instances, *_instances]:
        await presence.aclose()


def reset_presence() -> None:
    """Forget the store instances (the in-memory one forgets who is there)."""
    _presence.reset()
