"""A connection's inbox: one bounded queue fed by the hub for all of its topics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .core.cursors import Position
from .core.errors import SlowConsumer, SubscriberClosed
from .core.events import Event
from .history.base import BEFORE_FIRST

logger = logging.getLogger("rtdelivery.hub")

# Raised by Subscriber.get(); defined with the other errors, importable from here.
__all__ = ["Item", "Notice", "Replay", "Reset", "SlowConsumer", "Subscriber", "SubscriberClosed"]


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


class Replay:
    """One topic's resume in progress (a token: the hub pages history into it).

    ``pending`` holds the topic's live events offered since the current history read
    began: the ones offered earlier were already in history when it began, so that read
    or a later page covers them.
    """

    __slots__ = ("pending", "topic")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.pending: list[Event] = []


class Subscriber:
    """Bounded inbox of one client connection.

    The hub offers each event once per topic; duplicates (same or older ``seq``) are
    dropped here, so replay and live delivery can overlap safely. When more than
    ``maxsize`` live items wait (queued, or held while their topic's backlog is
    replayed), the queue is dropped and the next :meth:`get` raises
    :class:`SlowConsumer`: memory stays bounded and the loss is explicit.

    A resume's history backlog comes in pages (:meth:`take_page_room`): at most
    ``maxsize`` backlog items wait at once, on top of the live ones, and the next page
    is read only once the client has taken the previous one (at most ``maxsize // 2``
    of it left). A client resuming after falling behind therefore gets its whole backlog
    without overflowing again at once, and one that stops reading holds a page, not the
    backlog.
    """

    __slots__ = (
        "__weakref__",
        "_backlog",
        "_queue",
        "_replaying",
        "_reserved",
        "_room",
        "_waiter",
        "closed",
        "maxsize",
        "on_ready",
        "overflowed",
        "positions",
    )

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        # A list, swapped out whole by get(): cheaper than a deque per idle connection
        # (an empty deque allocates a 64-slot block) and no copy on the way out.
        self._queue: list[Item] = []
        self._backlog = 0  # backlog items queued on top of maxsize, until the next get
        self._reserved = 0  # backlog room promised to history reads in flight
        self._waiter: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None  # replays waiting for room
        self._replaying: dict[str, Replay] = {}
        #: topic -> position of the last item queued (not necessarily sent yet).
        self.positions: dict[str, Position] = {}
        self.overflowed = False
        self.closed = False
        #: Called when an item is queued (or the inbox overflows or closes) and nobody
        #: waits in :meth:`get`: a transport without a writer task of its own while
        #: idle (rtdelivery.transports.websocket_writer).
        self.on_ready: Callable[[], None] | None = None

    @property
    def topics(self) -> list[str]:
        return [*self.positions, *self._replaying]

    def __len__(self) -> int:
        return len(self._queue)

    def _live_waiting(self) -> int:
        """Live items waiting: queued (not backlog) or held for a replaying topic."""
        waiting = len(self._queue) - self._backlog
        if self._replaying:
            waiting += sum(len(r.pending) for r in self._replaying.values())
        return waiting

    # -- called by the hub -------------------------------------------------------
    def _push(self, item: Item, *, backlog: bool = False) -> None:
        if self.overflowed or self.closed:
            return
        if backlog:
            self._backlog += 1
        elif self._live_waiting() >= self.maxsize:
            self._overflow()
            return
        self._queue.append(item)
        self._wake()

    def _overflow(self) -> None:
        self.overflowed = True
        self._queue.clear()
        self._backlog = 0
        for replay in self._replaying.values():
            replay.pending.clear()
        self._wake()
        self._wake_room()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
        elif self.on_ready is not None:
            try:
                self.on_ready()
            except Exception:  # the hub's fan-out goes on to the other subscribers
                logger.exception("rtdelivery: a subscriber's on_ready failed")

    def _wake_room(self) -> None:
        room, self._room = self._room, None
        if room is not None and not room.done():
            room.set_result(None)

    def offer(self, event: Event) -> None:
        """Queue ``event`` unless it is a duplicate; a skipped seq becomes a Reset."""
        replay = self._replaying.get(event.topic)
        if replay is not None:
            if self.overflowed:
                return
            if self._live_waiting() >= self.maxsize:
                self._overflow()
            else:
                replay.pending.append(event)
            return
        position = self.positions.get(event.topic)
        if position is None:
            return
        if event.epoch == position.epoch:
            if event.seq <= position.seq:
                return
            skipped = event.seq > position.seq + 1
        else:
            # (0, 0): subscribed before the topic had any event; (E, 1) continues it.
            skipped = not (position == BEFORE_FIRST and event.seq == 1)
        if skipped:
            # Delivery resumes right before this event: a cursor taken at the Reset must
            # not skip it.
            self._push(Reset(event.topic, Position(event.epoch, event.seq - 1)))
        self.positions[event.topic] = event.position
        self._push(event)

    def reset(self, topic: str, position: Position) -> None:
        """Tell the transport ``topic`` lost events; continue from ``position``."""
        current = self.positions.get(topic)
        if current is None:
            return
        if current.epoch == position.epoch and current.seq >= position.seq:
            return  # already there (e.g. its replay announced it): nothing more is lost
        if current == BEFORE_FIRST and position.seq == 0:
            self.positions[topic] = position  # the start of the first epoch it will see
            return
        self._push(Reset(topic, position))
        self.positions[topic] = position

    def push_notice(self, notice: Notice) -> None:
        """Queue a control item behind what is already queued (bounded like events)."""
        self._push(notice)

    # -- replay (resume) -----------------------------------------------------------
    def start_replay(self, topic: str) -> Replay:
        """Hold ``topic``'s live events until its backlog is queued; returns the token
        the other replay calls take (a later subscribe to the topic gets a new one)."""
        replay = self._replaying[topic] = Replay(topic)
        return replay

    def replaying(self, replay: Replay) -> bool:
        """Whether ``replay`` is still in progress (not finished, not unsubscribed) and
        the subscriber still open."""
        return (
            not self.closed and not self.overflowed and self._replaying.get(replay.topic) is replay
        )

    def take_page_room(self, replay: Replay) -> int:
        """Reserve room for ``replay``'s next backlog page, read right after this call,
        and return its size: 0 while the client has not taken the previous page (more
        than ``maxsize // 2`` backlog items waiting). Give the room back with
        :meth:`release_room` once the page is read."""
        if not self.replaying(replay):
            return 0
        used = self._backlog + self._reserved
        if used > self.maxsize // 2:
            return 0
        room = self.maxsize - used
        self._reserved += room
        # What was offered so far is in history already: the read covers it.
        replay.pending.clear()
        return room

    def release_room(self, room: int) -> None:
        self._reserved -= room

    async def wait_page_room(self, replay: Replay) -> int:
        """Wait until the client has taken enough of the backlog for another page, and
        reserve it (see :meth:`take_page_room`). 0 when the replay is over (unsubscribed,
        overflowed, closed): stop paging."""
        while self.replaying(replay):
            room = self.take_page_room(replay)
            if room:
                return room
            if self._room is None:
                self._room = asyncio.get_running_loop().create_future()
            await self._room
        return 0

    def queue_page(
        self,
        replay: Replay,
        page: list[Event],
        first: Notice | None = None,
        *,
        reset: Position | None = None,
    ) -> None:
        """Queue ``first`` (e.g. "subscribed", before the first page), a :class:`Reset`
        to ``reset`` if given (history could not continue the replay: it goes on from
        there), and one backlog page."""
        if not self.replaying(replay):
            return
        if first is not None:
            self._push(first, backlog=True)
        if reset is not None:
            self._push(Reset(replay.topic, reset), backlog=True)
        for event in page:
            self._push(event, backlog=True)

    def finish_replay(
        self,
        topic: str | Replay,
        backlog: list[Event],
        position: Position,
        first: Notice | None = None,
        *,
        reset: Position | None = None,
    ) -> None:
        """Queue ``first`` (e.g. "subscribed"), a :class:`Reset` if given, the last
        backlog page, then the live events that arrived meanwhile (deduped): ``topic``
        is live from ``position``."""
        replay = topic if isinstance(topic, Replay) else self._replaying.get(topic)
        if replay is None or self._replaying.get(replay.topic) is not replay:
            return  # unsubscribed while replaying
        self.queue_page(replay, backlog, first, reset=reset)
        del self._replaying[replay.topic]
        self.positions[replay.topic] = position
        for event in replay.pending:
            self.offer(event)

    def forget(self, topic: str) -> None:
        self.positions.pop(topic, None)
        if self._replaying.pop(topic, None) is not None:
            self._wake_room()

    def close(self) -> None:
        self.closed = True
        self._wake()
        self._wake_room()

    # -- called by the transport ---------------------------------------------------
    def queued(self) -> list[Item]:
        """What is queued, left in place (take it with :meth:`get_nowait`, or write it
        and then :meth:`clear_queued`)."""
        return self._queue

    def clear_queued(self) -> None:
        """The transport wrote everything :meth:`queued` returned: empty the queue in
        place (no new list, unlike :meth:`get_nowait`)."""
        self._queue.clear()
        if self._backlog:
            self._backlog = 0
            self._wake_room()  # the client took the page: a replay may read the next

    def get_nowait(self) -> list[Item]:
        """Everything queued so far (possibly nothing)."""
        if self.overflowed:
            raise SlowConsumer("The connection did not keep up with its topics.")
        if self.closed and not self._queue:
            raise SubscriberClosed("The subscription was closed by the server.")
        items = self._queue
        self._queue = []
        if self._backlog:
            self._backlog = 0
            self._wake_room()  # the client took the page: a replay may read the next
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
