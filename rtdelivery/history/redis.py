"""Redis history: the production backend, shared by every process.

Per topic two keys share a hash tag (so they live on one Redis Cluster slot):
``<prefix>{<topic>}:m`` a hash with ``epoch``, ``seq``, ``run`` (and ``reset``), and
``<prefix>{<topic>}:l`` a list of records ``"<seq>|<time>|<type>|<data>"`` in seq order.
Lua scripts make "next seq + store + trim" one atomic step, so concurrent publishers in
any number of processes never share a seq and never leave a hole. Only an append
creates keys: a read of a topic with no record answers without writing anything.

Redis may lose its last writes (restart from an RDB snapshot or an AOF fsynced every
second, failover to a replica that had not received them, a restored backup). Then its
counters go back and the same ``(epoch, seq)`` would be issued again for other events.
The scripts start a new epoch instead, atomically, whenever they see evidence of such a
rollback (see ``_PRELUDE``): the Redis server's ``run_id`` differs from the one recorded
at the topic's last write; a cursor is beyond the head in the current epoch; or this
process has already seen a higher seq in the current epoch (:class:`_Seen`).

Every operation raises :class:`~rtdelivery.core.errors.Unavailable` when Redis cannot be
reached (the Redis error goes to the ``rtdelivery.outage`` log, never to clients).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time as _time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from redis.exceptions import NoScriptError

from .. import metrics, outage
from ..conf import Settings
from ..connections import get_redis
from ..core.cursors import Position
from ..core.events import Event
from ..outage import BACKEND_ERRORS
from .base import BEFORE_FIRST, History, ReadResult, new_epoch

#: How long (seconds) an append's publish id is remembered, for a retry of it.
PUBLISH_ID_TTL = 300

#: How many topics a process remembers the highest position of (evidence of rollback).
SEEN_TOPICS = 10_000

# Shared by the scripts.
#
# load(): the topic's record, or nil when it has none (nothing is written then). A record
# whose history may have gone back is replaced by a new, empty epoch before anything
# else happens, so no (epoch, seq) is issued twice. The evidence:
# - `run` (the Redis server's run_id at the record's last write) is not the running
#   server's: Redis restarted or failed over since (RDB, AOF everysec, a promoted replica
#   may all have lost the last writes; continuity cannot be proven, so it is not assumed);
# - a position (this process's highest seen, or a reader's cursor) is beyond the head in
#   the current epoch: only a rollback makes the head go back.
# A record without `run` (written by an older rtdelivery) adopts the running server's.
#
# trim_old(): drop records older than the age limit, oldest first (at most the list's
# length, which the size limit bounds; each record is dropped once, so the work is
# amortized over the appends).
_PRELUDE = """
local function run_id()
  return string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
end
local function load(meta, log, fresh, seen_epoch, seen_seq, since_epoch, since_seq)
  local m = redis.call('HMGET', meta, 'epoch', 'seq', 'run', 'reset')
  local epoch = m[1]
  if not epoch then return nil end
  local head = tonumber(m[2])
  local run = run_id()
  if (m[3] and m[3] ~= run)
      or (seen_epoch == epoch and tonumber(seen_seq) > head)
      or (since_epoch == epoch and tonumber(since_seq) > head) then
    -- (exact: epochs are below 2^48, and %.0f never switches to an exponent)
    if fresh == epoch then fresh = string.format('%.0f', tonumber(fresh) + 2) end
    redis.call('HSET', meta, 'epoch', fresh, 'seq', 0, 'run', run, 'reset', 1)
    redis.call('DEL', log)
    return fresh, 0, true
  end
  if not m[3] then redis.call('HSET', meta, 'run', run) end
  return epoch, head, m[4] == '1'
end
local function trim_old(log, min_time)
  for _ = 1, redis.call('LLEN', log) do
    local first = redis.call('LINDEX', log, 0)
    if not first then return end
    local t = tonumber(string.match(first, '^%d+|(%d+)|'))
    if t and t < min_time then redis.call('LPOP', log) else return end
  end
end
"""

# KEYS: meta, log, mark (the idempotency key's, else the publish id's). ARGV: new epoch,
# record without seq ("<time>|<type>|<data>"), max size, min time, meta ttl, log ttl,
# seen epoch, seen seq, publish id, mark ttl. Returns {epoch, seq}, or for a repeated
# idempotency key {epoch, seq, time, type} of the first publish (nothing is written).
#
# The mark "<epoch>|<seq>|<publish id>|<time>|<type>" makes the append idempotent twice
# over: a retried append (its reply was lost) finds its own publish id and answers the
# seq it already got instead of storing the event twice; another publish with the same
# idempotency key finds another publish id and gets the first one's answer.
_APPEND = (
    _PRELUDE
    + """
local mark = redis.call('GET', KEYS[3])
local e, s, pid, t, ty
if mark then
  e, s, pid, t, ty = string.match(mark, '^(%d+)|(%d+)|(%w+)|(%d+)|(.*)$')
  if e and pid ~= ARGV[9] then return {e, tonumber(s), t, ty} end
end
local epoch = load(KEYS[1], KEYS[2], ARGV[1], ARGV[7], ARGV[8], '', 0)
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0, 'run', run_id())
  redis.call('DEL', KEYS[2])  -- a leftover list (its record expired): its seqs would clash
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
if e == epoch then return {epoch, tonumber(s)} end  -- our own retry
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
t, ty = string.match(ARGV[2], '^(%d+)|([^|]*)|')
redis.call('SET', KEYS[3], epoch .. '|' .. seq .. '|' .. ARGV[9] .. '|' .. t .. '|' .. ty,
           'EX', ARGV[10])
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

# KEYS: meta, log. ARGV: new epoch, mode, since epoch, since seq, limit (-1: none),
# min time, meta ttl, seen epoch, seen seq. Modes:
# - 'peek' (heads): {epoch, head}, without touching the TTL or the list;
# - 'head': {epoch, head, first}; 'latest': the same and the last `limit` records;
# - 'after': {epoch, head, first, how, records...} where how is
#   'ok' (records after `since`), 'lost' (`since` is older than what is retained: no
#   records, the reader goes to the live end) or 'reset' (`since` is of another epoch:
#   the current epoch's records from its oldest retained).
# A topic with no record answers {} (and nothing is written).
_READ = (
    _PRELUDE
    + """
local mode = ARGV[2]
local since_epoch, since_seq = ARGV[3], tonumber(ARGV[4])
local epoch, head, reset = load(KEYS[1], KEYS[2], ARGV[1], ARGV[8], ARGV[9],
                                since_epoch, since_seq)
if not epoch then return {} end
if mode == 'peek' then return {epoch, head} end
redis.call('EXPIRE', KEYS[1], ARGV[7])
trim_old(KEYS[2], tonumber(ARGV[6]))
local first = head - redis.call('LLEN', KEYS[2]) + 1
local limit = tonumber(ARGV[5])
if mode == 'head' then
  return {epoch, head, first}
elseif mode == 'latest' then
  local out = {epoch, head, first}
  if limit <= 0 then return out end
  for _, r in ipairs(redis.call('LRANGE', KEYS[2], -limit, -1)) do table.insert(out, r) end
  return out
end
local how, after = 'ok', since_seq
if since_epoch == epoch then
  if since_seq < first - 1 then return {epoch, head, first, 'lost'} end
elseif not (since_epoch == '0' and since_seq == 0 and first == 1 and not reset) then
  -- (0, 0) is "before the first event": it continues with seq 1 of a topic's first
  -- epoch, unless that epoch replaced a lost one.
  how, after = 'reset', first - 1
end
local out = {epoch, head, first, how}
if limit == 0 then return out end
local start = after - first + 1
local stop = -1
if limit > 0 then stop = start + limit - 1 end
for _, r in ipairs(redis.call('LRANGE', KEYS[2], start, stop)) do table.insert(out, r) end
return out
"""
)


_SHAS = {script: hashlib.sha1(script.encode()).hexdigest() for script in (_APPEND, _READ)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Seen:
    """The highest position this process was given or shown per topic (bounded LRU).

    Passed to every script: a head below it in the same epoch proves that Redis went
    back (a restore that kept its run_id), and the script starts a new epoch.
    """

    def __init__(self, size: int = SEEN_TOPICS) -> None:
        self.size = size
        self._positions: OrderedDict[str, Position] = OrderedDict()
        self._lock = threading.Lock()  # sync publish appends from its own thread

    def get(self, topic: str) -> Position | None:
        with self._lock:
            return self._positions.get(topic)

    def note(self, topic: str, position: Position) -> None:
        if position.epoch == 0:
            return
        with self._lock:
            known = self._positions.get(topic)
            # Another epoch replaces the known one (a reply may be late; an older epoch
            # noted again only weakens the evidence, never makes a false one).
            if known is None or known.epoch != position.epoch or known.seq < position.seq:
                self._positions[topic] = position
            self._positions.move_to_end(topic)
            while len(self._positions) > self.size:
                self._positions.popitem(last=False)


class RedisHistory(History):
    """History in Redis, namespaced by ``RTDELIVERY["KEY_PREFIX"]``."""

    def __init__(self, conf: Settings) -> None:
        super().__init__(conf)
        self.prefix = conf.key_prefix
        self.seen = _Seen()

    def keys(self, topic: str) -> tuple[str, str]:
        base = f"{self.prefix}{{{topic}}}"
        return base + ":m", base + ":l"

    def _seen_args(self, topic: str) -> tuple[str, int]:
        seen = self.seen.get(topic)
        return (str(seen.epoch), seen.seq) if seen else ("", 0)

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

    async def append(
        self,
        topic: str,
        type: str,  # noqa: A002
        data_json: str,
        time: int,
        key: str | None = None,
    ) -> Event:
        options = self.conf.topic_options(topic)
        # A publish id per append makes the script idempotent, so the client may retry it
        # after a connection error without storing the event twice.
        publish_id = secrets.token_hex(8)
        base = f"{self.prefix}{{{topic}}}"
        if key is None:
            mark, mark_ttl = f"{base}:p:{publish_id}", PUBLISH_ID_TTL
        else:
            mark, mark_ttl = f"{base}:k:{key}", self.conf.idempotency_ttl
        reply = await self._eval(
            _APPEND,
            (base + ":m", base + ":l", mark),
            new_epoch(),
            f"{time}|{type}|{data_json}",
            options.history_size,
            time - options.history_max_age * 1000,
            max(self.conf.topic_idle_ttl, options.history_max_age),
            options.history_max_age + 60,
            *self._seen_args(topic),
            publish_id,
            mark_ttl,
        )
        epoch, seq = int(_text(reply[0])), int(reply[1])
        if len(reply) > 2:  # a repeated idempotency key: the first publish's answer
            first_time, first_type = int(_text(reply[2])), _text(reply[3])
            return Event(
                topic, seq, epoch, first_type, data_json, first_time, key=self.key, duplicate=True
            )
        event = Event(topic, seq, epoch, type, data_json, time, key=self.key)
        self.seen.note(topic, event.position)
        return event

    async def _read(
        self, topic: str, mode: str, since: Position | None, limit: int | None
    ) -> tuple[int, int, int, list[Any]] | None:
        """(epoch, head, first, rest of the reply), or None for a topic with no record."""
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
            *self._seen_args(topic),
        )
        if not reply:
            return None
        epoch, head = int(_text(reply[0])), int(reply[1])
        self.seen.note(topic, Position(epoch, head))
        return epoch, head, int(reply[2]), reply[3:]

    async def read(
        self, topic: str, since: Position | None, limit: int | None = None
    ) -> ReadResult:
        metrics.HISTORY_READ.inc()
        found = await self._read(topic, "head" if since is None else "after", since, limit)
        if found is None:
            # No record: nothing to continue from; the reader waits before seq 1.
            return ReadResult([], BEFORE_FIRST, since is None or since == BEFORE_FIRST)
        epoch, head, first, rest = found
        if since is None:
            return ReadResult([], Position(epoch, head), True, first_seq=first)
        how, records = _text(rest[0]), rest[1:]
        if how == "lost":
            return ReadResult([], Position(epoch, head), False, first_seq=first)
        start = since if how == "ok" else Position(epoch, first - 1)
        events = [Event.from_record(topic, epoch, r, self.key) for r in records]
        # No events: at the head, or limit=0 (then the reader stays where it was).
        position = events[-1].position if events else start
        more = (position.seq if position.epoch == epoch else 0) < head
        return ReadResult(events, position, how == "ok", more=more, first_seq=first)

    async def latest(self, topic: str, n: int) -> ReadResult:
        metrics.HISTORY_LATEST.inc()
        found = await self._read(topic, "latest", None, n)
        if found is None:
            return ReadResult([], BEFORE_FIRST, True)
        epoch, head, first, records = found
        events = [Event.from_record(topic, epoch, r, self.key) for r in records]
        return ReadResult(events, Position(epoch, head), True, first_seq=first)

    async def heads(self, topics: Iterable[str]) -> dict[str, Position | None]:
        topics = list(topics)
        if not topics:
            return {}
        metrics.HISTORY_HEADS.inc()
        client = get_redis()
        sha = _SHAS[_READ]
        try:
            for attempt in (1, 2):
                try:
                    async with client.pipeline(transaction=False) as pipe:
                        for topic in topics:
                            pipe.evalsha(
                                sha, 2, *self.keys(topic), new_epoch(), "peek", "", 0, -1, 0, 0,
                                *self._seen_args(topic),
                            )  # fmt: skip
                        replies = await pipe.execute()
                    break
                except NoScriptError:
                    # Redis restarted or SCRIPT FLUSH. A peek that ran before the error
                    # already did its part; running it again changes nothing more.
                    if attempt == 2:
                        raise
                    await client.script_load(_READ)
        except BACKEND_ERRORS as exc:
            raise outage.unavailable(exc, "history heads") from exc
        outage.record_success()
        result: dict[str, Position | None] = {}
        for topic, reply in zip(topics, replies, strict=True):
            if reply:
                position = Position(int(_text(reply[0])), int(reply[1]))
                self.seen.note(topic, position)
                result[topic] = position
            else:
                result[topic] = None
        return result

    async def trim(self, topic: str, keep: int) -> int:
        _, log = self.keys(topic)
        keep = max(0, keep)
        try:
            async with get_redis().pipeline(transaction=True) as pipe:
                # The list holds the retained records oldest first; the script derives
                # the oldest retained seq from its length, so a left trim is all it takes.
                pipe.llen(log)
                pipe.ltrim(log, -keep, -1) if keep else pipe.delete(log)
                length, _ = await pipe.execute()
        except BACKEND_ERRORS as exc:
            raise outage.unavailable(exc, "history trim") from exc
        outage.record_success()
        return max(0, int(length) - keep)
