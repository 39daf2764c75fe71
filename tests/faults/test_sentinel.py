"""A Redis Sentinel failover under load, for real on loopback.

A master and a replica (``redis-server --replicaof``) are watched by three Sentinels
(``redis-server <config> --sentinel``, quorum 2, ``down-after-milliseconds`` 1000). Two
servers, Uvicorn and Daphne, use Sentinel for everything: the history and presence
(``RTDELIVERY["REDIS"] = {"sentinels": [...], "service": ...}``) and the channel layer
(channels-redis's own Sentinel host, ``{"sentinels": [...], "master_name": ...}``). On each
server one client per transport watches every topic while events are published through
both servers. Mid-stream the master is killed with SIGKILL, so whatever it had not yet
replicated is gone; the Sentinels promote the replica, and the servers follow it without a
restart.

Every client must end up with every acknowledged event exactly once, or have been told
(``recovered: false`` / ``rt.reset``) about the topics whose history went back: never a
silent gap, and no id ever given to two different events. After a failover every topic
starts a new epoch (the promoted replica has another run_id), so each client is told once
per topic. The figures printed (and quoted in docs/deployment.md) are the time from the
kill to the promotion and to the first acknowledged publish, and the publishes refused
meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from tests.e2e.conftest import TOKEN
from tests.faults.scaleout import (
    Publisher,
    announced_topics,
    catch_up,
    latencies,
    open_clients,
    reused_ids,
    scaleout_servers,
    start_clients,
    stop_clients,
    tally,
)
from tests.redis_topologies import SERVICE, SentinelGroup
from tests.redis_topologies import sentinel_group as sentinel_group  # fixture

CASE = "sentinel-failover"
TOPICS = 8
#: Publishing before the kill, and after the first acknowledged publish that follows it.
BEFORE_KILL = 4.0
AFTER_RECOVERY = 5.0


async def test_sentinel_failover_is_never_a_silent_gap(
    sentinel_group: SentinelGroup, e2e_log_dir: Path, fault_report: Any
) -> None:
    run = uuid4().hex[:6]
    topics = [f"e2e.{run}{n}" for n in range(TOPICS)]
    sentinels = [list(address) for address in sentinel_group.addresses]
    layer_host = {"sentinels": sentinels, "master_name": SERVICE, "socket_timeout": None}
    with scaleout_servers(
        {"sentinels": sentinels, "service": SERVICE},
        [layer_host],
        e2e_log_dir,
        f"rtdsentinel:{run}:",
    ) as servers:
        stop = asyncio.Event()
        watched = open_clients(servers, topics)
        publisher = Publisher(servers, TOKEN, topics)
        try:
            await start_clients(watched, stop)
            publisher.start()
            await asyncio.sleep(BEFORE_KILL)  # the stream before the fault, not an event wait
            acked_before = len(publisher.acks)
            killed = time.monotonic()
            sentinel_group.master.kill()
            promoted = await asyncio.to_thread(sentinel_group.wait_promoted)
            deadline = time.monotonic() + 30
            while publisher.first_ack_sent_after(killed) is None:
                assert time.monotonic() < deadline, "no publish acknowledged after the failover"
                await asyncio.sleep(0.05)  # polling a condition, bounded by the deadline
            first_ack = publisher.first_ack_sent_after(killed)
            assert first_ack is not None
            await asyncio.sleep(AFTER_RECOVERY)  # the stream after the fault
            await publisher.stop()
            waited = await catch_up(watched, publisher.acks)
        finally:
            await publisher.stop()
            await stop_clients(watched, stop)

    assert reused_ids(publisher.acks) == []
    assert acked_before > 0
    assert len(publisher.acks) > acked_before, "nothing acknowledged after the failover"
    summary = []
    for one in watched:
        counts = tally(one.client, publisher.acks)
        fault_report(CASE, one.transport, one.server.kind, **counts.counts())
        summary.append((one, counts))
    refused = publisher.refused_between(killed, first_ack)
    stall = publisher.slowest_answer(killed - 1, first_ack)
    print(
        f"sentinel failover: kill -> promoted {promoted - killed:.2f}s, kill -> first ack "
        f"{first_ack - killed:.2f}s, {refused} publishes refused meanwhile, the slowest "
        f"publish answered after {stall:.2f}s; "
        f"{len(publisher.acks)} events acknowledged ({acked_before} before the kill); "
        f"caught up {waited:.2f}s after the last"
    )
    for one, counts in summary:
        print(
            "  ",
            one.transport,
            one.server.kind,
            counts.counts(),
            latencies(one),
            f"reconnects={one.client.connections - 1}",
            f"topics told={len(announced_topics(one.client))}/{TOPICS}",
            sorted({f.split(":")[0][:60] for f in one.failures}),
        )
    for one, counts in summary:
        where = f"{one.transport} on {one.server.kind}"
        assert counts.silent == 0, f"{where}: silent gaps {counts.missing[:10]}"
        assert counts.duplicates == 0, f"{where}: duplicates {counts.doubles[:10]}"
        assert counts.delivered > acked_before / 2, f"{where}: {counts.counts()}"
