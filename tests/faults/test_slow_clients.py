"""Clients that stop reading (issue 9, case 2): memory stays bounded on every server.

A WebSocket and an SSE client on server A stop reading (raw sockets, a 4 KiB receive
buffer) while 5,000 events of 2 KB are published through server B. Server A's RSS must
not grow with what it cannot send (10 MB per client), each slow client must end with
``too_slow`` and a cursor once it reads again, and a fresh client resuming from that
cursor must get every remaining event exactly once.

Before the fix, Daphne's ``send`` never waited, so its write buffers took everything:
+20 MB and no ``too_slow``. Under Daphne the WebSocket client stalls on until the server
gave up waiting for it to answer the close frame: autobahn used to reset the socket then,
and the client's kernel threw the ``too_slow`` frame away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from rtdelivery.transports.daphne import CLOSE_HANDSHAKE_TIMEOUT
from tests.e2e.clients import ClientError, SSEClient, WSClient
from tests.e2e.conftest import SERVER_KINDS, Server, Servers, running_servers
from tests.faults.rawclients import RawSSE, RawWS, rss_bytes

EVENTS = 5000
PAD = "x" * 2000  # 2 KB events
WARMUP = 20
PUBLISH_BATCH = 1000
#: Per connection, at most QUEUE_SIZE events wait in the inbox and one batch (taken
#: from it) is being written, plus the server's write buffer (64 KiB, one write).
QUEUE_SIZE = 300
#: What server A may grow by while both clients stall (each is sent 10 MB): at the end,
#: and at its peak (a 2 KB event takes about 6 KB in memory, with its encoded frames).
MAX_GROWTH = 6 * 1024 * 1024
MAX_PEAK = 10 * 1024 * 1024
#: What server A logs (under Daphne) when the stalled WebSocket did not answer its close.
CLOSE_TIMED_OUT = "did not answer the close frame within"

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", params=SERVER_KINDS)
def flow_servers(
    request: pytest.FixtureRequest, redis_url: str, e2e_log_dir: Path
) -> Iterator[Servers]:
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.faults.settings_flow",
        "RTD_HISTORY_SIZE": str(EVENTS + 1000),
        "RTD_QUEUE_SIZE": str(QUEUE_SIZE),
        "RTD_WS_RATE": "100000",
        "RTD_WS_BURST": "100000",
    }
    with running_servers(request.param, redis_url, e2e_log_dir, extra_env=env) as group:
        yield group


async def publish_all(publisher: WSClient, topic: str, first: int, count: int) -> None:
    """Publish ``count`` 2 KB events over the publisher's WebSocket, pipelined."""
    for start in range(first, first + count, PUBLISH_BATCH):
        stop = min(start + PUBLISH_BATCH, first + count)
        await asyncio.gather(
            *(publisher.publish(topic, {"i": i, "pad": PAD}) for i in range(start, stop))
        )


async def follow(client: WSClient, total: int, timeout: float = 120.0) -> None:  # noqa: ASYNC109
    """Wait until ``client`` has ``total`` events, resuming if it is itself too slow."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await client.wait_total(total, max(0.1, deadline - time.monotonic()))
            return
        except ClientError:
            if time.monotonic() >= deadline:
                raise
            await client.reconnect()


async def close_timed_out(server: Server) -> None:
    """Wait until ``server`` logged that a WebSocket did not answer its close frame."""
    deadline = time.monotonic() + CLOSE_HANDSHAKE_TIMEOUT + 30
    while CLOSE_TIMED_OUT not in server.log():
        assert time.monotonic() < deadline, (
            f"{server.kind}: no close handshake timeout logged:\n{server.log_tail()}"
        )
        await asyncio.sleep(0.1)  # polling the log, bounded by the deadline


def tally(seqs: list[int], expected: range) -> dict[str, int]:
    unique = set(seqs)
    return {
        "delivered": len(seqs),
        "silent": len(set(expected) - unique),
        "duplicates": len(seqs) - len(unique),
    }


async def test_slow_clients_are_bounded_and_resume(
    flow_servers: Servers, fault_report: Any
) -> None:
    servers = flow_servers
    a, b = servers.a, servers.b
    topic = f"e2e.slow{uuid4().hex[:10]}"
    total = WARMUP + EVENTS

    ws = RawWS(a.port)
    await ws.connect(topic)
    sse = RawSSE(a.port)
    await sse.connect(topic)
    control = WSClient(a.base_url, [topic])
    await control.connect()
    publisher = WSClient(b.base_url, [f"e2e.pub{uuid4().hex[:10]}"])
    await publisher.connect()
    try:
        # Warm up every code path on A while both raw clients read, then they stop.
        await publish_all(publisher, topic, 1, WARMUP)
        await ws.read_events(WARMUP)
        await sse.read_events(WARMUP)
        await follow(control, WARMUP)
        before = rss_bytes(a.pid)

        await publish_all(publisher, topic, WARMUP + 1, EVENTS)
        await follow(control, total)  # A has fanned every event out
        growth = rss_bytes(a.pid) - before
        # The peak since the process started: an upper bound of the peak during the burst.
        peak = rss_bytes(a.pid, "VmHWM") - before
        print(
            f"{servers.kind}: server A grew by {growth / 1e6:.1f} MB "
            f"(peak at most +{peak / 1e6:.1f} MB)"
        )

        if servers.kind == "daphne":
            # Stall on past the close handshake's timeout (autobahn used to reset the
            # socket then, and the client lost its too_slow frame): the client must still
            # get it. (Uvicorn writes the goodbye only once the client reads again, and
            # never resets the socket after its close timeout.)
            await close_timed_out(a)
        # Read again: each slow client gets what was in flight, then too_slow.
        await ws.read_until_end()
        await sse.read_until_end()
    finally:
        await control.close()
        await publisher.close()
        ws.abort()
        sse.abort()

    resumed: dict[str, list[int]] = {}
    for raw in (ws, sse):
        assert raw.closing is not None, (
            f"{raw.transport} on {servers.kind}: not ended as too_slow after "
            f"{len(raw.events)} events (ended={raw.ended}, "
            f"close={getattr(raw, 'close_code', None)}, error={raw.error!r})"
        )
        assert raw.closing[0] == "too_slow", raw.closing
        cursor = raw.closing[1]
        assert cursor, f"{raw.transport}: too_slow without a cursor"
        fresh: WSClient | SSEClient = (
            WSClient(a.base_url, [topic], cursor)
            if raw.transport == "ws"
            else SSEClient(a.base_url, [topic], cursor)
        )
        async with fresh:
            got = len(raw.events)
            await fresh.wait_total(total - got, timeout=60)
            resumed[raw.transport] = [e["seq"] for e in fresh.events]
    assert ws.close_code in (4001,), ws.close_code

    for raw in (ws, sse):
        seqs = [e["seq"] for e in raw.events] + resumed[raw.transport]
        counts = tally(seqs, range(1, total + 1))
        fault_report("slow-client", raw.transport, servers.kind, announced=1, **counts)
        assert counts == {"delivered": total, "silent": 0, "duplicates": 0}, counts
        assert seqs == list(range(1, total + 1))
    assert growth < MAX_GROWTH, (
        f"{servers.kind}: server A grew by {growth / 1e6:.1f} MB for two stalled clients "
        f"(at most {MAX_GROWTH / 1e6:.0f} MB expected)"
    )
    assert peak < MAX_PEAK, (
        f"{servers.kind}: server A peaked at +{peak / 1e6:.1f} MB for two stalled clients "
        f"(at most {MAX_PEAK / 1e6:.0f} MB expected)"
    )
