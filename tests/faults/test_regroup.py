"""Redis restarts empty under live subscribers: group membership is back within seconds
(issue 9, case 6).

Two servers of one kind share private ``redis-server`` processes; a WebSocket and an SSE
client on server B follow a topic, events are published through server A. Then the
Redis that holds the topic's group (channels-redis keeps memberships in sorted sets) is
restarted empty on the same port, in well under a second:

- **single**: one Redis for everything (the layer, history): B's receive loop may see
  its connection close, and the topic's history starts a new epoch (announced once);
- **sharded**: the layer is sharded over two Redis servers (history on a third) and the
  restarted one holds the topic's group but not B's inbox: no operation of B fails, yet
  its membership is gone, and nothing but the Redis run_id tells.

Each server's hub reads the run_id of the layer's Redis servers at every tail check and,
when it changed, joins its groups again at once: after that detection window (one
tail-check interval, 2 s, plus a margin) every event must arrive live again, not by the
2 s tail check (events published within the window are only counted). Before the fix the
memberships stayed lost until the group refresh, 8 hours later, and every event waited
for a tail check (p50 1.0-2.4 s). Every event is delivered exactly once.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from channels_redis.utils import _consistent_hash

from tests.conftest import find_free_port
from tests.e2e.clients import BaseClient, SSEClient, WSClient, http_client, http_publish
from tests.e2e.conftest import SERVER_KINDS, Server, Servers, running_servers
from tests.history.conftest import RedisServer

#: The servers' tail-check interval (the default): the fallback the hub must not need.
TAIL_CHECK_INTERVAL = 2.0
#: After Redis is back, the hub has this long to notice (its next tail check) and join
#: its groups again.
DETECTION_WINDOW = TAIL_CHECK_INTERVAL + 1.5
#: Events measured after the detection window, and what each may take from publish to
#: client, and their median.
MEASURED = 20
MAX_LATENCY = 1.0
MAX_P50 = 0.25
#: Upper bound for one wait (seconds).
WAIT = 20.0
#: What B logs once its groups are joined again.
LOG_LINE = "INFO rtdelivery.hub: Redis restarted"
LAYOUTS = ("single", "sharded")

pytestmark = pytest.mark.timeout(180)


class Stamped(list[dict[str, Any]]):
    """The client's event list, stamping each event with its arrival time."""

    def append(self, event: dict[str, Any]) -> None:
        event["_arrived"] = time.time()
        super().append(event)


@dataclass
class Setup:
    servers: Servers
    shards: list[RedisServer]  # the layer's Redis servers
    layout: str


@pytest.fixture(params=[(k, layout) for layout in LAYOUTS for k in SERVER_KINDS], ids=str)
def regroup(request: pytest.FixtureRequest, e2e_log_dir: Path, tmp_path: Path) -> Iterator[Setup]:
    """Two servers of one kind on private redis-servers the test restarts: one for
    everything (single), or two layer shards and a third for history (sharded)."""
    kind, layout = request.param
    redises: list[RedisServer] = []
    try:
        for n in range(3 if layout == "sharded" else 1):
            (tmp_path / str(n)).mkdir()
            redises.append(RedisServer(find_free_port(), tmp_path / str(n)))
            redises[-1].start()
        shards = redises[:2]
        env = {
            "DJANGO_SETTINGS_MODULE": "tests.faults.settings_regroup",
            "RTD_TAIL_CHECK_INTERVAL": str(TAIL_CHECK_INTERVAL),
            "RTD_LAYER_HOSTS": json.dumps(
                [{"address": s.url, "socket_timeout": None} for s in shards]
            ),
        }
        history = redises[-1]
        with running_servers(kind, history.url, e2e_log_dir, extra_env=env) as servers:
            try:
                yield Setup(servers, shards, layout)
            finally:
                for redis in redises:
                    if redis.process is None:
                        redis.start()  # the servers' teardown deletes their keys
    finally:
        for redis in redises:
            redis.stop()


def receiving_shard(shards: list[RedisServer]) -> int:
    """The shard B's hub receives from: the one with a client blocked in BZPOPMIN (only
    B has a hub: A only publishes)."""
    blocked = []
    for index, shard in enumerate(shards):
        with shard.client() as client:
            if any(c.get("cmd") == "bzpopmin" for c in client.client_list()):
                blocked.append(index)
    assert len(blocked) == 1, f"expected one shard with B's blocked receive, got {blocked}"
    return blocked[0]


async def pick_topic(setup: Setup) -> tuple[str, RedisServer]:
    """A fresh topic, and the Redis that holds its group: with two shards, the one B does
    not receive from (so that no operation of B sees it restart)."""
    if setup.layout == "single":
        return f"e2e.rg{uuid4().hex[:10]}", setup.shards[0]
    # A subscriber on another topic starts B's hub and its receive loop.
    starter = WSClient(setup.servers.b.base_url, [f"e2e.start{uuid4().hex[:8]}"])
    await starter.connect()
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                inbox = receiving_shard(setup.shards)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)  # polling B's receive, bounded by the deadline
    finally:
        await starter.close()
    other = 1 - inbox
    while True:
        topic = f"e2e.rg{uuid4().hex[:10]}"
        if _consistent_hash("rtdelivery." + topic, len(setup.shards)) == other:
            return topic, setup.shards[other]


def logged_restart(server: Server) -> bool:
    return any(line.startswith(LOG_LINE) for line in server.log().splitlines())


async def wait_detection(server: Server, back: float) -> float | None:
    """Seconds from ``back`` until ``server`` logged the restart; None if it did not
    within the detection window (polling its log, bounded by the window)."""
    deadline = back + DETECTION_WINDOW
    while time.monotonic() < deadline:
        if logged_restart(server):
            return time.monotonic() - back
        await asyncio.sleep(0.05)  # polling the log, bounded by the window
    return None


def announced(client: BaseClient) -> int:
    """Gaps the server announced to ``client``: rt.reset (SSE), or a ``subscribed`` frame
    with ``recovered: false`` outside a subscribe (WebSocket)."""
    return sum(
        1
        for n in client.notices
        if n["event"] == "rt.reset" or (n["event"] == "subscribed" and not n["recovered"])
    )


async def test_group_membership_is_back_within_seconds_of_an_empty_restart(
    regroup: Setup, fault_report: Any
) -> None:
    servers = regroup.servers
    a, b = servers.a, servers.b
    topic, groups_redis = await pick_topic(regroup)
    clients: list[BaseClient] = [WSClient(b.base_url, [topic]), SSEClient(b.base_url, [topic])]
    for client in clients:
        client.events = Stamped()
        await client.connect()
    published: list[int] = []
    latencies: dict[str, list[float]] = {c.transport: [] for c in clients}

    async with http_client() as http:

        async def publish(i: int) -> None:
            await http_publish(http, a.base_url, servers.token, topic, {"i": i})
            published.append(i)

        async def arrived(i: int) -> None:
            for client in clients:
                await client.wait_for(
                    lambda c=client: any(e["data"]["i"] == i for e in c.events),
                    WAIT,
                    f"event {i}",
                )

        try:
            for i in range(10):  # live before the restart
                await publish(i)
            await arrived(9)
            with groups_redis.client() as client:
                assert client.keys("*:group:rtdelivery." + topic), "no group to lose"

            groups_redis.restart()  # empty, on the same port
            back = time.monotonic()
            # Publishing goes on through the restart. (This first broadcast may be lost
            # on A's stale layer connection; B's tail check brings it.)
            await publish(50)
            detected = await wait_detection(b, back)

            for i in range(100, 100 + MEASURED):
                await publish(i)
                await arrived(i)
                for client in clients:
                    event = next(e for e in client.events if e["data"]["i"] == i)
                    latencies[client.transport].append(event["_arrived"] - event["time"] / 1000)
        finally:
            for client in clients:
                await client.close()

    summary = {
        t: f"p50 {statistics.median(v) * 1000:.0f} ms, max {max(v) * 1000:.0f} ms"
        for t, v in latencies.items()
        if v
    }
    print(f"{servers.kind} {regroup.layout}: restart noticed after {detected}s; then {summary}")
    for client in clients:
        got = [e["data"]["i"] for e in client.events]
        fault_report(
            f"empty-restart-regroup ({regroup.layout})",
            client.transport,
            servers.kind,
            delivered=len(got),
            announced=announced(client),
            silent=len(set(published) - set(got)),
            duplicates=len(got) - len(set(got)),
        )
    # The new epoch is announced once when history was on the restarted Redis.
    expected_announced = 1 if regroup.layout == "single" else 0
    for client in clients:
        got = [e["data"]["i"] for e in client.events]
        assert got == published, f"{client.transport}: {got} != {published}"
        assert announced(client) == expected_announced, client.notices
    for transport, values in latencies.items():
        p50, worst = statistics.median(values), max(values)
        described = (
            f"{servers.kind} {regroup.layout} {transport}: after the detection window "
            f"events took p50 {p50:.3f}s, max {worst:.3f}s (the tail check's pace, not the "
            f"layer's): {[round(v, 3) for v in values]}"
        )
        assert worst < MAX_LATENCY, described
        assert p50 < MAX_P50, described
    assert detected is not None, f"{b.kind} B never logged the restart:\n{b.log_tail()}"
