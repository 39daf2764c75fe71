"""Group memberships come back within seconds when the layer forgets them.

Redis restarted empty (or failed over) loses channels-redis's group memberships, even
when the restart is so quick that no operation failed (redis-py reconnects by itself).
The hub reads the run_id of the layer's Redis at every tail check and re-joins every
group when it changes; a topic whose events only the tail check brought (a flush, an
eviction, an expired group) is re-joined as well. Neither waits for the periodic group
refresh, which these tests push an hour away.

The restart tests run the layer and history on a private redis-server (never the shared
one); the others run on every layer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rtdelivery import outage
from rtdelivery.backplane import group_name
from rtdelivery.connections import aclose_redis
from rtdelivery.history import reset_history
from rtdelivery.hub import aclose_hub, get_hub
from rtdelivery.publishing import apublish, close_publisher
from rtdelivery.subscriber import Subscriber
from tests.conftest import find_free_port, layer_config, reset_channel_layers
from tests.history.conftest import RedisServer
from tests.hub.conftest import WAIT, collect_until, events, group_members, seqs, wait_until

#: The tail check (and restart check) interval of these tests, in seconds.
INTERVAL = 0.5


@pytest.fixture
def shards(tmp_path: Path) -> Iterator[list[RedisServer]]:
    """Two private redis-servers: the shards of one channels-redis layer."""
    servers = []
    try:
        for n in range(2):
            (tmp_path / str(n)).mkdir()
            servers.append(RedisServer(find_free_port(), tmp_path / str(n)))
            servers[-1].start()
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
async def sharded(settings: Any, shards: list[RedisServer]) -> AsyncIterator[list[RedisServer]]:
    """A RedisChannelLayer on both shards (history on the first); the tail check every
    INTERVAL, the group refresh in an hour. Closed while the shards still run."""
    config = layer_config("redis", shards[0].url, "rtdtest:rg:")
    config["CONFIG"]["hosts"] = [
        {"address": server.url, "socket_timeout": None} for server in shards
    ]
    reset_channel_layers()
    settings.CHANNEL_LAYERS = {"default": config}
    settings.RTDELIVERY = {
        "HISTORY_BACKEND": "redis",
        "REDIS_URL": shards[0].url,
        "KEY_PREFIX": "rtdtest:rg:",
        "TAIL_CHECK_INTERVAL": INTERVAL,
        "GROUP_REFRESH_INTERVAL": 3600,
    }
    reset_channel_layers()
    outage.reset()
    yield shards
    await aclose_hub()
    await aclose_redis()
    await asyncio.to_thread(close_publisher)
    reset_history()
    reset_channel_layers()
    outage.reset()


async def test_a_restart_no_operation_saw_is_noticed_and_every_group_joined_again(
    sharded: list[RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    """The groups' shard restarts empty while the hub receives from the other one: nothing
    the hub does fails, yet its memberships are gone. It notices by the run_id."""
    caplog.set_level(logging.INFO, logger="rtdelivery.hub")
    hub = get_hub()
    await hub.start()
    layer = hub.layer
    assert hub.channel is not None
    receiving = layer.consistent_hash(layer.non_local_name(hub.channel))
    other = 1 - receiving
    # Topics whose groups live on the shard the hub does not receive from.
    names = (f"rg.t{n}" for n in range(1000))
    topics = [t for t in names if layer.consistent_hash(group_name(t)) == other][:3]
    groups_server = sharded[other]
    subs = {topic: Subscriber(maxsize=100) for topic in topics}
    for topic, sub in subs.items():
        await hub.subscribe(sub, topic)
        await apublish(topic, "before")
        assert seqs(await collect_until(sub, 1)) == [1]

    def all_joined() -> bool:
        with groups_server.client() as client:
            return all(
                client.zscore(layer._group_key(group_name(t)), hub.channel) is not None
                for t in topics
            )

    assert all_joined()
    groups_server.restart()
    restarted = time.monotonic()
    await wait_until(all_joined, within=WAIT, what="every group joined again")
    took = time.monotonic() - restarted
    assert took < INTERVAL + 1.0, f"joined again {took:.2f}s after the restart"
    await wait_until(
        lambda: any("Redis restarted" in r.getMessage() for r in caplog.records),
        what="the restart logged",
    )
    assert not outage.is_down()

    # Live on the layer: each event arrives well before a tail check could bring it.
    for topic, sub in subs.items():
        published = time.monotonic()
        event = await apublish(topic, "after")
        items = await collect_until(sub, event.seq)
        latency = time.monotonic() - published
        assert [e.data for e in events(items[-1:])] == ["after"]
        assert latency < INTERVAL * 0.8, f"{topic}: {latency:.3f}s"


async def test_a_group_the_layer_forgot_is_joined_again_by_the_tail_check(
    rt_settings: Callable[..., dict[str, Any]], layer_backend: str, redis_url: str
) -> None:
    """A flush, an eviction or an expired group: the tail check brings the events the
    layer no longer delivers, and joins the topic's group again at once."""
    rt_settings(TAIL_CHECK_INTERVAL=INTERVAL, GROUP_REFRESH_INTERVAL=3600)
    hub = get_hub()
    layer = hub.layer
    sub = Subscriber(maxsize=10)
    await hub.subscribe(sub, "forgot.me")

    def members() -> set[str]:
        return group_members(layer_backend, layer, "forgot.me", redis_url)

    await wait_until(lambda: members() == {hub.channel}, what="joined")
    await layer.group_discard(group_name("forgot.me"), hub.channel)
    first = await apublish("forgot.me", "only in history")
    assert seqs(await collect_until(sub, first.seq)) == [first.seq]  # by the tail check
    await wait_until(lambda: members() == {hub.channel}, within=WAIT, what="joined again")
    second = await apublish("forgot.me", "on the layer")
    # Sooner than two tail checks (the first one only suspects a missing event).
    assert seqs(await collect_until(sub, second.seq, seconds=INTERVAL * 0.8)) == [second.seq]
