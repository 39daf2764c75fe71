"""Redis history: the production backend, shared by every process.

Per topic two keys share a hash tag (so they live on one Redis Cluster slot):
``<prefix>{<topic>}:m`` a hash with ``epoch`` and ``seq``, and ``<prefix>{<topic>}:l``
a list of records ``"<seq>|<time>|<type>|<data>"`` in seq order. Lua scripts make
"next seq + store + trim" one atomic step, so concurrent publishers in any number of
processes never share a seq and never leave a hole. A missing hash means the topic's
history was lost (flushed, restarted empty, expired): a new epoch is drawn.

Every operation raises :class:`~rtdelivery.core.errors.Unavailable` when Redis cannot be
reached (the Redis error goes to the ``rtdelivery.outage`` log, never to clients).
"""

from __future__ import annotations

import hashlib
import secrets
import time as _time
from collections.abc import Iterable
from typing import Any

from redis.exceptions import NoScriptError

from .. import outage
from ..conf import Settings
from ..connections import get_redis
from ..core.cursors import Position
from ..core.events import Event
from ..outage import BACKEND_ERRORS
from .base import History, ReadResult, new_epoch

# Shared by both scripts: make sure the topic has an epoch; drop records older than
# the age limit, oldest first (at most the list's length, which the size limit bounds;
# each record is dropped once, so the work is amortized over the appends).
_PRELUDE = """
local function ensure(meta, log, epoch, ttl)
  local current = redis.call('HGET', meta, 'epoch')
  if not current then
    redis.call('HSET', meta, 'epoch', epoch, 'seq', 0)
    redis.call('DEL', log)
    current = epoch
  end
  redis.call('EXPIRE', meta, ttl)
  return current
end
local function trim_old(log, min_time)
  for _ = 1, redis.call('LLEN', log) do
    local head = redis.call('LINDEX', log, 0)
    if not head then return end
    local t = tonumber(string.match(head, '^%d+|(%d+)|'))
    if t and t < min_time then redis.call('LPOP', log) else return end
  end
end
"""

# KEYS: meta, log. ARGV: new epoch, record without seq, max size, min time, meta ttl, log ttl
_APPEND = (
    _PRELUDE
    + """
local epoch = ensure(KEYS[1], KEYS[2], ARGV[1], ARGV[5])
-- Idempotent: a retried append (its reply was lost) finds its own publish id and
-- answers the seq it already got instead of storing the event twice.
local done = redis.call('GET', KEYS[3])
if done then
  local e, s = string.match(done, '^(%d+):(%d+)$')
  if e == epoch then return {epoch, tonumber(s)} end
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('SET', KEYS[3], epoch .. ':' .. seq, 'EX', 300)
local size = tonumber(ARGV[3])
if size > 0 then
  redis.call('RPUSH', KEYS[2], seq .. '|' .. ARGV[2])
  redis.call('LTRIM', KEYS[2], -size, -1)
  trim_old(KEYS[2], tonumber(ARGV[4]))
  redis.call('EXPIRE', KEYS[2], ARGV[6])
else
  redis.call('DEL', KEYS[2])
end
return {epoch, seq}
"""
)

# KEYS: meta, log. ARGV: new epoch, mode ('after'|'latest'|'head'), since epoch, since seq,
# limit (-1: none), min time, meta ttl. Returns {epoch, head seq, first seq, records...};
# for 'after' with an unrecoverable position the records are left out and the 4th
# element is the flag 'lost'.
_READ = (
    _PRELUDE
    + """
local epoch = ensure(KEYS[1], KEYS[2], ARGV[1], ARGV[7])
trim_old(KEYS[2], tonumber(ARGV[6]))
local head = tonumber(redis.call('HGET', KEYS[1], 'seq'))
local len = redis.call('LLEN', KEYS[2])
local first = head - len + 1
local mode = ARGV[2]
local limit = tonumber(ARGV[5])
if mode == 'head' then
  return {epoch, head, first}
elseif mode == 'latest' then
  if limit <= 0 then return {epoch, head, first} end
  local out = {epoch, head, first}
  for _, r in ipairs(redis.call('LRANGE', KEYS[2], -limit, -1)) do table.insert(out, r) end
  return out
end
local since = tonumber(ARGV[4])
if ARGV[3] ~= epoch or since > head or since < first - 1 then
  return {epoch, head, first, 'lost'}
end
if limit == 0 then return {epoch, head, first} end
local start = since - first + 1
local stop = -1
if limit > 0 then stop = start + limit - 1 end
local out = {epoch, head, first}
for _, r in ipairs(redis.call('LRANGE', KEYS[2], start, stop)) do table.insert(out, r) end
return out
"""
)


_SHAS = {script: hashlib.sha1(script.encode()).hexdigest() for script in (_APPEND, _READ)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisHistory(History):
    """History in Redis, namespaced by ``RTDELIVERY["KEY_PREFIX"]``."""

    def __init__(self, conf: Settings) -> None:
        super().__init__(conf)
        self.prefix = conf.key_prefix
        self._append_sha: str | None = None
        self._read_sha: str | None = None

    def keys(self, topic: str) -> tuple[str, str]:
        base = f"{self.prefix}{{{topic}}}"
        return base + ":m", base + ":l"

    async def _eval(self, script: str, keys: tuple[str, ...], *args: Any) -> list[Any]:
        client = get_redis()
        sha = _SHAS[script]
        try:
            try:
                reply = await client.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:
                # Redis restarted or SCRIPT FLUSH: send the script itself once.
                reply = await client.eval(script, len(keys), *keys, *args)
        except BACKEND_ERRORS as exc:
            what = "history append" if script is _APPEND else "history read"
            raise outage.unavailable(exc, what) from exc
        outage.record_success()
        return list(reply)

    async def append(self, topic: str, type: str, data_json: str, time: int) -> Event:  # noqa: A002
        options = self.conf.topic_options(topic)
        # A publish id per append makes the script idempotent, so the client may retry it
        # after a connection error without storing the event twice.
        publish_id = secrets.token_hex(8)
        epoch_s, seq = await self._eval(
            _APPEND,
            (*self.keys(topic), f"{self.prefix}{{{topic}}}:p:{publish_id}"),
            new_epoch(),
            f"{time}|{type}|{data_json}",
            options.history_size,
            time - options.history_max_age * 1000,
            max(self.conf.topic_idle_ttl, options.history_max_age),
            options.history_max_age + 60,
        )
        return Event(topic, int(seq), int(_text(epoch_s)), type, data_json, time, key=self.key)

    async def _read(
        self, topic: str, mode: str, since: Position | None, limit: int | None
    ) -> tuple[int, int, int, list[Any]]:
        options = self.conf.topic_options(topic)
        now = int(_time.time() * 1000)
        reply = await self._eval(
            _READ,
            self.keys(topic),
            new_epoch(),
            mode,
            str(since.epoch) if since else "",
            since.seq if since else 0,
            -1 if limit is None else limit,
            now - options.history_max_age * 1000,
            max(self.conf.topic_idle_ttl, options.history_max_age),
        )
        return int(_text(reply[0])), int(reply[1]), int(reply[2]), reply[3:]

    async def read(
        self, topic: str, since: Position | None, limit: int | None = None
    ) -> ReadResult:
        if since is None:
            epoch, head, first, _ = await self._read(topic, "head", None, None)
            return ReadResult([], Position(epoch, head), True, first_seq=first)
        epoch, head, first, records = await self._read(topic, "after", since, limit)
        if records and records[0] in (b"lost", "lost"):
            return ReadResult([], Position(epoch, head), False, first_seq=first)
        events = [Event.from_record(topic, epoch, r, self.key) for r in records]
        # No events: at the head, or limit=0 (then the reader stays where it was).
        position = Position(epoch, events[-1].seq if events else since.seq)
        return ReadResult(events, position, True, more=position.seq < head, first_seq=first)

    async def latest(self, topic: str, n: int) -> ReadResult:
        epoch, head, first, records = await self._read(topic, "latest", None, n)
        events = [Event.from_record(topic, epoch, r, self.key) for r in records]
        return ReadResult(events, Position(epoch, head), True, first_seq=first)

    async def heads(self, topics: Iterable[str]) -> dict[str, Position | None]:
        topics = list(topics)
        if not topics:
            return {}
        client = get_redis()
        try:
            async with client.pipeline(transaction=False) as pipe:
                for topic in topics:
                    pipe.hmget(self.keys(topic)[0], "epoch", "seq")
                replies = await pipe.execute()
        except BACKEND_ERRORS as exc:
            raise outage.unavailable(exc, "history heads") from exc
        outage.record_success()
        result: dict[str, Position | None] = {}
        for topic, (epoch, seq) in zip(topics, replies, strict=True):
            result[topic] = None if epoch is None else Position(int(_text(epoch)), int(seq))
        return result
