"""History and presence on a Redis Cluster of three masters, for real on loopback.

A 3-master cluster (``redis-server --cluster-enabled yes`` on free ports, joined by
``redis-cli --cluster create``) holds the history and presence of two servers, Uvicorn and
Daphne (``RTDELIVERY["REDIS"] = {"cluster": [...]}``). channels-redis cannot use a Redis
Cluster for the layer (its Lua scripts touch keys of several slots; django/channels_redis
#420), so the layer is *sharded* over two plain redis-servers (two ``hosts``), which is
what channels-redis offers to spread the backplane. Topics are chosen so that each node
owns the slots of eight of them. On each server one client per transport (poll, long poll,
SSE, WebSocket) watches all 24 topics while events are published through both servers:
every acknowledged event reaches every client exactly once, nothing is announced lost, and
no id is ever given to two events. The presence endpoint answers on topics of every node.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.conftest import find_free_port
from tests.e2e.clients import WSClient, http_client
from tests.e2e.conftest import TOKEN, Server
from tests.faults.scaleout import (
    Publisher,
    catch_up,
    latencies,
    open_clients,
    reused_ids,
    scaleout_servers,
    start_clients,
    stop_clients,
    tally,
)
from tests.redis_topologies import Cluster, RedisProcess, server_args
from tests.redis_topologies import redis_cluster as redis_cluster  # fixture

CASE = "cluster"
PER_NODE = 8
#: How long events are published (seconds).
PUBLISH_FOR = 8.0


@pytest.fixture
def layer_shards(tmp_path: Path) -> Any:
    """Two plain redis-servers: the channel layer's sharded hosts."""
    shards = []
    try:
        for index in range(2):
            port = find_free_port()
            workdir = tmp_path / f"layer-{index}"
            workdir.mkdir()
            shard = RedisProcess(f"layer shard {index}", port, workdir, server_args(port, workdir))
            shards.append(shard)
            shard.start()
            shard.wait_ready()
        yield shards
    finally:
        for shard in shards:
            shard.stop()


def topics_by_node(cluster: Cluster, run: str) -> list[str]:
    found: dict[int, list[str]] = {i: [] for i in range(len(cluster.nodes))}
    for n in range(10_000):
        topic = f"e2e.{run}{n}"
        bucket = found[cluster.slot_owner(topic)]
        if len(bucket) < PER_NODE:
            bucket.append(topic)
        if all(len(b) == PER_NODE for b in found.values()):
            break
    return [t for bucket in found.values() for t in bucket]


async def presence_count(http: Any, server: Server, topic: str) -> int:
    response = await http.get(f"{server.base_url}/rt/presence?topic={topic}")
    assert response.status_code == 200, response.text
    return int(response.json()["count"])


async def check_presence(cluster: Cluster, servers: list[Server], run: str) -> None:
    """Presence on a topic of every node: a WebSocket on one server joins (the touch script
    through the cluster), the other server sees it; closing it leaves (the transaction)."""
    owners: dict[int, str] = {}
    for n in range(10_000):
        topic = f"e2epres.{run}{n}"
        owners.setdefault(cluster.slot_owner(topic), topic)
        if len(owners) == len(cluster.nodes):
            break
    a, b = servers
    async with http_client() as http:
        for topic in owners.values():
            client = WSClient(a.base_url, [topic])
            await client.connect()
            try:
                assert await presence_count(http, b, topic) == 1
            finally:
                await client.close()
            deadline = time.monotonic() + 10
            while await presence_count(http, b, topic) != 0:
                assert time.monotonic() < deadline, f"{topic}: the leave never reached Redis"
                await asyncio.sleep(0.05)  # polling a condition, bounded by the deadline


async def test_cluster_delivers_every_event_exactly_once(
    redis_cluster: Cluster,
    layer_shards: list[RedisProcess],
    e2e_log_dir: Path,
    fault_report: Any,
) -> None:
    run = uuid4().hex[:6]
    topics = topics_by_node(redis_cluster, run)
    layer_hosts = [{"address": s.url, "socket_timeout": None} for s in layer_shards]
    with scaleout_servers(
        {"cluster": redis_cluster.urls[:2]},  # the third node is discovered
        layer_hosts,
        e2e_log_dir,
        f"rtdcluster:{run}:",
    ) as servers:
        stop = asyncio.Event()
        watched = open_clients(servers, topics)
        publisher = Publisher(servers, TOKEN, topics)
        try:
            await start_clients(watched, stop)
            started = time.monotonic()
            publisher.start()
            await asyncio.sleep(PUBLISH_FOR)  # the length of the run, not a wait for an event
            await publisher.stop()
            elapsed = time.monotonic() - started
            waited = await catch_up(watched, publisher.acks)
        finally:
            await publisher.stop()
            await stop_clients(watched, stop)
        await check_presence(redis_cluster, servers, run)

    assert publisher.acks, "nothing was acknowledged"
    assert reused_ids(publisher.acks) == []
    assert publisher.refused == 0, f"{publisher.refused} publishes refused"
    # Every node held topics and events.
    for index, node in enumerate(redis_cluster.nodes):
        with node.client() as client:
            assert client.dbsize() > 0, f"node {index} holds no keys"
    summary = []
    for one in watched:
        counts = tally(one.client, publisher.acks)
        fault_report(CASE, one.transport, one.server.kind, **counts.counts())
        summary.append((one.transport, one.server.kind, counts.counts(), latencies(one)))
    print(
        f"cluster: {len(publisher.acks)} events on {len(topics)} topics in {elapsed:.1f}s "
        f"({len(publisher.acks) / elapsed:.0f}/s), caught up {waited:.2f}s after the last"
    )
    for line in summary:
        print("  ", *line)
    for transport, kind, counts, _ in summary:
        assert counts == {
            "delivered": len(publisher.acks),
            "announced": 0,
            "silent": 0,
            "duplicates": 0,
        }, (transport, kind)
