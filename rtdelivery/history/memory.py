"""In-memory history: the embedded default for one process (demo, tests, development)."""

from __future__ import annotations

import threading
import time as _time
from collections import deque
from collections.abc import Iterable

from ..conf import Settings
from ..core.cursors import Position
from ..core.events import Event
from .base import History, ReadResult, new_epoch


class _TopicLog:
    __slots__ = ("epoch", "events", "max_age", "seq")

    def __init__(self, size: int, max_age: int) -> None:
        self.epoch = new_epoch()
        self.seq = 0
        self.events: deque[Event] = deque(maxlen=size)
        self.max_age = max_age

    def trim(self, now_ms: int) -> None:
        cutoff = now_ms - self.max_age * 1000
        events = self.events
        while events and events[0].time < cutoff:
            events.popleft()

    @property
    def first_seq(self) -> int:
        return self.events[0].seq if self.events else self.seq + 1


class MemoryHistory(History):
    """Keeps each topic's log in a bounded deque; thread-safe (sync publish uses a thread)."""

    def __init__(self, conf: Settings) -> None:
        super().__init__(conf)
        self._topics: dict[str, _TopicLog] = {}
        self._lock = threading.Lock()

    def _log(self, topic: str) -> _TopicLog:
        log = self._topics.get(topic)
        if log is None:
            options = self.conf.topic_options(topic)
            log = self._topics[topic] = _TopicLog(options.history_size, options.history_max_age)
        return log

    async def append(self, topic: str, type: str, data_json: str, time: int) -> Event:  # noqa: A002
        with self._lock:
            log = self._log(topic)
            log.seq += 1
            event = Event(topic, log.seq, log.epoch, type, data_json, time, key=self.key)
            if log.events.maxlen:
                log.events.append(event)
            log.trim(time)
            return event

    async def read(
        self, topic: str, since: Position | None, limit: int | None = None
    ) -> ReadResult:
        with self._lock:
            log = self._log(topic)
            log.trim(int(_time.time() * 1000))
            head = Position(log.epoch, log.seq)
            first = log.first_seq
            if since is None:
                return ReadResult([], head, True, first_seq=first)
            if since.epoch != log.epoch or since.seq > log.seq or since.seq < first - 1:
                return ReadResult([], head, False, first_seq=first)
            start = since.seq - first + 1
            stop = len(log.events) if limit is None else min(len(log.events), start + limit)
            events = [log.events[i] for i in range(start, stop)]
        more = stop < len(log.events)
        # No events: at the head, or limit=0 (then the reader stays where it was).
        position = Position(head.epoch, events[-1].seq if events else since.seq)
        return ReadResult(events, position, True, more=more, first_seq=first)

    async def latest(self, topic: str, n: int) -> ReadResult:
        with self._lock:
            log = self._log(topic)
            log.trim(int(_time.time() * 1000))
            events = list(log.events)[-n:] if n > 0 else []
            return ReadResult(events, Position(log.epoch, log.seq), True, first_seq=log.first_seq)

    async def heads(self, topics: Iterable[str]) -> dict[str, Position | None]:
        with self._lock:
            result: dict[str, Position | None] = {}
            for topic in topics:
                log = self._topics.get(topic)
                result[topic] = Position(log.epoch, log.seq) if log else None
            return result
