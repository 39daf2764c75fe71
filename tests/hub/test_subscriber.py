"""The subscriber inbox: dedup, resets, bounded memory and explicit overflow.

Delivery invariant 3 (DESIGN.md): a slow consumer never grows memory without bound and
never loses events silently: its bounded queue overflows into an explicit SlowConsumer,
and it resumes from its cursor without loss. The unit tests drive a Subscriber directly;
the last ones run it behind the hub on every layer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from rtdelivery import metrics
from rtdelivery.core.cursors import Position
from rtdelivery.core.events import Event
from rtdelivery.hub import get_hub
from rtdelivery.publishing import apublish
from rtdelivery.subscriber import Item, Reset, SlowConsumer, Subscriber, SubscriberClosed
from tests.hub.conftest import WAIT, collect, collect_until, events, seqs, wait_until

KEY = b"k" * 32
EPOCH = 7


def event(seq: int, topic: str = "t", epoch: int = EPOCH) -> Event:
    return Event(topic, seq, epoch, "message", str(seq), 1_000 + seq, key=KEY)


def subscribed(maxsize: int = 10, topic: str = "t", at: int = 0) -> Subscriber:
    """A subscriber that has finished subscribing to ``topic`` at seq ``at``."""
    sub = Subscriber(maxsize)
    sub.start_replay(topic)
    sub.finish_replay(topic, [], Position(EPOCH, at))
    return sub


class PeakSubscriber(Subscriber):
    """Records the longest its queue ever got."""

    __slots__ = ("peak",)

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.peak = 0

    def _push(self, item: Item, *, backlog: bool = False) -> None:
        super()._push(item, backlog=backlog)
        self.peak = max(self.peak, len(self))


# -- unit: ordering, dedup, resets ------------------------------------------------------


def test_events_of_an_unsubscribed_topic_are_ignored() -> None:
    sub = Subscriber(10)
    sub.offer(event(1))
    assert len(sub) == 0
    assert sub.topics == []


def test_duplicates_and_older_events_are_dropped() -> None:
    sub = subscribed(at=2)
    for seq in (1, 2, 3, 3, 2, 4):
        sub.offer(event(seq))
    assert seqs(sub.get_nowait()) == [3, 4]
    assert sub.positions == {"t": Position(EPOCH, 4)}


def test_a_skipped_seq_is_announced_with_a_reset_before_the_event() -> None:
    sub = subscribed(at=1)
    sub.offer(event(4))
    items = sub.get_nowait()
    assert items[0] == Reset("t", Position(EPOCH, 3))  # a cursor taken here keeps #4
    assert seqs(items[1:]) == [4]


def test_a_new_epoch_is_announced_with_a_reset_positioned_before_its_first_event() -> None:
    sub = subscribed(at=5)
    sub.offer(event(1, epoch=EPOCH + 2))
    sub.offer(event(2, epoch=EPOCH + 2))
    items = sub.get_nowait()
    assert items[0] == Reset("t", Position(EPOCH + 2, 0))
    assert [i.position for i in events(items[1:])] == [(EPOCH + 2, 1), (EPOCH + 2, 2)]


def test_reset_from_the_hub_moves_the_position() -> None:
    sub = subscribed(at=3)
    sub.reset("t", Position(EPOCH, 10))
    sub.reset("other", Position(EPOCH, 10))  # not subscribed: ignored
    sub.offer(event(10))  # already covered by the reset
    sub.offer(event(11))
    items = sub.get_nowait()
    assert items[0] == Reset("t", Position(EPOCH, 10))
    assert seqs(items[1:]) == [11]


def test_replay_queues_backlog_then_buffered_live_events_without_duplicates() -> None:
    sub = Subscriber(20)
    sub.start_replay("t")
    for seq in (4, 5, 6, 7):  # live while the history read is in flight
        sub.offer(event(seq))
    assert len(sub) == 0  # nothing before the backlog
    sub.finish_replay("t", [event(s) for s in (3, 4, 5)], Position(EPOCH, 5))
    assert seqs(sub.get_nowait()) == [3, 4, 5, 6, 7]


def test_unsubscribing_during_replay_queues_nothing() -> None:
    sub = Subscriber(20)
    sub.start_replay("t")
    sub.offer(event(1))
    sub.forget("t")
    sub.finish_replay("t", [event(1)], Position(EPOCH, 1))
    assert sub.get_nowait() == []
    assert sub.topics == []


async def test_get_waits_for_the_next_item_and_returns_all_queued() -> None:
    sub = subscribed()
    waiting = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    sub.offer(event(1))
    sub.offer(event(2))
    assert seqs(await asyncio.wait_for(waiting, WAIT)) == [1, 2]


async def test_close_wakes_a_waiting_get_and_ends_the_subscriber() -> None:
    sub = subscribed()
    sub.offer(event(1))
    sub.close()
    assert seqs(await sub.get()) == [1]  # what was queued is still handed over
    with pytest.raises(SubscriberClosed):
        await sub.get()
    sub.offer(event(2))
    assert len(sub) == 0


# -- unit: overflow ------------------------------------------------------------------------


@pytest.mark.parametrize("maxsize", [1, 3, 50])
async def test_overflow_is_bounded_and_explicit(maxsize: int) -> None:
    sub = PeakSubscriber(maxsize)
    sub.start_replay("t")
    sub.finish_replay("t", [], Position(EPOCH, 0))
    before = metrics.counters["slow_consumers"]
    for seq in range(1, maxsize * 3 + 1):
        sub.offer(event(seq))
        assert len(sub) <= maxsize
    assert sub.peak == maxsize
    assert sub.overflowed
    assert len(sub) == 0  # the buffer is released at once
    assert metrics.counters["slow_consumers"] == before + 1
    with pytest.raises(SlowConsumer):
        sub.get_nowait()
    with pytest.raises(SlowConsumer):
        await asyncio.wait_for(sub.get(), WAIT)


async def test_overflow_wakes_a_waiting_get() -> None:
    sub = subscribed(maxsize=2)
    waiting = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    for seq in (1, 2, 3):  # get() has not run yet: all three pile up
        sub.offer(event(seq))
    with pytest.raises(SlowConsumer):
        await asyncio.wait_for(waiting, WAIT)


def test_overflow_while_replaying_is_bounded_too() -> None:
    sub = Subscriber(3)
    sub.start_replay("t")
    for seq in range(1, 10):
        sub.offer(event(seq))
    assert sub.overflowed
    sub.finish_replay("t", [], Position(EPOCH, 0))
    assert len(sub) == 0
    with pytest.raises(SlowConsumer):
        sub.get_nowait()


def test_a_resume_backlog_larger_than_the_queue_is_queued_whole() -> None:
    """Resuming after an overflow usually means more backlog than ``maxsize``: it is
    queued whole (history bounds it), or the client would overflow again forever."""
    sub = Subscriber(3)
    sub.start_replay("t")
    sub.offer(event(6))  # live while the history read is in flight
    sub.finish_replay("t", [event(s) for s in range(1, 6)], Position(EPOCH, 5))
    sub.offer(event(7))
    sub.offer(event(8))  # 3 live events on top of the backlog: still within maxsize
    assert not sub.overflowed
    assert seqs(sub.get_nowait()) == [1, 2, 3, 4, 5, 6, 7, 8]
    for seq in (9, 10, 11):  # the allowance ended with that get: maxsize again
        sub.offer(event(seq))
    assert not sub.overflowed
    sub.offer(event(12))
    assert sub.overflowed


def test_live_events_on_top_of_a_backlog_still_overflow() -> None:
    sub = PeakSubscriber(3)
    sub.start_replay("t")
    sub.finish_replay("t", [event(s) for s in range(1, 11)], Position(EPOCH, 10))
    for seq in range(11, 15):
        sub.offer(event(seq))
    assert sub.overflowed
    assert sub.peak == 10 + 3
    with pytest.raises(SlowConsumer):
        sub.get_nowait()


# -- behind the hub, on every layer -----------------------------------------------------------


async def test_slow_subscriber_overflows_alone_and_resumes_without_loss(
    rt_settings: Callable[..., dict[str, Any]], layer_backend: str
) -> None:
    hub = get_hub()
    slow, fast = PeakSubscriber(maxsize=5), Subscriber(maxsize=1000)
    await hub.subscribe(slow, "slow.feed")
    await hub.subscribe(fast, "slow.feed")

    await apublish("slow.feed", 1)
    delivered = await collect(slow, 1)  # it read this one, then stopped reading
    last_position = events(delivered)[-1].position
    assert last_position.seq == 1

    fast_reader = asyncio.create_task(collect_until(fast, 40))
    for n in range(2, 41):
        await apublish("slow.feed", n)
        assert len(slow) <= 5
    await wait_until(lambda: slow.overflowed, what="the slow subscriber to overflow")
    assert slow.peak == 5
    assert len(slow) == 0
    with pytest.raises(SlowConsumer):
        await asyncio.wait_for(slow.get(), WAIT)

    # The others did not notice.
    assert seqs(await fast_reader) == list(range(1, 41))
    assert not fast.overflowed

    # The transport drops the slow one; the client comes back with its cursor, to an
    # inbox of the same size: its backlog (39 events) does not overflow it again.
    await hub.unsubscribe_all(slow)
    assert hub.local_subscribers("slow.feed") == 1
    again = Subscriber(maxsize=5)
    result = await hub.subscribe(again, "slow.feed", last_position)
    assert result.recovered
    await apublish("slow.feed", 41)
    assert seqs(await collect_until(again, 41)) == list(range(2, 42))
    assert seqs(await collect(fast, 1)) == [41]
