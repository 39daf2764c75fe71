"""In-memory history: the embedded default for one process (demo, tests, development)."""

from __future__ import annotations

import threading
import time as _time
from collections import deque
from collections.abc import Iterable

from .. import metrics
from ..conf import Settings
from ..core.cursors import Position
from ..core.events import Event
from .base import BEFORE_FIRST, History, ReadResult, duplicate_of, new_epoch

#: The clock idempotency keys expire by (a name of its own, for tests).
_clock = _time.monotonic


class _TopicLog:
    __slots__ = ("epoch", "events", "max_age", "reset", "seq")

    def __init__(self, size: int, max_age: int) -> None:
        self.epoch = new_epoch()
        self.seq = 0
        self.events: deque[Event] = deque(maxlen=size)
        self.max_age = max_age
        #: The current epoch replaced a history that was lost (see ``restart``).
        self.reset = False

    def trim(self, now_ms: int) -> None:
        cutoff = now_ms - self.max_age * 1000
        events = self.events
        while events and events[0].time < cutoff:
            events.popleft()

    def restart(self) -> None:
        """A new epoch, empty: what the Redis backend does on evidence of a rollback."""
        old = self.epoch
        while self.epoch == old:
            self.epoch = new_epoch()
        self.seq = 0
        self.events.clear()
        self.reset = True

    @property
    def first_seq(self) -> int:
        return self.events[0].seq if self.events else self.seq + 1

    def after(self, seq: int, limit: int | None) -> tuple[list[Event], bool]:
        """Retained events after ``seq`` (at most ``limit``) and whether more remain."""
        start = max(seq - self.first_seq + 1, 0)
        total = len(self.events)
        stop = total if limit is None else min(total, start + limit)
        return [self.events[i] for i in range(start, stop)], stop < total


#: At most this many idempotency keys are remembered per process (the oldest is forgotten
#: first): the memory backend is for one process, and every browser publish has a key.
MAX_REMEMBERED_KEYS = 100_000


class MemoryHistory(History):
    """Keeps each topic's log in a bounded deque; thread-safe (sync publish uses a thread).

    A topic gets its log on its first append; reads of an unknown topic keep nothing.
    """

    def __init__(self, conf: Settings) -> None:
        super().__init__(conf)
        self._topics: dict[str, _TopicLog] = {}
        #: (topic, idempotency key) -> (expiry on the monotonic clock, first event without
        #: its data: a key answers with the first seq and id, never with the first data).
        self._keys: dict[tuple[str, str], tuple[float, Event]] = {}
        self._lock = threading.Lock()

    def _log(self, topic: str) -> _TopicLog:
        log = self._topics.get(topic)
        if log is None:
            options = self.conf.topic_options(topic)
            log = self._topics[topic] = _TopicLog(options.history_size, options.history_max_age)
        return log

    def _existing(self, topic: str) -> _TopicLog | None:
        log = self._topics.get(topic)
        if log is not None:
            log.trim(int(_time.time() * 1000))
        return log

    async def append(
        self,
        topic: str,
        type: str,  # noqa: A002
        data_json: str,
        time: int,
        key: str | None = None,
    ) -> Event:
        with self._lock:
            if key is not None:
                first = self._keyed(topic, key)
                if first is not None:
                    return duplicate_of(first, data_json)
            log = self._log(topic)
            log.seq += 1
            event = Event(topic, log.seq, log.epoch, type, data_json, time, key=self.key)
            if log.events.maxlen:
                log.events.append(event)
            log.trim(time)
            if key is not None:
                if len(self._keys) >= MAX_REMEMBERED_KEYS:
                    # Bounded memory: the oldest key goes first (insertion order), as it
                    # would on expiry.
                    del self._keys[next(iter(self._keys))]
                self._keys[topic, key] = (
                    _clock() + self.conf.idempotency_ttl,
                    duplicate_of(event, "null"),
                )
            return event

    def _keyed(self, topic: str, key: str) -> Event | None:
        """The event first published with ``key`` on ``topic``, if still remembered.
        Under the lock; forgets expired keys (oldest first: one TTL, insertion order)."""
        now = _clock()
        keys = self._keys
        while keys:
            oldest = next(iter(keys))
            if keys[oldest][0] > now:
                break
            del keys[oldest]
        found = keys.get((topic, key))
        return found[1] if found else None

    async def read(
        self, topic: str, since: Position | None, limit: int | None = None
    ) -> ReadResult:
        metrics.HISTORY_READ.inc()
        with self._lock:
            log = self._existing(topic)
            if log is None:
                # No record: nothing to continue from; the reader waits before seq 1.
                recovered = since is None or since == BEFORE_FIRST
                return ReadResult([], BEFORE_FIRST, recovered)
            if since is None:
                return ReadResult([], Position(log.epoch, log.seq), True, first_seq=log.first_seq)
            if since.epoch == log.epoch and since.seq > log.seq:
                log.restart()  # a position this epoch never reached: it was rolled back
            first = log.first_seq
            head = Position(log.epoch, log.seq)
            if since.epoch == log.epoch:
                if since.seq < first - 1:
                    return ReadResult([], head, False, first_seq=first)
                recovered, start = True, since
            elif since == BEFORE_FIRST and first == 1 and not log.reset:
                recovered, start = True, since
            else:
                # Stale epoch: the current one from its oldest retained event.
                recovered, start = False, Position(log.epoch, first - 1)
            events, more = log.after(start.seq, limit)
        # No events: at the head, or limit=0 (then the reader stays where it was).
        position = events[-1].position if events else start
        return ReadResult(events, position, recovered, more=more, first_seq=first)

    async def latest(self, topic: str, n: int) -> ReadResult:
        metrics.HISTORY_LATEST.inc()
        with self._lock:
            log = self._existing(topic)
            if log is None:
                return ReadResult([], BEFORE_FIRST, True)
            events = list(log.events)[-n:] if n > 0 else []
            return ReadResult(events, Position(log.epoch, log.seq), True, first_seq=log.first_seq)

    async def heads(self, topics: Iterable[str]) -> dict[str, Position | None]:
        metrics.HISTORY_HEADS.inc()
        with self._lock:
            result: dict[str, Position | None] = {}
            for topic in topics:
                log = self._topics.get(topic)
                result[topic] = Position(log.epoch, log.seq) if log else None
            return result

    async def trim(self, topic: str, keep: int) -> int:
        with self._lock:
            log = self._topics.get(topic)
            if log is None:
                return 0
            dropped = max(0, len(log.events) - max(0, keep))
            for _ in range(dropped):
                log.events.popleft()
            return dropped
