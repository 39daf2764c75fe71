"""Redis presence: shared by every process, namespaced by ``RTDELIVERY["KEY_PREFIX"]``.

Per topic two keys with the topic as hash tag (one Redis Cluster slot):
``<prefix>{<topic>}:pz``, a sorted set of connection ids scored by expiry time (Redis
clock, milliseconds), and ``<prefix>{<topic>}:ph``, a hash of connection id -> JSON
``{"id", "name"}``. Each process refreshes its own entries every ``PRESENCE_TTL / 3``
seconds (one task per event loop, one pipeline for all its entries); the entries of a
process that stops refreshing (crashed, killed, partitioned) expire ``PRESENCE_TTL``
seconds later. Whoever next sweeps the topic (a snapshot, a join, any process's refresh)
removes them atomically and broadcasts a ``leave`` for each, once.

A polling client's entry expires ``PRESENCE_POLL_TTL`` seconds after its request (the
same sorted-set score the refresh extends); a per-loop timer
(:class:`~rtdelivery.presence.base._Deadlines`) sweeps the topic when an entry it wrote
is due, so its ``leave`` goes out on time.

Join, leave and snapshot raise :class:`~rtdelivery.core.errors.Unavailable` when Redis
(the store or the channel layer) cannot be reached; the refresh task retries quietly
(:mod:`rtdelivery.outage` logs the outage once) and re-announces its entries when Redis
comes back empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from dataclasses import dataclass, field
from typing import Any

from .. import outage
from ..conf import Settings
from ..core.errors import Unavailable
from ..outage import BACKEND_ERRORS
from .base import Presence, _broadcast, _Deadlines, describe, summarize

logger = logging.getLogger("rtdelivery.presence")

#: Seconds after a polling client's entry is due before its topic is swept.
SWEEP_MARGIN = 0.25


# KEYS: zset, hash. ARGV: ttl ms, key ttl ms, want live ('1'|'0'), then conn id/info pairs
# to (re)write. Time is Redis's, so the processes' clocks don't matter. Returns
# {re-added conn ids (they were not there), gone flat [id, info, ...], live flat}.
_TOUCH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local added = {}
for i = 4, #ARGV, 2 do
  if redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) == 1 then
    table.insert(added, ARGV[i])
  end
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
local gone = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  table.insert(gone, id)
  table.insert(gone, redis.call('HGET', KEYS[2], id) or '{}')
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
if #ARGV >= 4 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
local live = {}
if ARGV[3] == '1' then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    table.insert(live, id)
    table.insert(live, redis.call('HGET', KEYS[2], id) or '{}')
  end
end
return {added, gone, live}
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: list[Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for i in range(0, len(flat) - 1, 2):
        try:
            info = json.loads(_text(flat[i + 1]))
        except ValueError:
            info = {}
        if not isinstance(info, dict):
            info = {}
        result[_text(flat[i])] = {"id": info.get("id"), "name": info.get("name")}
    return result


@dataclass(eq=False)
class _LoopState:
    """One event loop's connections (topic -> conn id -> info JSON) and refresh task."""

    entries: dict[str, dict[str, str]] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    #: When a polling client's entry this loop wrote is due, per topic (then swept).
    polls: _Deadlines | None = None
    #: Cancelled refresh tasks not finished yet (awaited by ``aclose``).
    stopping: set[asyncio.Task[None]] = field(default_factory=set)


@dataclass(frozen=True)
class _Touch:
    topic: str
    pairs: tuple[tuple[str, str], ...] = ()
    live: bool = False
    #: The pairs' time to live (ms); None: PRESENCE_TTL (a connection's).
    ttl_ms: int | None = None


class RedisPresence(Presence):
    """Presence in Redis, namespaced by ``RTDELIVERY["KEY_PREFIX"]``."""

    def __init__(self, conf: Settings) -> None:
        self.prefix = conf.key_prefix
        self.ttl_ms = conf.presence_ttl * 1000
        # The longest a polling client's entry lives: a held long poll, then the TTL.
        longest_ms = max(
            self.ttl_ms, int((conf.presence_poll_ttl + conf.longpoll_max_timeout) * 1000)
        )
        # Keys outlive their last refresh long enough for someone to sweep (and announce)
        # the expired entries, then vanish: an abandoned topic leaves nothing behind.
        self.key_ttl_ms = longest_ms * 3 + 10_000
        self.interval = conf.presence_ttl / 3
        self._sha = ""
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        _redis_instances.add(self)

    def keys(self, topic: str) -> tuple[str, str]:
        base = f"{self.prefix}{{{topic}}}"
        return base + ":pz", base + ":ph"

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = _LoopState()
        return state

    # -- Redis -----------------------------------------------------------------------
    async def _touch(self, touches: list[_Touch]) -> list[tuple[list[str], Any, Any]]:
        """Run the touch script once per item in one pipeline; (added, gone, live) each."""
        from redis.exceptions import NoScriptError

        from ..connections import get_redis

        client = get_redis()
        results: list[Any] = [None] * len(touches)
        todo = list(range(len(touches)))
        try:
            if not self._sha:
                self._sha = await _script_load(client)
            for _attempt in range(2):
                async with client.pipeline(transaction=False) as pipe:
                    for i in todo:
                        touch = touches[i]
                        ttl_ms = self.ttl_ms if touch.ttl_ms is None else touch.ttl_ms
                        args = [str(ttl_ms), str(self.key_ttl_ms), "1" if touch.live else "0"]
                        for conn_id, info in touch.pairs:
                            args += [conn_id, info]
                        pipe.evalsha(self._sha, 2, *self.keys(touch.topic), *args)
                    replies = await pipe.execute(raise_on_error=False)
                missing = []
                for i, reply in zip(todo, replies, strict=True):
                    if isinstance(reply, NoScriptError):
                        missing.append(i)
                    elif isinstance(reply, Exception):
                        raise reply
                    else:
                        results[i] = reply
                if not missing:
                    break
                # Redis restarted or SCRIPT FLUSH: load the script once, redo those.
                self._sha = await _script_load(client)
                todo = missing
            else:  # pragma: no cover - the script vanished twice in a row
                raise RuntimeError("The presence script vanished from Redis twice in a row.")
        except BACKEND_ERRORS as exc:
            raise outage.unavailable(exc, "presence update") from exc
        outage.record_success()
        return [([_text(a) for a in r[0]], r[1], r[2]) for r in results]

    async def _announce_gone(self, topic: str, gone: list[Any]) -> None:
        for conn_id, info in _pairs(gone).items():
            await _broadcast(topic, "leave", conn_id, info)

    # -- API -------------------------------------------------------------------------
    async def join(self, topic: str, conn_id: str, user: Any) -> None:
        info = describe(user)
        text = json.dumps(info, separators=(",", ":"))
        state = self._state()
        state.entries.setdefault(topic, {})[conn_id] = text
        try:
            ((_, gone, _),) = await self._touch([_Touch(topic, ((conn_id, text),))])
        except BaseException:
            self._forget(state, topic, conn_id)
            raise
        self._ensure_task(state)
        await self._announce_gone(topic, gone)
        await _broadcast(topic, "join", conn_id, info)

    async def leave(self, topic: str, conn_id: str) -> None:
        from ..connections import get_redis

        state = self._state()
        local = state.entries.get(topic, {}).get(conn_id)
        self._forget(state, topic, conn_id)
        zset, hash_ = self.keys(topic)
        try:
            async with get_redis().pipeline(transaction=True) as pipe:
                pipe.hget(hash_, conn_id)
                pipe.zrem(zset, conn_id)
                pipe.hdel(hash_, conn_id)
                stored, removed, _ = await pipe.execute()
        except BACKEND_ERRORS as exc:
            # The entry expires on its own after PRESENCE_TTL.
            raise outage.unavailable(exc, "presence leave") from exc
        outage.record_success()
        if removed:
            info = _pairs([conn_id, stored if stored is not None else local or "{}"])[conn_id]
            await _broadcast(topic, "leave", conn_id, info)

    async def snapshot(self, topic: str) -> dict[str, Any]:
        ((_, gone, live),) = await self._touch([_Touch(topic, live=True)])
        await self._announce_gone(topic, gone)
        return summarize(_pairs(live))

    async def seen(self, entries: list[tuple[str, Any]], conn_id: str, ttl: float) -> None:
        ttl_ms = max(1, int(ttl * 1000))
        touches = []
        infos = []
        for topic, user in entries:
            info = describe(user)
            infos.append(info)
            text = json.dumps(info, separators=(",", ":"))
            touches.append(_Touch(topic, ((conn_id, text),), ttl_ms=ttl_ms))
        # One round trip for every topic of the request (a script per topic, pipelined).
        results = await self._touch(touches)
        state = self._state()
        if state.polls is None:
            state.polls = _Deadlines(self._sweep)
        # Swept a moment after it is due by Redis's clock (the script ran after this).
        when = asyncio.get_running_loop().time() + ttl + SWEEP_MARGIN
        for touch, info, (added, gone, _) in zip(touches, infos, results, strict=True):
            state.polls.set(touch.topic, max(when, state.polls.at.get(touch.topic, 0.0)))
            await self._announce_gone(touch.topic, gone)
            if conn_id in added:
                await _broadcast(touch.topic, "join", conn_id, info)

    async def _sweep(self, topics: list[str]) -> None:
        """Remove (and announce) the expired entries of ``topics``: a polling client this
        loop saw is due there. One that was seen again since (by any process) stays."""
        results = await self._touch([_Touch(topic) for topic in topics])
        for topic, (_, gone, _) in zip(topics, results, strict=True):
            await self._announce_gone(topic, gone)

    async def aclose(self) -> None:
        state = self._loops.pop(asyncio.get_running_loop(), None)
        if state is None:
            return
        if state.polls is not None:
            await state.polls.aclose()
        tasks = {*state.stopping, *([state.task] if state.task is not None else [])}
        state.task = None
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- refreshing --------------------------------------------------------------------
    def _forget(self, state: _LoopState, topic: str, conn_id: str) -> None:
        entries = state.entries.get(topic)
        if entries is not None:
            entries.pop(conn_id, None)
            if not entries:
                del state.entries[topic]
        if not state.entries and state.task is not None:
            # Nothing left to refresh on this loop: the task ends (a join restarts it).
            task, state.task = state.task, None
            task.cancel()
            state.stopping.add(task)
            task.add_done_callback(state.stopping.discard)

    def _ensure_task(self, state: _LoopState) -> None:
        if state.entries and (state.task is None or state.task.done()):
            state.task = asyncio.create_task(
                self._refresh_loop(state), name="rtdelivery-presence-refresh"
            )

    async def _refresh_loop(self, state: _LoopState) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh(state)
            except Unavailable:
                pass  # logged by outage; the next refresh re-adds what expired meanwhile
            except Exception:
                logger.warning("Could not refresh presence entries", exc_info=True)

    async def refresh(self, state: _LoopState | None = None) -> None:
        """Extend every local entry's expiry (one pipeline), sweep expired entries of
        those topics and re-announce entries that had vanished (e.g. Redis flushed)."""
        state = state or self._state()
        touches = [
            _Touch(topic, tuple(entries.items()))
            for topic, entries in list(state.entries.items())
            if entries
        ]
        if not touches:
            return
        results = await self._touch(touches)
        for touch, (added, gone, _) in zip(touches, results, strict=True):
            await self._announce_gone(touch.topic, gone)
            infos = dict(touch.pairs)
            for conn_id in added:
                # Still ours (not left meanwhile)? Then it is back: say so.
                if conn_id in state.entries.get(touch.topic, {}):
                    await _broadcast(touch.topic, "join", conn_id, json.loads(infos[conn_id]))


async def _script_load(client: Any) -> str:
    return _text(await client.script_load(_TOUCH))


_redis_instances: weakref.WeakSet[RedisPresence] = weakref.WeakSet()
