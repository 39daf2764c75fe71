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


# -- unit: a transport that writes queued items itself (on_ready) ----------------------


async def test_on_ready_is_called_when_nobody_waits_in_get() -> None:
    sub = subscribed()
    calls: list[int] = []
    sub.on_ready = lambda: calls.append(len(sub))
    sub.offer(event(1))
    sub.offer(event(2))
    assert calls == [1, 2]  # once per item: the transport writes them itself
    assert seqs(sub.queued()) == [1, 2]  # left in place until taken
    assert seqs(sub.get_nowait()) == [1, 2]
    waiting = asyncio.create_task(sub.get())  # a writer waits: it is woken, not on_ready
    await asyncio.sleep(0)
    sub.offer(event(3))
    assert calls == [1, 2]
    assert seqs(await asyncio.wait_for(waiting, WAIT)) == [3]
    sub.offer(event(4))
    assert calls == [1, 2, 1]


@pytest.mark.parametrize("end", ["overflow", "close"])
def test_overflow_and_close_call_on_ready_too(end: str) -> None:
    sub = subscribed(maxsize=2)
    calls: list[tuple[bool, bool]] = []
    sub.on_ready = lambda: calls.append((sub.overflowed, sub.closed))
    if end == "overflow":
        for seq in (1, 2, 3):
            sub.offer(event(seq))
        assert calls[-1] == (True, False)
        with pytest.raises(SlowConsumer):
            sub.get_nowait()
    else:
        sub.close()
        assert calls == [(False, True)]
        with pytest.raises(SubscriberClosed):
            sub.get_nowait()


# -- unit: overflow ------------------------------------------------------------------------


@pytest.mark.parametrize("maxsize", [1, 3, 50])
async def test_overflow_is_bounded_and_explicit(maxsize: int) -> None:
    sub = PeakSubscriber(maxsize)
    sub.start_replay("t")
    sub.finish_replay("t", [], Position(EPOCH, 0))
    for seq in range(1, maxsize * 3 + 1):
        sub.offer(event(seq))
        assert len(sub) <= maxsize
    assert sub.peak == maxsize
    assert sub.overflowed
    assert len(sub) == 0  # the buffer is released at once
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


def test_a_backlog_page_is_queued_on_top_of_the_live_bound() -> None:
    """Resuming after an overflow usually means more backlog than ``maxsize``: a page of
    it is queued on top of the live bound, or the client would overflow again at once."""
    sub = Subscriber(3)
    replay = sub.start_replay("t")
    assert sub.take_page_room(replay) == 3  # the hub reads at most this many
    sub.release_room(3)
    sub.offer(event(4))  # live while the history read is in flight
    sub.finish_replay("t", [event(s) for s in (1, 2, 3)], Position(EPOCH, 3))
    sub.offer(event(5))
    sub.offer(event(6))  # 3 live events on top of the page: still within maxsize
    assert not sub.overflowed
    assert seqs(sub.get_nowait()) == [1, 2, 3, 4, 5, 6]
    for seq in (7, 8, 9):  # the allowance ended with that get: maxsize again
        sub.offer(event(seq))
    assert not sub.overflowed
    sub.offer(event(10))
    assert sub.overflowed


def test_live_events_on_top_of_a_backlog_page_still_overflow() -> None:
    sub = PeakSubscriber(3)
    sub.start_replay("t")
    sub.finish_replay("t", [event(s) for s in range(1, 4)], Position(EPOCH, 3))
    for seq in range(4, 8):
        sub.offer(event(seq))
    assert sub.overflowed
    assert sub.peak == 3 + 3
    with pytest.raises(SlowConsumer):
        sub.get_nowait()


# -- unit: paging a resume's backlog ------------------------------------------------------


def test_the_next_page_waits_until_the_client_took_the_previous_one() -> None:
    sub = Subscriber(10)
    replay = sub.start_replay("t")
    room = sub.take_page_room(replay)
    assert room == 10
    sub.release_room(room)
    sub.queue_page(replay, [event(s) for s in range(1, 11)])
    assert sub.take_page_room(replay) == 0  # ten waiting: above the low-water mark
    assert seqs(sub.get_nowait()) == list(range(1, 11))
    assert sub.take_page_room(replay) == 10


def test_a_page_written_by_the_transport_itself_frees_the_room_too() -> None:
    sub = Subscriber(10)
    replay = sub.start_replay("t")
    sub.release_room(sub.take_page_room(replay))
    sub.queue_page(replay, [event(s) for s in range(1, 11)])
    queued = sub.queued()
    assert seqs(queued) == list(range(1, 11))
    assert sub.take_page_room(replay) == 0
    sub.clear_queued()  # written from queued(): emptied in place, the room given back
    assert queued == []
    assert len(sub) == 0
    assert sub.take_page_room(replay) == 10


def test_page_room_is_shared_by_every_replay_of_the_subscriber() -> None:
    sub = Subscriber(10)
    a, b = sub.start_replay("a"), sub.start_replay("b")
    assert sub.take_page_room(a) == 10  # reserved while a's read is in flight
    assert sub.take_page_room(b) == 0
    sub.release_room(10)
    sub.queue_page(a, [event(1, "a"), event(2, "a"), event(3, "a")])
    assert sub.take_page_room(b) == 7  # 3 waiting: below maxsize // 2
    sub.release_room(7)


def test_live_events_offered_before_a_page_read_are_left_to_history() -> None:
    """They were in history before the read began: the read (or a later page) has them."""
    sub = Subscriber(10)
    replay = sub.start_replay("t")
    sub.offer(event(1))
    sub.offer(event(2))
    room = sub.take_page_room(replay)  # the read begins: #1 and #2 are in history
    sub.offer(event(3))  # arrived during the read: maybe not in it
    sub.release_room(room)
    sub.finish_replay(replay, [event(1), event(2)], Position(EPOCH, 2))
    assert seqs(sub.get_nowait()) == [1, 2, 3]


def test_live_events_held_during_a_replay_count_against_the_live_bound() -> None:
    sub = Subscriber(3)
    sub.start_replay("a")
    sub.start_replay("b")
    sub.offer(event(1, "a"))
    sub.offer(event(1, "b"))
    sub.offer(event(2, "b"))
    assert not sub.overflowed
    sub.offer(event(3, "b"))  # four live items waiting for a client with room for 3
    assert sub.overflowed


async def test_a_replay_waiting_for_room_ends_when_the_topic_or_the_subscriber_does() -> None:
    sub = Subscriber(4)
    replay = sub.start_replay("t")
    sub.queue_page(replay, [event(s) for s in range(1, 5)])
    waiting = asyncio.create_task(sub.wait_page_room(replay))
    await asyncio.sleep(0)
    assert not waiting.done()
    sub.get_nowait()  # the client took the page
    assert await asyncio.wait_for(waiting, WAIT) == 4
    sub.release_room(4)

    sub.queue_page(replay, [event(s) for s in range(5, 9)])
    waiting = asyncio.create_task(sub.wait_page_room(replay))
    await asyncio.sleep(0)
    sub.forget("t")  # unsubscribed
    assert await asyncio.wait_for(waiting, WAIT) == 0

    other = sub.start_replay("u")
    sub.queue_page(other, [event(s, "u") for s in range(1, 5)])
    waiting = asyncio.create_task(sub.wait_page_room(other))
    await asyncio.sleep(0)
    sub.close()
    assert await asyncio.wait_for(waiting, WAIT) == 0


def test_a_page_that_history_could_not_continue_is_announced_with_a_reset() -> None:
    sub = Subscriber(10)
    replay = sub.start_replay("t")
    sub.queue_page(replay, [event(2), event(3)])
    new = EPOCH + 2
    sub.finish_replay(replay, [event(1, epoch=new)], Position(new, 1), reset=Position(new, 0))
    items = sub.get_nowait()
    assert seqs(items[:2]) == [2, 3]
    assert items[2] == Reset("t", Position(new, 0))
    assert [(e.epoch, e.seq) for e in events(items[3:])] == [(new, 1)]
    assert sub.positions == {"t": Position(new, 1)}


def test_before_the_first_event_continues_with_seq_1_of_any_epoch() -> None:
    sub = Subscriber(10)
    sub.start_replay("t")
    sub.finish_replay("t", [], Position(0, 0))  # the topic had no event yet
    sub.reset("t", Position(EPOCH, 0))  # the hub found the first epoch: nothing lost
    sub.offer(event(1))
    assert seqs(sub.get_nowait()) == [1]


def test_a_reset_behind_the_subscriber_is_ignored() -> None:
    sub = subscribed(at=5)
    sub.reset("t", Position(EPOCH, 3))  # the subscriber's own replay got further
    sub.offer(event(6))
    assert seqs(sub.get_nowait()) == [6]


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
