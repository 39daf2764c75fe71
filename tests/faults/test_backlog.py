"""A resume's backlog is paged in under the inbox bound on every server (issue 9, case 4).

Server A holds a topic with a 9 MB backlog (4,500 events of 2 KB, published through
server B). A WebSocket or an SSE client resumes on A from before the first event and
stops reading at once (raw sockets, a 4 KiB receive buffer): A must not load the backlog
into memory (it reads pages of at most QUEUE_SIZE events, the next one only when the
client took the previous one), so its RSS grows by a small fraction of the backlog. Live
events keep coming meanwhile: past QUEUE_SIZE of them the stalled client is too slow,
and once it reads again it gets what was in flight, then ``too_slow`` with a cursor from
which a fresh client resumes to get every remaining event exactly once.

Before the fix a resume read its whole backlog at once and queued it on top of
QUEUE_SIZE: +17 MB (Uvicorn) and +36 MB (Daphne) per socket for a 9 MB backlog.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.e2e.clients import SSEClient, WSClient
from tests.e2e.conftest import SERVER_KINDS, Server, Servers, running_servers
from tests.faults.rawclients import RawSSE, RawWS, rss_bytes

BACKLOG = 4500
PAD = "x" * 2000  # 2 KB events: a 9 MB backlog
QUEUE_SIZE = 100
#: Live events published while the resumed client stalls: more than QUEUE_SIZE.
LIVE = QUEUE_SIZE + 50
PUBLISH_BATCH = 500
#: What A may grow by for one stalled resume (the backlog is 9 MB): a page and the live
#: bound in the inbox, a batch being written, the server's write buffer.
MAX_GROWTH = 3 * 1024 * 1024
#: How long A's RSS is watched after the client stalled (seconds).
WATCH = 1.5

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(params=SERVER_KINDS)
def backlog_servers(
    request: pytest.FixtureRequest, redis_url: str, e2e_log_dir: Path
) -> Iterator[Servers]:
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.faults.settings_flow",
        "RTD_HISTORY_SIZE": str(BACKLOG + 2000),
        "RTD_QUEUE_SIZE": str(QUEUE_SIZE),
        "RTD_WS_RATE": "100000",
        "RTD_WS_BURST": "100000",
    }
    with running_servers(request.param, redis_url, e2e_log_dir, extra_env=env) as group:
        yield group


async def publish_range(publisher: WSClient, topic: str, first: int, count: int) -> None:
    """Publish ``count`` 2 KB events (data ``i`` from ``first``), pipelined."""
    for start in range(first, first + count, PUBLISH_BATCH):
        stop = min(start + PUBLISH_BATCH, first + count)
        await asyncio.gather(
            *(publisher.publish(topic, {"i": i, "pad": PAD}) for i in range(start, stop))
        )


async def watch_rss(pid: int, seconds: float) -> int:
    """The highest RSS of ``pid`` over the next ``seconds`` (sampled every 20 ms)."""
    deadline = time.monotonic() + seconds
    peak = rss_bytes(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.02)  # the sampling interval of a bounded measurement
        peak = max(peak, rss_bytes(pid))
    return peak


async def stall_and_resume(
    raw: RawWS | RawSSE,
    a: Server,
    publisher: WSClient,
    control: WSClient,
    topic: str,
    since: str,
    published: int,
) -> tuple[int, list[int], list[int]]:
    """Resume ``raw`` from ``since`` and stop reading: A's growth, then (after LIVE more
    events and the client reading again) the data of what ``raw`` got and of what a
    fresh client resuming from its too_slow cursor got."""
    before = rss_bytes(a.pid)
    await raw.connect(topic, since)  # reads up to its subscribed / rt.open, no further
    peak = await watch_rss(a.pid, WATCH)
    await publish_range(publisher, topic, published + 1, LIVE)
    await control.wait_total(LIVE, timeout=60)  # A fanned every live event out
    peak = max(peak, await watch_rss(a.pid, WATCH / 3))
    await raw.read_until_end()
    assert raw.closing is not None, (
        f"{raw.transport}: not ended as too_slow after {len(raw.events)} events "
        f"(ended={raw.ended}, close={getattr(raw, 'close_code', None)}, error={raw.error!r})"
    )
    reason, cursor = raw.closing
    assert reason == "too_slow", raw.closing
    assert cursor, f"{raw.transport}: too_slow without a cursor"
    got = [e["data"]["i"] for e in raw.events]
    fresh: WSClient | SSEClient = (
        WSClient(a.base_url, [topic], cursor)
        if raw.transport == "ws"
        else SSEClient(a.base_url, [topic], cursor)
    )
    async with fresh:
        await fresh.wait_total(published + LIVE - len(got), timeout=120)
        resumed = [e["data"]["i"] for e in fresh.events]
    return peak - before, got, resumed


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_a_resume_pages_its_backlog_under_the_bound(
    backlog_servers: Servers, transport: str, fault_report: Any
) -> None:
    """Fresh servers per transport: memory a first stalled client freed would hide a
    second one's growth."""
    servers = backlog_servers
    a, b = servers.a, servers.b
    topic = f"e2e.backlog{uuid4().hex[:10]}"
    publisher = WSClient(b.base_url, [f"e2e.pub{uuid4().hex[:10]}"])
    await publisher.connect()
    # Where a client stood before the first event: the cursor the resume starts from.
    first = WSClient(a.base_url, [topic])
    await first.connect()
    since = first.cursor
    await first.close()
    assert since

    # Warm A's resume path on a small backlog of its own (a full read), then the backlog.
    warm_topic = f"e2e.warm{uuid4().hex[:10]}"
    warm = WSClient(a.base_url, [warm_topic])
    await warm.connect()
    warm_since = warm.cursor
    await warm.close()
    await publish_range(publisher, warm_topic, 1, 2 * QUEUE_SIZE + 10)
    async with WSClient(a.base_url, [warm_topic], warm_since) as warm:
        await warm.wait_total(2 * QUEUE_SIZE + 10, timeout=60)
    await publish_range(publisher, topic, 1, BACKLOG)

    control = WSClient(a.base_url, [topic])  # live only: tells when A fanned out
    await control.connect()
    raw = RawWS(a.port) if transport == "ws" else RawSSE(a.port)
    try:
        growth, got, resumed = await stall_and_resume(
            raw, a, publisher, control, topic, since, BACKLOG
        )
    finally:
        raw.abort()
        await control.close()
        await publisher.close()
    published = BACKLOG + LIVE
    seen = got + resumed
    print(
        f"{servers.kind} {transport}: A grew by {growth / 1e6:.2f} MB while a resume of "
        f"{BACKLOG * 2 / 1000:.0f} MB stalled; it got {len(got)} events before too_slow, "
        f"a fresh client {len(resumed)} after"
    )
    fault_report(
        "resume-backlog",
        transport,
        servers.kind,
        delivered=len(seen),
        announced=1,  # too_slow, with a cursor
        silent=len(set(range(1, published + 1)) - set(seen)),
        duplicates=len(seen) - len(set(seen)),
    )
    assert seen == list(range(1, published + 1)), (
        f"{transport}: {len(seen)} events, not 1..{published} exactly once"
    )
    if isinstance(raw, RawWS):
        assert raw.close_code == 4001, raw.close_code
    assert growth < MAX_GROWTH, (
        f"{servers.kind} {transport}: A grew by {growth / 1e6:.1f} MB for one stalled "
        f"resume of a {BACKLOG * 2 / 1000:.0f} MB backlog (at most "
        f"{MAX_GROWTH / 1e6:.0f} MB expected)"
    )
