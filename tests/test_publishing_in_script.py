"""A publish with subscribers in one request (issue 14.2): with channels-redis's layer on the
history's Redis, its default msgpack serializer and no encryption, the append's script queues
the layer message itself (rtdelivery.history.scripts.APPEND). The message has no "id": each
receiver computes it with its cursor key.

What must hold: any channels-redis receiver (another layer instance is another process) gets
the message channels-redis's own group_send would have queued, minus "id"; the hub yields the
same Event (same id) as the publisher returned; duplicates (an idempotency key, an append's
own retry) queue nothing; a full channel drops it; a failed queueing is counted, not raised;
other layer configurations (encryption, another serializer, per-channel capacities) keep the
second request and still deliver.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from channels_redis.core import RedisChannelLayer

from rtdelivery import apublish, backplane, broadcast, direct_groups, metrics
from rtdelivery.core.events import Event
from rtdelivery.history import get_history
from rtdelivery.history import redis as redis_history
from rtdelivery.hub import get_hub
from rtdelivery.subscriber import Subscriber
from rtdelivery.testing import areset

from .conftest import reset_channel_layers
from .test_publishing_batch import WAIT, RoundTrips, collect


def use_layer(
    settings: Any,
    redis_settings: dict[str, Any],
    redis_layer_settings: Callable[[str], dict[str, Any]],
    **config: Any,
) -> dict[str, Any]:
    """Redis history and a RedisChannelLayer on the same Redis, with ``config`` added."""
    settings.RTDELIVERY = {**redis_settings, "TAIL_CHECK_INTERVAL": 0}
    layer = redis_layer_settings("redis")
    layer = {**layer, "CONFIG": {**layer["CONFIG"], **config}}
    reset_channel_layers()
    settings.CHANNEL_LAYERS = {"default": layer}
    reset_channel_layers()
    return layer


@pytest.fixture
async def plain(
    redis_settings: dict[str, Any],
    redis_layer_settings: Callable[[str], dict[str, Any]],
    settings: Any,
) -> AsyncIterator[dict[str, Any]]:
    yield use_layer(settings, redis_settings, redis_layer_settings)
    await areset()


async def receiver_of(
    layer_config: dict[str, Any], topic: str, channels: int = 1
) -> tuple[RedisChannelLayer, list[str]]:
    """Another layer instance (as another process would have), with ``channels`` channels
    in ``topic``'s group."""
    layer = RedisChannelLayer(**layer_config["CONFIG"])
    names = [await layer.new_channel(prefix=backplane.CHANNEL_PREFIX) for _ in range(channels)]
    for name in names:
        await layer.group_add(backplane.group_name(topic), name)
    return layer, names


def direct() -> direct_groups.DirectGroups:
    batcher = broadcast.batcher(get_history())  # type: ignore[arg-type]
    assert batcher.direct is not None
    return batcher.direct


async def queued(layer: RedisChannelLayer, channel: str) -> list[bytes]:
    """The raw messages waiting in ``channel``'s sorted set, lowest score first."""
    key = layer.prefix + layer.non_local_name(channel)
    async with layer.connection(0) as conn:
        return list(await conn.zrange(key, 0, -1))


@pytest.mark.parametrize("prefix_length", [0, 12, 50])
async def test_the_script_queues_channels_redis_own_message(
    redis_settings: dict[str, Any],
    redis_layer_settings: Callable[[str], dict[str, Any]],
    settings: Any,
    prefix_length: int,
) -> None:
    config = use_layer(
        settings, redis_settings, redis_layer_settings, random_prefix_length=prefix_length
    )
    try:
        assert direct().in_append
        layer, (one, two) = await receiver_of(config, "inscript.fmt", channels=2)
        data = {"text": "héllo", "n": 2**60, "pad": "x" * 60_000}  # a str16, big ints in JSON
        event = await apublish("inscript.fmt", data, type="chat.msg")
        (raw,) = await queued(layer, one)  # one message for both channels of the key
        expected = {k: v for k, v in backplane.event_message(event).items() if k != "id"}
        assert layer.deserialize(raw) == {**expected, "__asgi_channel__": [one, two]}
        assert len(raw) > prefix_length
        for channel in (one, two):  # what channels-redis's receive() hands out
            message = await asyncio.wait_for(layer.receive(channel), WAIT)
            assert message == expected
            decoded = backplane.decode(message, get_history().key)
            assert isinstance(decoded, Event)
            assert (decoded.id, decoded.raw) == (event.id, event.raw)
            assert type(decoded.epoch) is type(decoded.time) is type(decoded.seq) is int
        await layer.flush()
        await layer.close_pools()
    finally:
        await areset()


async def test_a_sequential_publish_with_a_subscriber_is_one_request(
    plain: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = get_hub()
    sub = Subscriber(maxsize=100)
    await hub.subscribe(sub, "inscript.seq")
    await apublish("inscript.seq", 0)
    await collect(sub, 1)
    trips = RoundTrips(monkeypatch)
    gaps = metrics.value("gaps_detected")
    events = [await apublish("inscript.seq", i) for i in range(1, 6)]
    assert trips.count == 5  # the append queues the event too: was 10
    got = await collect(sub, 5)
    # The hub computed each id from its cursor key: the publisher's own.
    assert [(e.seq, e.id, e.raw) for e in got] == [(e.seq, e.id, e.raw) for e in events]
    assert metrics.value("gaps_detected") == gaps  # in order, nothing filled from history
    await hub.unsubscribe_all(sub)


@pytest.mark.parametrize(
    "config", [{}, {"symmetric_encryption_keys": ["k"]}], ids=["in-append", "encrypted"]
)
async def test_a_batch_is_queued_in_call_order(
    redis_settings: dict[str, Any],
    redis_layer_settings: Callable[[str], dict[str, Any]],
    settings: Any,
    config: dict[str, Any],
) -> None:
    # Scores a microsecond apart, written exactly: equal scores would pop in byte order.
    layer_config = use_layer(settings, redis_settings, redis_layer_settings, **config)
    try:
        layer, (channel,) = await receiver_of(layer_config, "inscript.batch")
        for _ in range(3):
            events = await asyncio.gather(*(apublish("inscript.batch", i) for i in range(40)))
            got = [await asyncio.wait_for(layer.receive(channel), WAIT) for _ in events]
            assert [(m["seq"], m["data"]) for m in got] == [(e.seq, e.data_json) for e in events]
        assert [m["seq"] for m in got] == list(range(81, 121))
        await layer.close_pools()
    finally:
        await areset()


async def test_a_repeated_key_queues_nothing(plain: dict[str, Any]) -> None:
    layer, (channel,) = await receiver_of(plain, "inscript.key")
    first = await apublish("inscript.key", 1, key="order-1")
    again = await apublish("inscript.key", 2, key="order-1")
    assert again.duplicate
    assert again.seq == first.seq
    assert len(await queued(layer, channel)) == 1
    await layer.close_pools()


async def test_an_appends_own_retry_queues_nothing_more(
    plain: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A retry of an append whose reply was lost runs the script again with its publish id:
    # the first run queued the event already.
    layer, (channel,) = await receiver_of(plain, "inscript.retry")
    history = get_history()
    assert isinstance(history, redis_history.RedisHistory)
    monkeypatch.setattr(redis_history._ids, "counter", itertools.repeat(7))
    item = ("inscript.retry", "message", "1", 1_700_000_000_000, None)
    d = direct()
    for _ in range(2):
        (appended,) = await history.append_many(
            [item], d.group_key, d.group_cutoff(), d.queue_args(1)
        )
        assert isinstance(appended.result, Event)
        assert (appended.result.seq, appended.queued) == (1, True)
    assert len(await queued(layer, channel)) == 1
    await layer.close_pools()


async def test_a_full_channel_drops_the_message(
    redis_settings: dict[str, Any],
    redis_layer_settings: Callable[[str], dict[str, Any]],
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rtdelivery.publish")
    config = use_layer(settings, redis_settings, redis_layer_settings, capacity=2)
    try:
        layer, (channel,) = await receiver_of(config, "inscript.full")
        events = [await apublish("inscript.full", i) for i in range(3)]
        assert [e.seq for e in events] == [1, 2, 3]  # all stored
        assert [layer.deserialize(m)["seq"] for m in await queued(layer, channel)] == [1, 2]
        assert "1 message(s) dropped: layer channels over capacity" in caplog.text
        await layer.close_pools()
    finally:
        await areset()


async def test_a_failed_queueing_is_counted_not_raised(plain: dict[str, Any]) -> None:
    layer, (channel,) = await receiver_of(plain, "inscript.fail")
    key = layer.prefix + layer.non_local_name(channel)
    async with layer.connection(0) as conn:
        await conn.set(key, "not a sorted set")  # every queueing command fails on it
    failures = metrics.value("broadcast_failures")
    event = await apublish("inscript.fail", 1)
    assert event.seq == 1  # stored and returned
    assert metrics.value("broadcast_failures") == failures + 1
    stored = await get_history().read("inscript.fail", None)
    assert stored.position.seq == 1
    await layer.close_pools()


@pytest.mark.parametrize(
    "config",
    [
        {"symmetric_encryption_keys": ["a secret"]},
        {"serializer_format": "json"},
        {"channel_capacity": {"rtdelivery.hub.*": 5}},
    ],
    ids=["encrypted", "json", "channel-capacity"],
)
async def test_other_layer_configs_keep_the_second_request(
    redis_settings: dict[str, Any],
    redis_layer_settings: Callable[[str], dict[str, Any]],
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    config: dict[str, Any],
) -> None:
    use_layer(settings, redis_settings, redis_layer_settings, **config)
    try:
        d = direct()
        assert not d.in_append
        hub = get_hub()
        sub = Subscriber(maxsize=100)
        await hub.subscribe(sub, "inscript.other")
        await apublish("inscript.other", 0)
        await collect(sub, 1)
        trips = RoundTrips(monkeypatch)
        events = [await apublish("inscript.other", i) for i in range(1, 4)]
        assert trips.count == 6  # the append (and group read), then the send
        got = await collect(sub, 3)
        assert [(e.seq, e.id) for e in got] == [(e.seq, e.id) for e in events]
        await hub.unsubscribe_all(sub)
    finally:
        await areset()


def test_queueing_in_the_script_only_for_plain_msgpack() -> None:
    def in_append(**config: Any) -> bool:
        return direct_groups._plain_msgpack(RedisChannelLayer(hosts=["redis://h:1/0"], **config))

    assert in_append()
    assert in_append(random_prefix_length=0)
    assert not in_append(symmetric_encryption_keys=["k"])
    assert not in_append(serializer_format="json")
    assert not in_append(channel_capacity={"x.*": 3})

    class Custom(RedisChannelLayer):  # type: ignore[misc]
        def serialize(self, message: dict[str, Any]) -> bytes:
            return b""

    assert not direct_groups._plain_msgpack(Custom(hosts=["redis://h:1/0"]))


async def test_a_failed_queueing_is_sent_the_other_way(
    plain: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The script's queueing fails (here: parameters it cannot parse) after the event is
    stored: the publisher sends the message with the second request instead, and the
    receiver gets it, with the right id."""
    layer, (channel,) = await receiver_of(plain, "inscript.fallback")
    queue_args = direct_groups.DirectGroups.queue_args

    def unparsable(self: direct_groups.DirectGroups, n: int) -> list[str]:
        return [arg.replace("|", "|x", 1) for arg in queue_args(self, n)]

    monkeypatch.setattr(direct_groups.DirectGroups, "queue_args", unparsable)
    failures = metrics.value("broadcast_failures")
    event = await apublish("inscript.fallback", {"n": 1})
    assert event.seq == 1
    assert metrics.value("broadcast_failures") == failures  # delivered after all
    assert "could not queue inscript.fallback seq 1" in caplog.text
    message = await asyncio.wait_for(layer.receive(channel), 5)
    assert message["seq"] == 1
    decoded = backplane.decode(message, get_history().key)
    assert isinstance(decoded, Event)
    assert decoded.id == event.id
    await layer.close_pools()
