"""When the processes report: deliveries reach the counter without a reporter or a scrape,
the reporter starts with the first request (not only the first hub), a forked worker
reports as itself, and the page's "open" mark outlives a long OPS_INTERVAL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from demo_site.settings import RTDELIVERY as DEMO_RTDELIVERY
from rtdelivery import metrics
from rtdelivery.ops import reporter

SETTINGS = {**DEMO_RTDELIVERY, "HISTORY_BACKEND": "memory", "REDIS_URL": None}
ROOT = Path(__file__).resolve().parents[2]


def counted(transport: str) -> float:
    """The delivered counter as it stands, without flushing what is pending."""
    child = metrics._DELIVERED[transport]
    return float(child._value.get()) if metrics.ENABLED else float(child.value)


def test_a_writer_flushes_once_the_last_flush_is_a_second_old() -> None:
    before = counted("poll")
    metrics._last_flush[0] = time.monotonic()  # just flushed: the add stays pending
    metrics.delivered["poll"].n += 2
    assert counted("poll") == before
    metrics._last_flush[0] = time.monotonic() - 2 * metrics.FLUSH_EVERY
    metrics.delivered["poll"].n += 3
    assert counted("poll") == before + 5  # nothing else flushed: no reporter, no scrape
    assert time.monotonic() - metrics._last_flush[0] < metrics.FLUSH_EVERY


def _stop_reporter() -> None:
    task = reporter._task
    if task is None or task.done() or task.get_loop().is_closed():
        return
    loop = task.get_loop()

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(stop(), loop).result(10)


@pytest.fixture
def no_reporter() -> Iterator[None]:
    _stop_reporter()
    reporter.reset()
    yield
    _stop_reporter()
    reporter.reset()


@pytest.mark.django_db
def test_the_first_request_starts_the_reporter(settings: Any, no_reporter: None) -> None:
    """A process that only answers short polls (no hub, no subscription) reports too."""
    settings.RTDELIVERY = {**SETTINGS, "OPS_INTERVAL": 0.05}
    response = Client().get("/rt/poll", {"topic": "feed"})
    assert response.status_code == 200, response.content
    task = reporter._task
    assert task is not None
    assert not task.done()
    deadline = time.monotonic() + 10
    while reporter.process_id() not in reporter._local:  # the reporter's first round
        assert time.monotonic() < deadline, "no snapshot within 10 s"
        time.sleep(0.02)
    assert reporter._local[reporter.process_id()][1]["pid"] == os.getpid()


@pytest.mark.django_db
def test_no_reporter_when_ops_interval_is_none(settings: Any, no_reporter: None) -> None:
    settings.RTDELIVERY = {**SETTINGS, "OPS_INTERVAL": None}
    assert Client().get("/rt/poll", {"topic": "feed"}).status_code == 200
    assert reporter._task is None or reporter._task.done()


FORK_SCRIPT = """
import asyncio, json, os
import django
django.setup()
from rtdelivery.ops import reporter

parent = reporter.snapshot()
loop = asyncio.new_event_loop()
reporter._task = loop.create_task(asyncio.sleep(3600))  # the parent's reporter
read, write = os.pipe()
child = os.fork()
if child == 0:
    snap = reporter.snapshot()
    seen = [snap["id"], snap["pid"], reporter.PROCESS_ID, reporter._task is None]
    os.write(write, json.dumps(seen).encode())
    os._exit(0)
os.waitpid(child, 0)
reporter._task.cancel()
loop.run_until_complete(asyncio.gather(reporter._task, return_exceptions=True))
loop.close()
seen = json.loads(os.read(read, 65536))
print(json.dumps({"parent": [parent["id"], parent["pid"]], "child": seen, "child_pid": child}))
"""


def test_a_forked_worker_reports_as_itself() -> None:
    """gunicorn and ``uvicorn --workers`` import the app, then fork: each worker is its
    own process on the page, and does not take its parent's reporter for its own."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    child_pid = out["child_pid"]
    child_id, pid, attribute, no_task = out["child"]
    assert pid == child_pid
    assert child_id.endswith(f":{child_pid}")
    assert attribute == child_id
    assert child_id != out["parent"][0]
    assert no_task  # the parent's task is not the child's: its first request starts one


def test_the_page_stays_open_for_three_long_intervals(settings: Any) -> None:
    """A page marks itself viewed when it reads the state; the processes publish on the
    ops topic while the mark lasts, so it must outlast their reporting interval."""
    settings.RTDELIVERY = {**SETTINGS, "OPS_INTERVAL": 60.0}
    reporter.reset()
    try:
        asyncio.run(reporter.mark_viewed())
        assert reporter._viewers_until - time.monotonic() > 170
    finally:
        reporter.reset()
    settings.RTDELIVERY = {**SETTINGS, "OPS_INTERVAL": 1.0}
    assert reporter.viewer_ttl(reporter.get_settings()) == reporter.VIEWER_TTL


async def test_the_viewers_key_outlives_a_long_interval(
    settings: Any, redis_settings: dict[str, Any]
) -> None:
    settings.RTDELIVERY = {**redis_settings, "OPS_INTERVAL": 100.0}
    from rtdelivery.connections import aclose_redis, get_redis

    try:
        await reporter.mark_viewed()
        ttl = await get_redis().ttl(reporter.keys(reporter.get_settings())[2])
        assert 290 <= ttl <= 300
    finally:
        await get_redis().delete(reporter.keys(reporter.get_settings())[2])
        await aclose_redis()
