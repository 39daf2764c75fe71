"""Metrics read the way Prometheus reads them: real scrapes of running Daphne and Uvicorn
processes while real clients subscribe and events flow, and prometheus-client's
multiprocess mode aggregating two worker processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from rtdelivery.connections import aclose_redis
from rtdelivery.ops import reporter
from tests.e2e.clients import http_client, http_publish, make_client
from tests.e2e.conftest import SERVER_KINDS, running_servers
from tests.ops.scrape import scrape, value, wait_scrape
from tests.ops.settings_ops import METRICS_TOKEN

OPS_ENV = {"DJANGO_SETTINGS_MODULE": "tests.ops.settings_ops"}

DELIVERED = "rtdelivery_events_delivered_total"
CONNECTIONS = "rtdelivery_connections"
PUBLISHED = "rtdelivery_events_published_total"
LATENCY_COUNT = "rtdelivery_delivery_latency_seconds_count"


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_a_scrape_follows_connections_and_events(
    kind: str, redis_url: str, tmp_path: Path
) -> None:
    with running_servers(kind, redis_url, tmp_path, count=1, extra_env=OPS_ENV) as servers:
        base = servers.a.base_url
        # Protected: no credentials, a wrong token.
        async with httpx.AsyncClient(trust_env=False, timeout=10) as anon:
            refused = await anon.get(base + "/metrics")
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Bearer")
            wrong = await anon.get(base + "/metrics", headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 403
        before = await scrape(base, METRICS_TOKEN)
        topic = f"e2e.ops.{uuid4().hex[:8]}"
        ws = make_client("ws", base, topic)
        sse = make_client("sse", base, topic)
        async with ws, sse:
            await wait_scrape(
                base,
                METRICS_TOKEN,
                lambda s: (
                    value(s, CONNECTIONS, transport="ws") == 1
                    and value(s, CONNECTIONS, transport="sse") == 1
                    and value(s, "rtdelivery_held_requests") == 1
                    and value(s, "rtdelivery_subscriptions") == 2
                ),
                "one WebSocket and one SSE stream open",
            )
            async with http_client() as client:
                for n in range(5):
                    await http_publish(client, base, servers.token, topic, {"n": n})
            await ws.wait_total(5)
            await sse.wait_total(5)

            def moved(s: dict) -> bool:
                return all(
                    value(s, DELIVERED, transport=t) - value(before, DELIVERED, transport=t) == 5
                    for t in ("ws", "sse")
                )

            after = await wait_scrape(base, METRICS_TOKEN, moved, "5 deliveries per transport")
            assert value(after, PUBLISHED) - value(before, PUBLISHED) == 5
            # Observed once per event in the process, not once per subscriber.
            assert value(after, LATENCY_COUNT) - value(before, LATENCY_COUNT) == 5
            assert value(after, "rtdelivery_connections_opened_total", transport="ws") >= 1
        await wait_scrape(
            base,
            METRICS_TOKEN,
            lambda s: value(s, CONNECTIONS) == 0 and value(s, "rtdelivery_subscriptions") == 0,
            "every connection closed",
        )


async def test_multiprocess_mode_aggregates_two_workers(
    redis_url: str, tmp_path: Path, settings: Any
) -> None:
    """Two server processes sharing PROMETHEUS_MULTIPROC_DIR: a scrape of either one
    reports both processes' connections and deliveries; their ops snapshots in Redis say
    the same, process by process."""
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env = {**OPS_ENV, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    with running_servers("uvicorn", redis_url, tmp_path, count=2, extra_env=env) as servers:
        a, b = servers.a, servers.b
        topic = f"e2e.ops.{uuid4().hex[:8]}"
        async with (
            make_client("ws", a.base_url, topic) as on_a,
            make_client("sse", b.base_url, topic) as on_b,
        ):
            async with http_client() as client:
                for n in range(3):
                    await http_publish(client, a.base_url, servers.token, topic, {"n": n})
            await on_a.wait_total(3)
            await on_b.wait_total(3)
            for server in (a, b):
                samples = await wait_scrape(
                    server.base_url,
                    METRICS_TOKEN,
                    lambda s: (
                        value(s, DELIVERED, transport="ws") == 3
                        and value(s, DELIVERED, transport="sse") == 3
                    ),
                    f"both workers' deliveries in a scrape of {server.kind} {server.pid}",
                )
                assert value(samples, CONNECTIONS, transport="ws") == 1
                assert value(samples, CONNECTIONS, transport="sse") == 1
                # Each process fanned every event out once.
                assert value(samples, LATENCY_COUNT) == 6
                # held_requests is per process ("liveall"): B's stream under B's pid.
                assert value(samples, "rtdelivery_held_requests", pid=str(b.pid)) == 1
                assert value(samples, "rtdelivery_held_requests", pid=str(a.pid)) == 0
            # What the live page aggregates: each process's own snapshot, from Redis.
            settings.RTDELIVERY = {
                "HISTORY_BACKEND": "redis",
                "REDIS_URL": redis_url,
                "KEY_PREFIX": servers.prefix,
            }
            try:
                snaps = await wait_snapshots(lambda s: len(s) == 2 and _reported_both(s))
            finally:
                await aclose_redis()
            by_pid = {snap["pid"]: snap for snap in snaps}
            assert set(by_pid) == {a.pid, b.pid}
            assert by_pid[a.pid]["connections"]["ws"] == 1
            assert by_pid[b.pid]["connections"]["sse"] == 1
            assert by_pid[b.pid]["held"] == 1
            assert by_pid[a.pid]["topics"] == {topic: 1}
            assert by_pid[b.pid]["topics"] == {topic: 1}
            assert by_pid[a.pid]["counters"]["events_delivered.ws"] == 3
            assert by_pid[b.pid]["counters"]["events_delivered.sse"] == 3
        files = sorted(p.name for p in multiproc.iterdir())
        assert any(str(a.pid) in name for name in files), files
        assert any(str(b.pid) in name for name in files), files


async def test_a_worker_that_only_answers_short_polls_counts_its_deliveries(
    redis_url: str, tmp_path: Path
) -> None:
    """Multiprocess mode, no reporter (OPS_INTERVAL None), no hub on B (short polls only):
    B's deliveries reach a scrape of A, because B's writer flushes once its last flush is
    a second old."""
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env = {**OPS_ENV, "PROMETHEUS_MULTIPROC_DIR": str(multiproc), "RTD_OPS_INTERVAL": "none"}
    with running_servers("uvicorn", redis_url, tmp_path, count=2, extra_env=env) as servers:
        a, b = servers.a, servers.b
        topic = f"e2e.ops.{uuid4().hex[:8]}"
        async with make_client("poll", b.base_url, topic) as on_b:
            async with http_client() as client:
                for n in range(3):
                    await http_publish(client, a.base_url, servers.token, topic, {"n": n})
            await on_b.wait_total(3)
            # B keeps polling (0 events each time): a write more than a second after its
            # last flush moves the count; only A is scraped.
            await wait_scrape(
                a.base_url,
                METRICS_TOKEN,
                lambda s: value(s, DELIVERED, transport="poll") == 3,
                "B's short-poll deliveries in a scrape of A",
            )


def _reported_both(snaps: list[dict[str, Any]]) -> bool:
    return all(
        snap["counters"].get("events_delivered.ws", 0)
        + snap["counters"].get("events_delivered.sse", 0)
        == 3
        for snap in snaps
    )


async def wait_snapshots(
    predicate: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 20.0,  # noqa: ASYNC109
) -> list[dict[str, Any]]:
    """The processes' snapshots in Redis once ``predicate`` holds (they report every
    OPS_INTERVAL)."""
    deadline = time.monotonic() + timeout
    while True:
        snaps = await reporter.load()
        if predicate(snaps) or time.monotonic() > deadline:
            return snaps
        await asyncio.sleep(0.1)  # polling what the servers write on their own, bounded
