"""A resume's backlog is paged in under the inbox bound, on every Channels layer.

Delivery invariants (DESIGN.md): 3 a slow consumer never grows memory without bound and
never loses events silently; 4 resume has no race (subscribe live first, replay, drop
duplicates by seq); 7 memory per connection is bounded, including a resume's backlog.

The hub reads history in pages of at most the subscriber's ``maxsize`` events, the next
one only once the client has taken the previous one; live events that arrive meanwhile
wait within the same bound. These tests count what sits in the inbox, not bytes (the
fault suite measures a server's RSS).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from rtdelivery import metrics
from rtdelivery.core.cursors import Position
from rtdelivery.core.events import Event
from rtdelivery.history import get_history
from rtdelivery.history.base import BEFORE_FIRST
from rtdelivery.hub import get_hub
from rtdelivery.publishing import apublish
from rtdelivery.subscriber import Item, Reset, SlowConsumer, Subscriber
from tests.conftest import sync_redis
from tests.hub.conftest import WAIT, collect_until, events, seqs, wait_until

Configure = Callable[..., dict[str, Any]]


class PeakSubscriber(Subscriber):
    """Records the most items its queue ever held."""

    __slots__ = ("peak",)

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self.peak = 0

    def _push(self, item: Item, *, backlog: bool = False) -> None:
        super()._push(item, backlog=backlog)
        self.peak = max(self.peak, len(self))


async def publish_n(topic: str, n: int) -> list[Event]:
    return [await apublish(topic, i) for i in range(n)]


async def read_slowly(sub: Subscriber, last_seq: int, topic: str) -> list[Item]:
    """A client that takes what is queued a batch at a time, yielding between batches."""
    items: list[Item] = []
    while not any(isinstance(i, Event) and i.topic == topic and i.seq == last_seq for i in items):
        items += await asyncio.wait_for(sub.get(), WAIT)
        await asyncio.sleep(0)
    return items


async def test_a_backlog_larger_than_the_inbox_arrives_in_pages_exactly_once(
    rt_settings: Configure, layer_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Live events published during every page read (before and after it) are neither
    lost nor duplicated, and the inbox never holds more than a page and the live bound."""
    hub = get_hub()
    old = await publish_n("paged.feed", 95)
    since = old[0].position  # the client saw #1: a backlog of 94

    history = hub.history
    real_read = history.read
    reads: list[int | None] = []

    async def racing_read(topic: str, since_: Position | None, limit: int | None = None) -> Any:
        if topic != "paged.feed" or since_ is None:
            return await real_read(topic, since_, limit)
        reads.append(limit)
        await apublish(topic, "before-read")  # live and in this read (or a later one)
        result = await real_read(topic, since_, limit)
        after = await apublish(topic, "after-read")  # live only, or in the next page
        # The hub takes them off the layer before the next page is read. (A publish is one
        # request; channels-redis's receive takes four per message on this same loop: a
        # hub that fell behind would offer events older than the next read during it, and
        # they count as live ones waiting until the replay ends.)
        await wait_until(
            lambda: hub._topics[topic].position.seq >= after.seq,  # type: ignore[union-attr]
            what="the hub to receive the event published after the read",
        )
        return result

    monkeypatch.setattr(history, "read", racing_read)
    sub = PeakSubscriber(maxsize=10)
    await hub.subscribe(sub, "paged.feed", since)
    got = await read_slowly(sub, 95, "paged.feed")
    deadline = time.monotonic() + WAIT
    while hub.replays:  # the last pages (each of their reads publishes two more)
        assert time.monotonic() < deadline, "the pager did not finish"
        got += sub.get_nowait()
        await asyncio.sleep(0.01)  # polling the pager's end, bounded by the deadline
    monkeypatch.setattr(history, "read", real_read)
    last = await apublish("paged.feed", "end")
    got += await collect_until(sub, last.seq)

    assert seqs(got) == list(range(2, last.seq + 1))
    assert len(reads) >= 94 // 10  # in pages
    assert all(limit is not None and limit <= 10 for limit in reads)
    assert sub.peak <= 2 * 10  # a page on top of at most maxsize live items
    assert not sub.overflowed


async def test_a_client_that_stops_reading_holds_one_page_then_overflows_on_live_events(
    rt_settings: Configure, layer_backend: str
) -> None:
    hub = get_hub()
    old = await publish_n("stalled.feed", 200)
    pages_before = metrics.value("replay_pages")
    stalled = PeakSubscriber(maxsize=10)
    await hub.subscribe(stalled, "stalled.feed", old[0].position)
    assert len(stalled) == 10  # the first page only

    # Live events wait within the bound (the client reads nothing)...
    for n in range(10):
        await apublish("stalled.feed", f"live {n}")
    await asyncio.sleep(0)  # let the pager run, if it were to read on (it must not)
    assert metrics.value("replay_pages") == pages_before
    assert len(stalled) == 10
    assert not stalled.overflowed
    # ...and past it the client is too slow: dropped, explicitly.
    overflow_at = None
    for n in range(10, 40):
        await apublish("stalled.feed", f"live {n}")
        if stalled.overflowed:
            overflow_at = n
            break
        await asyncio.sleep(0.01)  # the layer brings it (bounded by the loop)
    assert overflow_at is not None, "never overflowed"
    assert stalled.peak == 10
    assert len(stalled) == 0
    with pytest.raises(SlowConsumer):
        await asyncio.wait_for(stalled.get(), WAIT)
    await wait_until(lambda: not hub.replays, what="the pager to stop")

    # The client comes back from its cursor (it received nothing): everything, once.
    await hub.unsubscribe_all(stalled)
    again = Subscriber(maxsize=10)
    await hub.subscribe(again, "stalled.feed", old[0].position)
    last = await apublish("stalled.feed", "end")
    assert seqs(await read_slowly(again, last.seq, "stalled.feed")) == list(range(2, last.seq + 1))


async def test_resumes_of_several_topics_share_one_bound(
    rt_settings: Configure, layer_backend: str
) -> None:
    hub = get_hub()
    topics = [f"multi.r{n}" for n in range(3)]
    starts = {t: (await publish_n(t, 40))[0].position for t in topics}
    sub = PeakSubscriber(maxsize=8)
    for topic in topics:
        await hub.subscribe(sub, topic, starts[topic])
    await asyncio.sleep(0)
    assert len(sub) <= 8  # not a page per topic

    got: list[Item] = []
    while sum(isinstance(i, Event) for i in got) < 3 * 39:
        got += await asyncio.wait_for(sub.get(), WAIT)
        assert len(sub) <= 8 + 1
    for topic in topics:
        assert [e.seq for e in events(got) if e.topic == topic] == list(range(2, 41))
    assert sub.peak <= 8
    await wait_until(lambda: not hub.replays, what="the pagers to finish")


async def test_unsubscribing_during_a_paged_resume_stops_it(
    rt_settings: Configure, layer_backend: str
) -> None:
    hub = get_hub()
    old = await publish_n("gone.feed", 50)
    watcher = Subscriber(maxsize=100)
    await hub.subscribe(watcher, "gone.feed")
    sub = Subscriber(maxsize=5)
    await hub.subscribe(sub, "gone.feed", old[0].position)
    assert hub.replays
    await hub.unsubscribe(sub, "gone.feed")
    await wait_until(lambda: not hub.replays, what="the pager to stop")
    assert seqs(sub.get_nowait()) == [2, 3, 4, 5, 6]  # the first page; nothing after
    await apublish("gone.feed", "after")
    assert seqs(await collect_until(watcher, 51)) == [51]
    assert sub.get_nowait() == []


async def test_history_lost_during_a_paged_resume_is_announced_then_the_new_epoch_follows(
    rt_settings: Configure, layer_backend: str, redis_url: str
) -> None:
    hub = get_hub()
    old = await publish_n("lost.feed", 20)
    sub = Subscriber(maxsize=5)
    await hub.subscribe(sub, "lost.feed", old[0].position)
    first_page = sub.get_nowait()  # #2..#6, and the next page is being read
    assert seqs(first_page) == [2, 3, 4, 5, 6]

    # The topic's history is lost (Redis flushed or restarted): a new epoch.
    history = get_history()
    if layer_backend == "memory":
        del history._topics["lost.feed"]  # type: ignore[attr-defined]
    else:
        with sync_redis(redis_url) as client:
            client.delete(*history.keys("lost.feed"))  # type: ignore[attr-defined]
    new = await publish_n("lost.feed", 3)
    assert new[0].epoch != old[0].epoch

    items: list[Item] = []
    while not any(isinstance(i, Event) and i.epoch == new[0].epoch and i.seq == 3 for i in items):
        items += await asyncio.wait_for(sub.get(), WAIT)
    resets = [i for i in items if isinstance(i, Reset)]
    assert len(resets) == 1
    after = items[items.index(resets[0]) + 1 :]
    assert [(e.epoch, e.seq) for e in events(after)] == [(new[0].epoch, s) for s in (1, 2, 3)]
    # Whatever old-epoch events came before the reset are in order, from #7, no duplicates.
    before = [e.seq for e in events(items[: items.index(resets[0])])]
    assert before == list(range(7, 7 + len(before)))
    # Before the new epoch's first event (or before whatever epoch comes, if the pager
    # found the topic with no history at all).
    assert resets[0].position in (Position(new[0].epoch, 0), BEFORE_FIRST)
