"""Cheaper publishes (issue 14.2): concurrent apublish calls of one loop share requests, and
with channels-redis's layer on rtdelivery's own Redis the group send goes in rtdelivery's
requests (the append reads the group; one script queues the batch on the members' channels).

What must not change: each topic's seqs follow the order of the calls, every subscriber gets
every event once and in order (no gap to fill), a failed broadcast is not raised, and every
publish returns only once its event is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from rtdelivery import apublish, backplane, broadcast, direct_groups, metrics
from rtdelivery.core.cursors import Position
from rtdelivery.core.errors import Unavailable
from rtdelivery.core.events import Event
from rtdelivery.history import get_history
from rtdelivery.hub import get_hub
from rtdelivery.subscriber import Subscriber
from rtdelivery.testing import areset

WAIT = 10.0
TOPICS = ["batch.a", "batch.b", "batch.c"]


class RoundTrips:
    """Counts the publisher's requests to Redis (a pipeline or a script counts once): those
    that run its scripts (EVALSHA), not the hub's receiving in this same process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from redis.asyncio.connection import AbstractConnection

        self.count = 0
        original = AbstractConnection.send_packed_command

        async def counted(conn: Any, command: Any, check_health: bool = True) -> None:
            chunks = [command] if isinstance(command, (bytes, str)) else command
            if any(b"EVALSHA" in bytes(c) for c in chunks[:1]):
                self.count += 1
            await original(conn, command, check_health)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)


@pytest.fixture
async def redis_layer(
    redis_settings: dict[str, Any],
    redis_layer_settings: Callable[[str], dict[str, Any]],
    settings: Any,
) -> AsyncIterator[str]:
    """Redis history and channels-redis's RedisChannelLayer on the same Redis."""
    settings.RTDELIVERY = {**redis_settings, "TAIL_CHECK_INTERVAL": 0}
    redis_layer_settings("redis")
    yield "redis"
    await areset()


async def collect(sub: Subscriber, n: int) -> list[Event]:
    got: list[Event] = []
    while len(got) < n:
        got += [i for i in await asyncio.wait_for(sub.get(), WAIT) if isinstance(i, Event)]
    return got


def gaps() -> float:
    return metrics.value("gaps_detected")


async def test_the_same_redis_sends_to_groups_directly(redis_layer: str) -> None:
    batcher = broadcast.batcher(get_history())  # type: ignore[arg-type]
    assert isinstance(batcher.direct, direct_groups.DirectGroups)


async def test_concurrent_publishes_share_requests_in_call_order(
    redis_layer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = get_hub()
    sub = Subscriber(maxsize=1000)
    for topic in TOPICS:
        await hub.subscribe(sub, topic)
    trips = RoundTrips(monkeypatch)
    before = gaps()
    calls = [(TOPICS[i % 3], i) for i in range(60)]
    events = await asyncio.gather(*(apublish(t, i) for t, i in calls))
    # Per topic, seqs follow the order of the calls.
    for topic in TOPICS:
        mine = [(e.seq, e.data) for e in events if e.topic == topic]
        assert mine == [(n + 1, i) for n, (t, i) in enumerate(c for c in calls if c[0] == topic)]
    # The first went alone, the 59 others together (each append queues its event on the
    # layer): 2 requests, not 300.
    assert trips.count == 2, trips.count
    got = await collect(sub, 60)
    for topic in TOPICS:
        assert [e.seq for e in got if e.topic == topic] == list(range(1, 21))
    assert gaps() == before  # in order on the layer: nothing was filled from history
    assert len(sub) == 0
    await hub.unsubscribe_all(sub)


async def test_without_members_a_publish_is_one_request(
    redis_layer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await apublish("batch.alone", 0)  # scripts loaded, connections open
    trips = RoundTrips(monkeypatch)
    for i in range(5):
        assert (await apublish("batch.alone", i)).seq == i + 2
    assert trips.count == 5


async def test_a_sequential_publisher_with_a_subscriber_is_one_request(
    redis_layer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = get_hub()
    sub = Subscriber(maxsize=100)
    await hub.subscribe(sub, "batch.one")
    await apublish("batch.one", 0)
    await collect(sub, 1)
    trips = RoundTrips(monkeypatch)
    for i in range(1, 6):
        await apublish("batch.one", i)
    assert trips.count == 5  # append + group read + queueing: was 5 requests each
    got = await collect(sub, 5)
    assert [(e.seq, e.data) for e in got] == [(n + 1, n) for n in range(1, 6)]
    await hub.unsubscribe_all(sub)


@pytest.fixture
async def encrypted_layer(
    redis_settings: dict[str, Any],
    redis_layer_settings: Callable[[str], dict[str, Any]],
    settings: Any,
) -> AsyncIterator[str]:
    """As redis_layer, with the layer's encryption: the send is a request of its own."""
    from .conftest import reset_channel_layers

    settings.RTDELIVERY = {**redis_settings, "TAIL_CHECK_INTERVAL": 0}
    config = redis_layer_settings("redis")
    config = {**config, "CONFIG": {**config["CONFIG"], "symmetric_encryption_keys": ["k"]}}
    reset_channel_layers()
    settings.CHANNEL_LAYERS = {"default": config}
    reset_channel_layers()
    yield "redis"
    await areset()


async def test_a_failed_send_is_counted_not_raised(
    encrypted_layer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = get_hub()
    sub = Subscriber(maxsize=100)
    await hub.subscribe(sub, "batch.fail")

    async def down(self: Any, client: Any, sends: Any) -> int:
        raise Unavailable("layer down")

    monkeypatch.setattr(direct_groups.DirectGroups, "send", down)
    failures = metrics.value("broadcast_failures")
    events = await asyncio.gather(*(apublish("batch.fail", i) for i in range(3)))
    assert [e.seq for e in events] == [1, 2, 3]  # stored, returned
    assert metrics.value("broadcast_failures") == failures + 3
    # Subscribers get them from history (the tail check, here called by hand).
    await hub.check_tail(immediate=True)
    assert [e.seq for e in await collect(sub, 3)] == [1, 2, 3]
    await hub.unsubscribe_all(sub)


async def test_a_cancelled_caller_does_not_disturb_the_batch(redis_layer: str) -> None:
    first = asyncio.ensure_future(apublish("batch.x", 0))  # goes alone
    await asyncio.sleep(0)
    queued = [asyncio.ensure_future(apublish("batch.x", i)) for i in range(1, 5)]
    await asyncio.sleep(0)
    queued[1].cancel()  # its caller is gone; the batch still stores it
    results = await asyncio.gather(first, *queued, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    assert [r.seq for r in results if isinstance(r, Event)] == [1, 2, 4, 5]
    stored = await get_history().read("batch.x", Position(results[0].epoch, 0))  # type: ignore[union-attr]
    assert [e.data for e in stored.events] == [0, 1, 2, 3, 4]


async def test_an_unavailable_redis_fails_every_publish_of_the_batch(
    redis_layer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rtdelivery.history.redis import RedisHistory

    async def down(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise Unavailable("down")

    monkeypatch.setattr(RedisHistory, "append_many", down)
    results = await asyncio.gather(
        *(apublish("batch.down", i) for i in range(4)), return_exceptions=True
    )
    assert all(isinstance(r, Unavailable) for r in results)
    monkeypatch.undo()
    assert (await apublish("batch.down", 9)).seq == 1  # and the next batch works


@pytest.mark.parametrize("layer", ["pubsub", "memory"])
async def test_other_layers_use_group_send(
    redis_settings: dict[str, Any],
    redis_layer_settings: Callable[[str], dict[str, Any]],
    settings: Any,
    layer: str,
) -> None:
    settings.RTDELIVERY = {**redis_settings, "TAIL_CHECK_INTERVAL": 0}
    redis_layer_settings(layer)
    try:
        assert direct_groups.direct_groups(backplane.get_layer(), get_history().conf) is None
        hub = get_hub()
        sub = Subscriber(maxsize=100)
        await hub.subscribe(sub, "batch.other")
        events = await asyncio.gather(*(apublish("batch.other", i) for i in range(10)))
        assert [e.seq for e in events] == list(range(1, 11))
        assert [e.seq for e in await collect(sub, 10)] == list(range(1, 11))
        await hub.unsubscribe_all(sub)
    finally:
        await areset()


def test_direct_groups_only_for_the_same_single_redis(settings: Any) -> None:
    from channels_redis.core import RedisChannelLayer

    from rtdelivery.conf import build

    conf = build(
        {"HISTORY_BACKEND": "redis", "REDIS_URL": "redis://127.0.0.1:6379/0", "KEY_PREFIX": "x:"}
    )

    def layer(*hosts: Any, cls: type = RedisChannelLayer) -> Any:
        return cls(hosts=list(hosts))

    same = direct_groups.direct_groups
    assert same(layer("redis://127.0.0.1:6379/0"), conf) is not None
    assert same(layer({"address": "redis://127.0.0.1:6379", "socket_timeout": None}), conf)
    assert same(layer(("127.0.0.1", 6379)), conf) is not None
    assert same(layer("redis://127.0.0.1:6379/1"), conf) is None  # another database
    assert same(layer("redis://127.0.0.1:6380/0"), conf) is None  # another server
    assert same(layer("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"), conf) is None
    assert same(layer({"master_name": "m", "sentinels": [("h", 26379)]}), conf) is None

    class Custom(RedisChannelLayer):  # type: ignore[misc]
        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            pass

    assert same(layer("redis://127.0.0.1:6379/0", cls=Custom), conf) is None
    memory = build({"HISTORY_BACKEND": "memory"})
    assert same(layer("redis://127.0.0.1:6379/0"), memory) is None


async def test_a_cancelled_batch_leaves_no_caller_waiting(redis_layer: str) -> None:
    # The loop closing (shutdown cancels every task) while a batch is in flight: its
    # callers and those queued behind it are told (cancelled), none waits forever.
    first = asyncio.ensure_future(apublish("batch.cancel", 0))
    await asyncio.sleep(0)
    queued = [asyncio.ensure_future(apublish("batch.cancel", i)) for i in range(1, 4)]
    await asyncio.wait_for(first, WAIT)
    batcher = broadcast._batchers[asyncio.get_running_loop()]
    assert batcher.task is not None
    batcher.task.cancel()
    done, pending = await asyncio.wait(queued, timeout=WAIT)
    assert not pending
    assert all(t.cancelled() or t.exception() is None for t in done)
    assert not batcher.busy
    assert (await apublish("batch.cancel", 9)).seq >= 2  # and it publishes again
