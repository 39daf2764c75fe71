"""The hub on every Channels layer: delivery, resume, gap repair, tail check, group upkeep.

Delivery invariants (DESIGN.md): 1 every event exactly once and in order; 2 a dropped
message is filled from history before the next is delivered; 4 resume has no race.
With a Redis layer the history is in Redis too (the production setup).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from rtdelivery import metrics
from rtdelivery.backplane import group_name
from rtdelivery.conf import get_settings
from rtdelivery.core.cursors import Cursor, Position
from rtdelivery.core.events import Event
from rtdelivery.history import get_history
from rtdelivery.history.base import BEFORE_FIRST
from rtdelivery.hub import Subscription, get_hub
from rtdelivery.publishing import apublish
from rtdelivery.subscriber import Reset, Subscriber, SubscriberClosed
from tests.conftest import layer_config, reset_channel_layers, sync_redis
from tests.hub.conftest import (
    WAIT,
    collect,
    collect_until,
    events,
    group_members,
    seqs,
    wait_until,
)

Configure = Callable[..., dict[str, Any]]


def now_ms() -> int:
    return int(time.time() * 1000)


async def append_without_broadcast(topic: str, data: Any = "dropped") -> Event:
    """Store an event the way apublish does, but never send it on the layer: the
    backplane 'dropped' it."""
    return await get_history().append(topic, "message", f'"{data}"', now_ms())


def forget_topic_history(layer_backend: str, topic: str, redis_url: str) -> None:
    """Lose a topic's history the way production does (Redis flushed or restarted)."""
    history = get_history()
    if layer_backend == "memory":
        del history._topics[topic]  # type: ignore[attr-defined]
    else:
        with sync_redis(redis_url) as client:
            assert client.delete(*history.keys(topic)) == 2  # type: ignore[attr-defined]


# -- live delivery and group membership ---------------------------------------------


async def test_live_events_reach_every_subscriber_once_in_order(
    rt_settings: Configure, layer_backend: str
) -> None:
    hub = get_hub()
    subs = [Subscriber(maxsize=100) for _ in range(3)]
    for sub in subs:
        result = await hub.subscribe(sub, "news.live")
        # Never published: before the first event of whatever epoch comes.
        assert result == Subscription("news.live", BEFORE_FIRST, True)

    published = [await apublish("news.live", {"n": n}, type="item") for n in range(1, 31)]
    assert [e.seq for e in published] == list(range(1, 31))
    assert len({e.epoch for e in published}) == 1

    received = [await collect(sub, 30) for sub in subs]
    for items in received:
        assert seqs(items) == list(range(1, 31))
        assert [i.id for i in events(items)] == [e.id for e in published]
        assert [(i.type, i.data) for i in events(items)] == [
            ("item", {"n": n}) for n in range(1, 31)
        ]
    # Encoded once per process: every subscriber holds the very same Event objects.
    assert all(a is b is c for a, b, c in zip(*received, strict=True))

    # Nothing else was queued: the next item of each subscriber is the next event.
    await apublish("news.live", "last")
    for sub in subs:
        assert seqs(await collect(sub, 1)) == [31]


async def test_one_subscriber_many_topics_keeps_each_topic_in_order(
    rt_settings: Configure, layer_backend: str
) -> None:
    hub = get_hub()
    sub = Subscriber(maxsize=100)
    for topic in ("multi.a", "multi.b"):
        await hub.subscribe(sub, topic)
    for n in range(10):
        await apublish("multi.a" if n % 3 else "multi.b", n)
    items = await collect(sub, 10)
    by_topic = {t: [i.seq for i in events(items) if i.topic == t] for t in ("multi.a", "multi.b")}
    assert by_topic == {"multi.a": [1, 2, 3, 4, 5, 6], "multi.b": [1, 2, 3, 4]}
    assert sorted(sub.topics) == ["multi.a", "multi.b"]


async def test_many_subscribers_share_one_group_membership(
    rt_settings: Configure, layer_backend: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = get_hub()
    layer = hub.layer
    calls: list[tuple[str, str]] = []
    real_group_add = layer.group_add

    async def counting_group_add(group: str, channel: str) -> None:
        calls.append((group, channel))
        await real_group_add(group, channel)

    monkeypatch.setattr(layer, "group_add", counting_group_add)
    subs = [Subscriber(maxsize=10) for _ in range(20)]
    await asyncio.gather(*(hub.subscribe(sub, "room.big") for sub in subs))

    assert calls == [(group_name("room.big"), hub.channel)]
    await wait_until(
        lambda: group_members(layer_backend, layer, "room.big", redis_url) == {hub.channel},
        what="the hub's channel in the group",
    )
    assert hub.local_subscribers("room.big") == 20
    await apublish("room.big", "hi")
    for sub in subs:
        assert seqs(await collect(sub, 1)) == [1]


async def test_last_unsubscribe_leaves_the_group_and_resubscribing_works(
    rt_settings: Configure, layer_backend: str, redis_url: str
) -> None:
    hub = get_hub()
    layer = hub.layer

    def members() -> set[str]:
        return group_members(layer_backend, layer, "room.door", redis_url)

    first, second = Subscriber(maxsize=10), Subscriber(maxsize=10)
    await hub.subscribe(first, "room.door")
    await hub.subscribe(second, "room.door")
    await hub.unsubscribe(first, "room.door")
    assert first.topics == []
    await wait_until(lambda: members() == {hub.channel}, what="still a member")
    await apublish("room.door", 1)
    assert seqs(await collect(second, 1)) == [1]
    assert first.get_nowait() == []  # unsubscribed: nothing queued

    await hub.unsubscribe(second, "room.door")
    assert hub.topics == []
    assert hub.local_subscribers("room.door") == 0
    await wait_until(lambda: members() == set(), what="the group left")
    missed = await apublish("room.door", 2)  # nobody is subscribed

    again = Subscriber(maxsize=10)
    result = await hub.subscribe(again, "room.door")
    assert result.position == missed.position  # live end: no backlog
    await wait_until(lambda: members() == {hub.channel}, what="the group joined again")
    await apublish("room.door", 3)
    assert seqs(await collect(again, 1)) == [3]

    # The one who left resumes from its last event: the missed one, then live.
    result = await hub.subscribe(second, "room.door", Position(missed.epoch, 1))
    assert result.recovered
    assert seqs(await collect(second, 2)) == [2, 3]


async def test_subscribe_while_the_last_unsubscribe_is_leaving_the_group(
    rt_settings: Configure, layer_backend: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscribe racing the last unsubscribe must end up in the group (the leave must
    not land after the new join)."""
    rt_settings(TAIL_CHECK_INTERVAL=0)  # no tail check to hide a lost membership
    hub = get_hub()
    layer = hub.layer
    leaving_started, release_leave, left = asyncio.Event(), asyncio.Event(), asyncio.Event()
    real_discard, real_add = layer.group_discard, layer.group_add

    async def slow_discard(group: str, channel: str) -> None:
        leaving_started.set()
        await release_leave.wait()
        await real_discard(group, channel)
        left.set()

    async def add_then_let_leave(group: str, channel: str) -> None:
        await real_add(group, channel)
        if leaving_started.is_set():
            release_leave.set()  # worst order: the join lands before the leave
            await left.wait()

    first = Subscriber(maxsize=10)
    await hub.subscribe(first, "room.race")
    monkeypatch.setattr(layer, "group_discard", slow_discard)
    monkeypatch.setattr(layer, "group_add", add_then_let_leave)

    leaving = asyncio.create_task(hub.unsubscribe(first, "room.race"))
    await asyncio.wait_for(leaving_started.wait(), WAIT)
    second = Subscriber(maxsize=10)
    joining = asyncio.create_task(hub.subscribe(second, "room.race"))
    for _ in range(50):  # let the subscribe run as far as it can while the leave waits
        await asyncio.sleep(0)
    release_leave.set()
    await asyncio.wait_for(asyncio.gather(leaving, joining), WAIT)

    await wait_until(
        lambda: group_members(layer_backend, layer, "room.race", redis_url) == {hub.channel},
        what="the hub's channel in the group",
    )
    await apublish("room.race", "after")
    assert seqs(await collect(second, 1)) == [1]


# -- resume -----------------------------------------------------------------------------


async def test_resume_replays_backlog_then_live_without_duplicates_or_gaps(
    rt_settings: Configure, layer_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = get_hub()
    watcher = Subscriber(maxsize=1000)  # keeps the hub in the group with events in flight
    await hub.subscribe(watcher, "feed.resume")
    first = [await apublish("feed.resume", n) for n in range(1, 11)]
    since = first[4].position  # the client saw #1..#5

    history = hub.history
    real_read = history.read
    raced: list[int] = []

    async def racing_read(topic: str, since_: Position | None, limit: int | None = None) -> Any:
        if since_ != since or raced:  # only the replay read of the subscribe below
            return await real_read(topic, since_, limit)
        # Published after the live join, before the replay read: live AND backlog.
        raced.extend([(await apublish(topic, "before-read")).seq for _ in range(3)])
        result = await real_read(topic, since_, limit)
        # Published after the read, before the replay is queued: live only.
        raced.extend([(await apublish(topic, "after-read")).seq for _ in range(3)])
        return result

    monkeypatch.setattr(history, "read", racing_read)
    stop = asyncio.Event()

    async def publisher() -> int:
        count = 0
        while not stop.is_set() and count < 200:
            await apublish("feed.resume", "concurrent")
            count += 1
            await asyncio.sleep(0)
        return count

    background = asyncio.create_task(publisher())
    sub = Subscriber(maxsize=1000)
    result = await hub.subscribe(sub, "feed.resume", since)
    stop.set()
    await asyncio.wait_for(background, WAIT)
    last = await apublish("feed.resume", "end")

    assert result.recovered
    assert len(raced) == 6
    items = await collect_until(sub, last.seq)
    assert seqs(items) == list(range(6, last.seq + 1))
    assert seqs(await collect_until(watcher, last.seq)) == list(range(1, last.seq + 1))


async def test_resume_with_a_cursor_from_an_event_id(
    rt_settings: Configure, layer_backend: str
) -> None:
    hub = get_hub()
    events = [await apublish("feed.ids", n) for n in range(5)]
    cursor = Cursor.decode(events[1].id, get_settings().cursor_key)
    sub = Subscriber(maxsize=10)
    result = await hub.subscribe(sub, "feed.ids", cursor["feed.ids"])
    # The position before the backlog: where a client that has not received it resumes.
    assert result == Subscription("feed.ids", events[1].position, True)
    assert seqs(await collect(sub, 3)) == [3, 4, 5]


async def test_resume_from_before_retained_history_is_not_recovered(
    rt_settings: Configure, layer_backend: str
) -> None:
    rt_settings(TOPICS={"short.*": {"history_size": 5}})
    hub = get_hub()
    events = [await apublish("short.log", n) for n in range(1, 21)]
    lost_before = metrics.value("not_recovered", source="resume")

    too_old = Subscriber(maxsize=100)
    result = await hub.subscribe(too_old, "short.log", events[1].position)
    assert result == Subscription("short.log", events[-1].position, False)
    stale = Subscriber(maxsize=100)
    stale_epoch = Position(events[0].epoch + 2, 19)  # another epoch (epochs are odd)
    result = await hub.subscribe(stale, "short.log", stale_epoch)
    # A stale epoch: the current one from its oldest retained event, announced.
    assert result == Subscription("short.log", events[14].position, False)
    assert metrics.value("not_recovered", source="resume") == lost_before + 2
    assert seqs(await collect(stale, 5)) == [16, 17, 18, 19, 20]

    in_window = Subscriber(maxsize=100)
    result = await hub.subscribe(in_window, "short.log", events[15].position)
    assert result == Subscription("short.log", events[15].position, True)
    assert seqs(await collect(in_window, 4)) == [17, 18, 19, 20]

    await apublish("short.log", "live")
    assert seqs(await collect(too_old, 1)) == [21]  # no backlog: straight to live
    assert seqs(await collect(stale, 1)) == [21]
    assert seqs(await collect(in_window, 1)) == [21]


# -- gap repair and the tail check ---------------------------------------------------------


async def test_gap_in_seq_is_filled_from_history_before_the_next_event(
    rt_settings: Configure, layer_backend: str
) -> None:
    rt_settings(TAIL_CHECK_INTERVAL=0)  # only gap repair can bring the dropped events
    hub = get_hub()
    sub = Subscriber(maxsize=100)
    await hub.subscribe(sub, "gap.one")
    await apublish("gap.one", "sent")
    assert seqs(await collect(sub, 1)) == [1]

    dropped = [await append_without_broadcast("gap.one", f"dropped-{n}") for n in range(3)]
    assert [e.seq for e in dropped] == [2, 3, 4]
    filled_before = metrics.value("gaps_detected")
    await apublish("gap.one", "sent-again")

    items = await collect(sub, 4)
    assert seqs(items) == [2, 3, 4, 5]
    assert [i.data for i in events(items)] == ["dropped-0", "dropped-1", "dropped-2", "sent-again"]
    assert metrics.value("gaps_detected") == filled_before + 1


async def test_check_tail_delivers_a_dropped_last_event(
    rt_settings: Configure, layer_backend: str
) -> None:
    rt_settings(TAIL_CHECK_INTERVAL=0)
    hub = get_hub()
    sub = Subscriber(maxsize=100)
    await hub.subscribe(sub, "gap.tail")
    await apublish("gap.tail", "sent")
    assert seqs(await collect(sub, 1)) == [1]

    await append_without_broadcast("gap.tail")
    await hub.check_tail()  # first sighting: it might still be in flight on the layer
    assert len(sub) == 0
    await hub.check_tail()  # still missing one check later: fetched from history
    assert seqs(sub.get_nowait()) == [2]

    await append_without_broadcast("gap.tail")
    await hub.check_tail(immediate=True)
    assert seqs(sub.get_nowait()) == [3]
    await hub.check_tail(immediate=True)  # nothing new: nothing queued twice
    assert sub.get_nowait() == []


async def test_tail_loop_delivers_a_dropped_last_event(
    rt_settings: Configure, layer_backend: str
) -> None:
    rt_settings(TAIL_CHECK_INTERVAL=0.05)
    hub = get_hub()
    sub = Subscriber(maxsize=100)
    await hub.subscribe(sub, "gap.loop")
    await apublish("gap.loop", "sent")
    await append_without_broadcast("gap.loop")
    await append_without_broadcast("gap.loop")
    assert seqs(await collect(sub, 3)) == [1, 2, 3]


async def test_channels_redis_over_capacity_burst_loses_nothing(
    settings: Any, redis_url: str, key_prefix: str, redis_settings: dict[str, Any]
) -> None:
    """channels-redis drops group messages past `capacity`; history makes up for it."""
    config = layer_config("redis", redis_url, key_prefix)
    config["CONFIG"]["capacity"] = 5
    reset_channel_layers()
    settings.CHANNEL_LAYERS = {"default": config}
    reset_channel_layers()
    settings.RTDELIVERY = {**redis_settings, "TAIL_CHECK_INTERVAL": 0.05}

    hub = get_hub()
    assert type(hub.layer).__name__ == "RedisChannelLayer"
    assert hub.layer.capacity == 5
    sub = Subscriber(maxsize=1000)
    await hub.subscribe(sub, "burst.cap")
    filled_before = metrics.value("gaps_detected")

    reader = asyncio.create_task(collect_until(sub, 300, seconds=30))
    published = await asyncio.gather(*(apublish("burst.cap", n) for n in range(300)))
    assert sorted(e.seq for e in published) == list(range(1, 301))
    assert seqs(await reader) == list(range(1, 301))
    assert metrics.value("gaps_detected") > filled_before  # drops did happen

    await apublish("burst.cap", "after")
    assert seqs(await collect(sub, 1)) == [301]


# -- lost history (epoch change) ------------------------------------------------------------


async def test_lost_history_gives_a_reset_then_the_new_epoch(
    rt_settings: Configure, layer_backend: str, redis_url: str
) -> None:
    rt_settings(TAIL_CHECK_INTERVAL=0)
    hub = get_hub()
    sub = Subscriber(maxsize=100)
    await hub.subscribe(sub, "epoch.live")
    old = [await apublish("epoch.live", n) for n in range(3)]
    assert seqs(await collect(sub, 3)) == [1, 2, 3]

    forget_topic_history(layer_backend, "epoch.live", redis_url)
    new = [await apublish("epoch.live", n) for n in range(2)]
    assert new[0].epoch != old[0].epoch
    assert [e.seq for e in new] == [1, 2]

    items = await collect(sub, 3)
    assert items[0] == Reset("epoch.live", Position(new[0].epoch, 0))
    assert seqs(items[1:]) == [1, 2]
    assert [i.data for i in events(items[1:])] == [0, 1]


async def test_tail_loop_repairs_a_lost_history_whose_events_were_dropped(
    rt_settings: Configure, layer_backend: str, redis_url: str
) -> None:
    """History lost and the new epoch's events dropped too (a Redis restart does both):
    the periodic tail check still brings them, even though the new seq is lower."""
    rt_settings(TAIL_CHECK_INTERVAL=0.05)
    hub = get_hub()
    sub = Subscriber(maxsize=100)
    await hub.subscribe(sub, "epoch.tail")
    for n in range(5):
        await apublish("epoch.tail", n)
    assert seqs(await collect(sub, 5)) == [1, 2, 3, 4, 5]

    forget_topic_history(layer_backend, "epoch.tail", redis_url)
    new = [await append_without_broadcast("epoch.tail", f"new-{n}") for n in range(2)]
    items = await collect(sub, 3)
    assert items[0] == Reset("epoch.tail", Position(new[0].epoch, 0))
    assert seqs(items[1:]) == [1, 2]


# -- group refresh and shutdown ----------------------------------------------------------------


async def test_group_membership_is_refreshed_after_the_layer_forgets_it(
    rt_settings: Configure, layer_backend: str, redis_url: str
) -> None:
    rt_settings(GROUP_REFRESH_INTERVAL=0.05, TAIL_CHECK_INTERVAL=0)
    hub = get_hub()
    layer = hub.layer
    sub = Subscriber(maxsize=10)
    await hub.subscribe(sub, "refresh.me")

    def members() -> set[str]:
        return group_members(layer_backend, layer, "refresh.me", redis_url)

    await wait_until(lambda: members() == {hub.channel}, what="joined")
    # The layer forgets the membership (channels-redis group expiry, a Redis restart...).
    await layer.group_discard(group_name("refresh.me"), hub.channel)
    await wait_until(lambda: members() == {hub.channel}, what="joined again by the refresh")
    await apublish("refresh.me", "still here")  # no tail check: it must come on the layer
    assert seqs(await collect(sub, 1)) == [1]


async def test_channels_redis_group_expiry_sets_the_default_refresh(
    settings: Any, redis_url: str, key_prefix: str, redis_settings: dict[str, Any]
) -> None:
    """GROUP_REFRESH_INTERVAL None: a third of the layer's group_expiry (at least 1 s)."""
    config = layer_config("redis", redis_url, key_prefix)
    config["CONFIG"]["group_expiry"] = 3
    reset_channel_layers()
    settings.CHANNEL_LAYERS = {"default": config}
    reset_channel_layers()
    hub = get_hub()
    sub = Subscriber(maxsize=10)
    await hub.subscribe(sub, "refresh.default")
    key = hub.layer._group_key(group_name("refresh.default"))

    def score() -> float | None:
        with sync_redis(redis_url) as client:
            return client.zscore(key, hub.channel)

    joined_at = score()
    assert joined_at is not None
    await wait_until(lambda: (score() or 0) > joined_at, within=5, what="a refreshed score")


async def test_aclose_closes_subscribers_and_leaves_groups(
    rt_settings: Configure, layer_backend: str, redis_url: str
) -> None:
    hub = get_hub()
    sub = Subscriber(maxsize=10)
    await hub.subscribe(sub, "bye.all")
    waiting = asyncio.create_task(sub.get())
    await hub.aclose()
    with pytest.raises(SubscriberClosed):
        await asyncio.wait_for(waiting, WAIT)
    await wait_until(
        lambda: group_members(layer_backend, hub.layer, "bye.all", redis_url) == set(),
        what="the group left",
    )
    assert get_hub() is not hub  # a new one for the next user of this loop
