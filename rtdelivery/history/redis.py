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

import itertools
import os
import secrets
import threading
import time as _time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, TypeAlias

from redis.exceptions import NoScriptError

from .. import metrics, outage
from ..conf import Settings
from ..connections import get_redis
from ..core.cursors import Position
from ..core.events import Event
from ..outage import BACKEND_ERRORS
from .base import BEFORE_FIRST, History, ReadResult, new_epoch
from .scripts import APPEND as _APPEND
from .scripts import READ as _READ
from .scripts import SHAS as _SHAS

#: One append: topic, type, data (JSON text), time (ms), idempotency key (or None).
Append: TypeAlias = tuple[str, str, str, int, "str | None"]


class Appended(NamedTuple):
    """What :meth:`RedisHistory.append_many` did for one append."""

    #: The stored event (a ``duplicate`` one for a repeated idempotency key), or the
    #: :class:`~rtdelivery.core.errors.Unavailable` to raise for it.
    result: Event | BaseException
    #: The topic's group members, read after the append (with a group key, not queued).
    members: list[Any]
    #: Queued by the script (with queueing arguments): whether it was, how many member
    #: channels were full (the message dropped there), and why queueing failed (if it did).
    queued: bool = False
    over: int = 0
    error: str | None = None


#: How long (seconds) an append's publish id is remembered, for a retry of it.
PUBLISH_ID_TTL = 300

#: How many topics a process remembers the highest position of (evidence of rollback).
SEEN_TOPICS = 10_000


class _PublishIds:
    """Publish ids: unique per process (a random prefix, new in a forked child) and per
    append (a counter). No system call per append, unlike a random id each time."""

    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self.prefix = secrets.token_hex(6)
        self.counter = itertools.count(1)


_ids = _PublishIds()
os.register_at_fork(after_in_child=_ids.renew)


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
        (appended,) = await self.append_many([(topic, type, data_json, time, key)])
        result = appended.result
        if isinstance(result, BaseException):
            raise result
        return result

    def _append_call(
        self, item: Append, group_key: str | None, cutoff: int, queue: str | None = None
    ) -> list[Any]:
        """EVALSHA arguments (after the sha) of one append."""
        topic, type_, data_json, time, key = item
        options = self.conf.topic_options(topic)
        # A publish id per append makes the script idempotent, so the client may retry it
        # after a connection error without storing the event twice.
        publish_id = f"{_ids.prefix}.{next(_ids.counter)}"
        base = f"{self.prefix}{{{topic}}}"
        if key is None:
            mark, mark_ttl = f"{base}:p:{publish_id}", PUBLISH_ID_TTL
        else:
            mark, mark_ttl = f"{base}:k:{key}", self.conf.idempotency_ttl
        max_age = options.history_max_age
        seen = self.seen.get(topic)
        params = (
            f"{new_epoch()}|{publish_id}|{options.history_size}|{time - max_age * 1000}|"
            f"{max(self.conf.topic_idle_ttl, max_age)}|{max_age + 60}|{mark_ttl}|"
            f"{seen.epoch if seen else ''}|{seen.seq if seen else 0}|{cutoff}"
        )
        record = f"{time}|{type_}|{data_json}"
        if group_key is None:
            return [3, base + ":m", base + ":l", mark, params, record]
        if queue is None:
            return [4, base + ":m", base + ":l", mark, group_key, params, record]
        return [4, base + ":m", base + ":l", mark, group_key, params, record, queue]

    def _appended(self, item: Append, reply: Any) -> Appended:
        topic, type_, data_json, time, _key = item
        if isinstance(reply, BaseException):
            return Appended(outage.unavailable(reply, "history append"), [])
        epoch, seq, how = int(_text(reply[0])), int(reply[1]), int(reply[2])
        if how == 1:  # a repeated idempotency key: the first publish's answer
            first_time, first_type = int(_text(reply[3])), _text(reply[4])
            duplicate = Event(
                topic, seq, epoch, first_type, data_json, first_time, key=self.key, duplicate=True
            )
            return Appended(duplicate, [])
        event = Event(topic, seq, epoch, type_, data_json, time, key=self.key)
        self.seen.note(topic, event.position)
        if how == 2:
            return Appended(event, [], queued=True, over=int(reply[3]))
        if how == 3:  # not queued: the members, to send the message the other way
            return Appended(event, reply[4:], queued=False, error=_text(reply[3]))
        return Appended(event, reply[3:])

    async def append_many(
        self,
        items: Sequence[Append],
        group_key: Callable[[str], str] | None = None,
        group_cutoff: int = 0,
        queue: Sequence[str] | None = None,
    ) -> list[Appended]:
        """Append several events in one request (a pipeline), in this order.

        Per item an :class:`Appended`: the stored :class:`Event` (a ``duplicate`` one for a
        repeated idempotency key) or the :class:`~rtdelivery.core.errors.Unavailable` to
        raise for it, and, with ``group_key`` (a topic's channel layer group key, on this
        Redis), the group's members read right after the append (members whose score is
        below ``group_cutoff`` are removed first). With ``queue`` too (per item, the
        queueing parameters of :data:`~rtdelivery.history.scripts.APPEND`, from
        :meth:`rtdelivery.direct_groups.DirectGroups.queue_args`) the script queues each stored
        event on the members' channels itself instead. Raises ``Unavailable`` when the
        request itself failed (then any of them may or may not be stored).
        """
        client = get_redis()
        sha = _SHAS[_APPEND]
        if queue is not None and group_key is None:
            raise ValueError("Expected a group_key with queue, got queue alone.")
        calls = [
            self._append_call(
                item,
                group_key(item[0]) if group_key else None,
                group_cutoff,
                queue[i] if queue is not None else None,
            )
            for i, item in enumerate(items)
        ]
        replies: list[Any]
        try:
            if len(calls) == 1:
                try:
                    replies = [await client.evalsha(sha, *calls[0])]
                except NoScriptError:
                    # Redis restarted or SCRIPT FLUSH: send the script itself once.
                    replies = [await client.eval(_APPEND, *calls[0])]
            else:
                replies = await self._pipeline(client, sha, calls)
        except BACKEND_ERRORS as exc:
            raise outage.unavailable(exc, "history append") from exc
        if any(not isinstance(r, BaseException) for r in replies):
            outage.record_success()
        return [self._appended(item, reply) for item, reply in zip(items, replies, strict=True)]

    async def _pipeline(self, client: Any, sha: str, calls: list[list[Any]]) -> list[Any]:
        for attempt in (1, 2):
            async with client.pipeline(transaction=False) as pipe:
                for call in calls:
                    pipe.evalsha(sha, *call)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in replies):
                # Redis restarted or SCRIPT FLUSH. Appends that ran are found again by
                # their publish ids: running every one again stores none twice.
                await client.script_load(_APPEND)
                continue
            return replies
        raise AssertionError("unreachable")

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
