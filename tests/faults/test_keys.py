"""No keys from reads (issue 9, case 3), against real servers on a private redis-server.

Polling, long polling, reading history, opening an SSE stream or subscribing on a
WebSocket to topics nobody has published must create nothing in Redis: keys exist only
for topics with events (history) and, while someone is connected, the channel layer's
group of a subscribed topic, which goes when the last subscriber leaves. Before, every
read created the topic's record (about 810 bytes, kept for TOPIC_IDLE_TTL: 7 days), so
one anonymous client could fill Redis at thousands of keys per second.

A client that came before a topic's first event is not told anything was lost: it gets
seq 1, 2, 3 … of the epoch the first publish starts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from uuid import uuid4

import httpx
import pytest

from tests.e2e.clients import SSEClient, WSClient, http_client
from tests.e2e.conftest import SERVER_KINDS, Server, Servers
from tests.faults.test_rollback import (
    WAIT,
    Publisher,
    announcements,
    followers,
    has_all,
    received,
    servers_on_private_redis,
)
from tests.history.conftest import RedisServer

#: Topics read per request (below MAX_TOPICS).
BATCH = 10
#: Distinct never-published topics read through each endpoint of each server.
PER_ENDPOINT = 60


@pytest.fixture(params=SERVER_KINDS)
def fault_servers(
    request: pytest.FixtureRequest, e2e_log_dir: Path, tmp_path: Path
) -> Iterator[tuple[Servers, RedisServer]]:
    """Two servers of one kind on a private redis-server (nothing else in it)."""
    with servers_on_private_redis(request.param, e2e_log_dir, tmp_path) as pair:
        yield pair


def scan(redis: RedisServer, prefix: str) -> list[str]:
    with redis.client() as client:
        return sorted(k.decode() for k in client.scan_iter(match=prefix + "*", count=1000))


def history_keys(redis: RedisServer, prefix: str) -> list[str]:
    """Keys of rtdelivery's history (``<prefix>{<topic>}:…``), not the live operations
    page's process snapshots (``<prefix>{rtdelivery:ops}:…``)."""
    return [
        k
        for k in scan(redis, prefix)
        if k.startswith(prefix + "{") and not k.startswith(prefix + "{rtdelivery:ops}")
    ]


def naming(keys: list[str], marker: str) -> list[str]:
    return [k for k in keys if marker in k]


async def get_ok(http: httpx.AsyncClient, server: Server, endpoint: str, params: Any) -> Any:
    response = await http.get(f"{server.base_url}/rt/{endpoint}?{urlencode(params)}")
    assert response.status_code == 200, (endpoint, response.status_code, response.text)
    return response.json()


def batches(marker: str, endpoint: str, server: str) -> list[list[str]]:
    topics = [f"e2e.{marker}{endpoint}{server}{i}" for i in range(PER_ENDPOINT)]
    return [topics[i : i + BATCH] for i in range(0, len(topics), BATCH)]


async def read_everything(http: httpx.AsyncClient, server: Server, name: str, marker: str) -> int:
    """Read never-published topics through every endpoint of ``server``; returns how
    many distinct topics were read."""
    count = 0
    for topics in batches(marker, "p", name):  # poll, then poll again from its cursor
        body = await get_ok(http, server, "poll", [("topic", t) for t in topics])
        assert (body["events"], body["recovered"]) == ([], True)
        params = [("topic", t) for t in topics] + [("cursor", body["cursor"])]
        again = await get_ok(http, server, "poll", params)
        assert (again["events"], again["recovered"]) == ([], True)
        count += len(topics)
    for topics in batches(marker, "l", name):  # long poll, held 0 s: subscribes, leaves
        params = [("topic", t) for t in topics] + [("timeout", "0")]
        body = await get_ok(http, server, "longpoll", params)
        assert (body["events"], body["recovered"]) == ([], True)
        cursor = body["cursor"]
        body = await get_ok(http, server, "longpoll", [*params, ("cursor", cursor)])
        assert (body["events"], body["recovered"]) == ([], True)
        count += len(topics)
    for topics in batches(marker, "h", name):  # history: latest, and after a cursor
        for topic in topics:
            body = await get_ok(http, server, "history", {"topic": topic})
            assert body["events"] == []
            params = {"topic": topic, "cursor": body["cursor"]}
            body = await get_ok(http, server, "history", params)
            assert (body["events"], body["recovered"]) == ([], True)
        count += len(topics)
    for topics in batches(marker, "s", name):  # an SSE stream each
        sse = SSEClient(server.base_url, topics)
        await sse.connect()
        assert sse.opens == [{"cursor": sse.opens[0]["cursor"], "recovered": True, "lost": []}]
        await sse.close()
        count += len(topics)
    for topics in batches(marker, "w", name):  # a WebSocket subscribed to each
        ws = WSClient(server.base_url, topics)
        await ws.connect()
        assert [o["recovered"] for o in ws.opens] == [True] * len(topics)
        await ws.close()
        count += len(topics)
    return count


async def eventually_none(redis: RedisServer, prefix: str, marker: str) -> list[str]:
    """Keys naming the test's topics, once the servers had time to see everyone leave
    (the layer's groups go when the last subscriber leaves): [] as soon as it is so."""
    deadline = time.monotonic() + WAIT
    while True:
        left = naming(scan(redis, prefix), marker)
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.1)  # polling a condition, bounded by the deadline


async def test_reading_unpublished_topics_creates_no_keys(
    fault_servers: tuple[Servers, RedisServer],
) -> None:
    servers, redis = fault_servers
    prefix = servers.prefix
    # Readiness polls (GET poll?topic=e2e.ready on each server) already happened.
    assert history_keys(redis, prefix) == []
    marker = "k" + uuid4().hex[:8]
    async with http_client() as http:
        read = 0
        for name, server in (("a", servers.a), ("b", servers.b)):
            read += await read_everything(http, server, name, marker)
    assert read == 2 * 5 * PER_ENDPOINT
    assert history_keys(redis, prefix) == []
    assert await eventually_none(redis, prefix, marker) == []


async def test_clients_that_came_before_the_first_event_get_it_without_a_reset(
    fault_servers: tuple[Servers, RedisServer], fault_report: Any
) -> None:
    servers, redis = fault_servers
    topic = f"e2e.first{uuid4().hex[:10]}"
    async with http_client() as http, followers(servers, topic) as group:
        assert naming(history_keys(redis, servers.prefix), topic) == []
        publisher = Publisher(servers, topic, http)
        await publisher.publish(20)
        wanted = set(publisher.acks)
        deadline = time.monotonic() + WAIT
        while not all(has_all(f.client, topic, wanted) for f in group):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)  # polling a condition, bounded by the deadline
    wrong = []
    for follower in group:
        client = follower.client
        ns = received(client, topic)
        seqs = [e["seq"] for e in client.events]
        told = announcements(client)
        fault_report(
            "first events",
            follower.transport,
            f"{servers.kind} {follower.server}",
            delivered=len(set(ns) & wanted),
            announced=told,
            silent=0 if told else len(wanted - set(ns)),
            duplicates=len(ns) - len(set(ns)),
        )
        if (seqs, told) != (list(range(1, 21)), 0):
            wrong.append(
                f"{follower.transport}@{follower.server}: seqs {seqs}, opens {client.opens}, "
                f"notices {client.notices}"
            )
    assert not wrong, "expected seq 1..20 and no reset:\n" + "\n".join(wrong)
