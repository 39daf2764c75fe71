"""A connection's inbox: one bounded queue fed by the hub for all of its topics."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from . import metrics
from .core.cursors import Position
from .core.errors import SlowConsumer, SubscriberClosed
from .core.events import Event

# Raised by Subscriber.get(); defined with the other errors, importable from here.
__all__ = ["Item", "Notice", "Reset", "SlowConsumer", "Subscriber", "SubscriberClosed"]


@dataclass(frozen=True)
class Reset:
    """Control item: ``topic`` could not be continued without loss (history lost or
    trimmed past the subscriber's place); ``position`` is where delivery resumes."""

    topic: str
    position: Position


@dataclass(frozen=True)
class Notice:
    """Control item queued in order with events: a transport-specific ready frame
    (``text``) or a payload (``data``) such as a presence change."""

    kind: str
    text: str = ""
    data: object = None


Item = Event | Reset | Notice


class Subscriber:
    """Bounded inbox of one client connection.

    The hub offers each event once per topic; duplicates (same or older ``seq``) are
    dropped here, so replay and live delivery can overlap safely. When more than
    ``maxsize`` items wait, the queue is dropped and the next :meth:`get` raises
    :class:`SlowConsumer`: memory stays bounded and the loss is explicit.

    The history backlog of a subscribe is queued on top of ``maxsize`` (it is already
    in memory and bounded by the history size), so a client resuming after falling
    behind gets its backlog instead of overflowing again at once.
    """

    __slots__ = (
        "__weakref__",
        "_backlog",
        "_queue",
        "_replaying",
        "_waiter",
        "closed",
        "maxsize",
        "overflowed",
        "positions",
    )

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        # A list, swapped out whole by get(): cheaper than a deque per idle connection
        # (an empty deque allocates a 64-slot block) and no copy on the way out.
        self._queue: list[Item] = []
        self._backlog = 0  # backlog items queued on top of maxsize, until the next get
        self._waiter: asyncio.Future[None] | None = None
        self._replaying: dict[str, list[Event]] = {}
        #: topic -> position of the last item queued (not necessarily sent yet).
        self.positions: dict[str, Position] = {}
        self.overflowed = False
        self.closed = False

    @property
    def topics(self) -> list[str]:
        return [*self.positions, *self._replaying]

    def __len__(self) -> int:
        return len(self._queue)

    # -- called by the hub -------------------------------------------------------
    def _push(self, item: Item, *, backlog: bool = False) -> None:
        if self.overflowed or self.closed:
            return
        if backlog:
            self._backlog += 1
        elif len(self._queue) >= self.maxsize + self._backlog:
            self._overflow()
            return
        self._queue.append(item)
        self._wake()

    def _overflow(self) -> None:
        self.overflowed = True
        self._queue.clear()
        self._backlog = 0
        for pending in self._replaying.values():
            pending.clear()
        metrics.incr("slow_consumers")
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def offer(self, event: Event) -> None:
        """Queue ``event`` unless it is a duplicate; a skipped seq becomes a Reset."""
        pending = self._replaying.get(event.topic)
        if pending is not None:
            if len(pending) >= self.maxsize:
                self._overflow()
            elif not self.overflowed:
                pending.append(event)
            return
        position = self.positions.get(event.topic)
        if position is None:
            return
        if event.epoch == position.epoch:
            if event.seq <= position.seq:
                return
            skipped = event.seq > position.seq + 1
        else:
            skipped = True
        if skipped:
            # Delivery resumes right before this event: a cursor taken at the Reset must
            # not skip it.
            self._push(Reset(event.topic, Position(event.epoch, event.seq - 1)))
        self.positions[event.topic] = event.position
        self._push(event)
        metrics.counters["events_queued"] += 1

    def reset(self, topic: str, position: Position) -> None:
        """Tell the transport ``topic`` lost events; continue from ``position``."""
        if topic in self.positions:
            self._push(Reset(topic, position))
            self.positions[topic] = position

    def start_replay(self, topic: str) -> None:
        self._replaying[topic] = []

    def push_notice(self, notice: Notice) -> None:
        """Queue a control item behind what is already queued (bounded like events)."""
        self._push(notice)

    def finish_replay(
        self,
        topic: str,
        backlog: list[Event],
        position: Position,
        first: Notice | None = None,
    ) -> None:
        """Queue ``first`` (e.g. "subscribed"), the history backlog, then the live events
        that arrived meanwhile (deduped)."""
        pending = self._replaying.pop(topic, None)
        if pending is None:
            return  # unsubscribed while replaying
        if first is not None:
            self._push(first, backlog=True)
        for event in backlog:
            self._push(event, backlog=True)
        self.positions[topic] = position
        for event in pending:
            self.offer(event)

    def forget(self, topic: str) -> None:
        self.positions.pop(topic, None)
        self._replaying.pop(topic, None)

    def close(self) -> None:
        self.closed = True
        self._wake()

    # -- called by the transport ---------------------------------------------------
    def get_nowait(self) -> list[Item]:
        """Everything queued so far (possibly nothing)."""
        if self.overflowed:
            raise SlowConsumer("The connection did not keep up with its topics.")
        if self.closed and not self._queue:
            raise SubscriberClosed("The subscription was closed by the server.")
        items = self._queue
        self._queue = []
        self._backlog = 0
        return items

    async def get(self) -> list[Item]:
        """Wait for at least one item and return all that are queued, oldest first."""
        while not self._queue and not self.overflowed and not self.closed:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.get_nowait()
