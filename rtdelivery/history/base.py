"""The history interface shared by every backend."""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..conf import Settings
from ..core.cursors import Position
from ..core.events import Event

#: The place of a reader in a topic that has no record yet (never published, or its
#: history was lost): before the first event of whatever epoch comes. Real epochs are
#: odd, so epoch 0 is never a topic's epoch; a reader at (0, 0) continues exactly with
#: seq 1 of the topic's first epoch.
BEFORE_FIRST = Position(0, 0)


def new_epoch() -> int:
    """A fresh random epoch (48 bits, odd): a topic whose history was lost gets a new one."""
    return secrets.randbits(48) | 1


@dataclass
class ReadResult:
    """Events read from a topic's history and where the reader stands afterwards.

    ``position`` is the reader's new place in the topic: the last event returned, or
    where the reader was when there is nothing new. ``recovered`` is False when the
    requested place could not be continued exactly:

    - older than what is retained (same epoch): no events, ``position`` is the live end;
    - a stale epoch (the topic's history was lost or rolled back since): the current
      epoch's retained events from its oldest (seq 1 when still retained), at most
      ``limit``, and ``position`` after the last one returned (or just before the
      oldest retained), so the next read continues the new epoch without loss.

    ``more`` is True when ``limit`` cut the read short. ``first_seq`` is the oldest
    retained seq of the current epoch.
    """

    events: list[Event]
    position: Position
    recovered: bool = True
    more: bool = False
    first_seq: int = field(default=1, repr=False)

    @property
    def start(self) -> Position:
        """Where the reader stands before ``events``: what a client that has not received
        them yet must resume from (``position`` when there are none). For a stale epoch
        this is the new epoch's start, not where the reader asked to continue."""
        if self.events:
            first = self.events[0]
            return Position(first.epoch, first.seq - 1)
        return self.position


def duplicate_of(first: Event, data_json: str) -> Event:
    """The answer to a publish that repeated ``first``'s idempotency key."""
    return Event(
        first.topic,
        first.seq,
        first.epoch,
        first.type,
        data_json,
        first.time,
        key=b"",
        id=first.id,
        duplicate=True,
    )


class History(ABC):
    """A bounded per-topic log with contiguous ``seq`` numbers and an ``epoch``.

    Reads never create anything: a topic exists once it has been appended to.
    """

    def __init__(self, conf: Settings) -> None:
        self.conf = conf
        self.key = conf.cursor_key

    @abstractmethod
    async def append(
        self,
        topic: str,
        type: str,  # noqa: A002
        data_json: str,
        time: int,
        key: str | None = None,
    ) -> Event:
        """Store one event, assigning the next ``seq`` atomically.

        With an idempotency ``key`` already used on ``topic`` within ``IDEMPOTENCY_TTL``
        seconds nothing is stored: the answer is the first publish's event (its topic,
        epoch, seq, id, time and type; ``data_json`` is this call's) with ``duplicate``
        set. Checking and storing are one atomic step.
        """

    @abstractmethod
    async def read(
        self, topic: str, since: Position | None, limit: int | None = None
    ) -> ReadResult:
        """Events after ``since`` (oldest first); ``since=None`` means the live end
        (:data:`BEFORE_FIRST` for a topic with no record)."""

    @abstractmethod
    async def latest(self, topic: str, n: int) -> ReadResult:
        """The latest ``n`` retained events (oldest first), positioned at the live end."""

    @abstractmethod
    async def heads(self, topics: Iterable[str]) -> dict[str, Position | None]:
        """Each topic's live end, or None for a topic with no record (never published)."""

    @abstractmethod
    async def trim(self, topic: str, keep: int) -> int:
        """Drop all but the newest ``keep`` retained events of ``topic`` (an operator's
        action, e.g. from the live ops page); returns how many were dropped. Readers
        behind the new oldest event get ``recovered: false`` as after any trim."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections held for the running loop."""
