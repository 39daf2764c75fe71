"""No OS thread per open request: hundreds of held long polls and SSE streams on one server.

The server's thread count is read from ``/proc/<pid>/status`` ("Threads:") and its open
sockets from ``/proc/<pid>/fd``. The streams are opened with raw asyncio sockets (cheap and
exact); at the end one event is published and every held request must deliver it, which
proves they were all open and live while the threads were counted.

The contrast: a plain Django async view returning a ``StreamingHttpResponse`` over an async
generator (``/plain/stream``, tests/e2e/urls_e2e.py) under the same server pins one thread
per open stream (Django's ASGIHandler runs each request in its own ThreadSensitiveContext).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode
from uuid import uuid4

import pytest

from tests.e2e.clients import http_client, http_publish, open_raw
from tests.e2e.conftest import SERVER_KINDS, Server, Servers, running_servers

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

HELD = 200  # long polls, and as many SSE streams
PLAIN = 50  # plain Django streams for the contrast
SLACK = 10  # threads allowed above the warmed-up baseline
CONNECTING = 32  # connects in flight at once (listen backlogs are small)
WAIT = 30.0


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no Threads: line for pid {pid}")


def sockets(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # an fd may close while we look
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                count += 1
    return count


async def until(
    condition: Callable[[], bool], what: str, server: Server, samples: list[int]
) -> None:
    """Poll ``condition`` (sampling the thread count meanwhile) until true or WAIT passes."""
    deadline = time.monotonic() + WAIT
    while not condition():
        samples.append(threads(server.pid))
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{server.log_tail()}")
        await asyncio.sleep(0.05)  # sampling interval of a /proc condition
    samples.append(threads(server.pid))


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server(request: pytest.FixtureRequest, redis_url: str, e2e_log_dir: Path) -> Iterator[Servers]:
    # A larger Redis pool: opening 400 streams at once otherwise hits the 100-connection
    # bug pinned by test_burst_of_concurrent_streams (test_transports.py); here we count threads.
    extra = {"RTD_REDIS_MAX_CONNECTIONS": "1000"}
    with running_servers(request.param, redis_url, e2e_log_dir, count=1, extra_env=extra) as group:
        yield group


async def warm_up(group: Servers, topic: str) -> None:
    """Exercise every code path once, so lazily started pools count in the baseline."""
    base = group.a.base_url
    async with http_client() as http:
        await http.get(f"{base}/rt/poll", params={"topic": topic})
        await http.get(f"{base}/rt/longpoll", params={"topic": topic, "timeout": 0})
        async with http.stream("GET", f"{base}/rt/sse", params={"topic": topic}) as response:
            async for chunk in response.aiter_raw():
                if b"rt.open" in chunk:
                    break
        await http_publish(http, base, group.token, topic, {"warm": True})


async def test_held_requests_do_not_hold_threads(server: Servers) -> None:
    srv = server.a
    topic = f"e2e.threads{uuid4().hex[:10]}"
    await warm_up(server, topic)
    baseline = threads(srv.pid)
    base_sockets = sockets(srv.pid)
    samples: list[int] = []

    async with http_client() as http:
        cursor = (await http.get(f"{srv.base_url}/rt/poll", params={"topic": topic})).json()[
            "cursor"
        ]
        longpoll = f"/rt/longpoll?{urlencode({'topic': topic, 'cursor': cursor, 'timeout': 50})}"
        sse = f"/rt/sse?{urlencode({'topic': topic})}"
        async with open_raw(srv.port, [longpoll] * HELD + [sse] * HELD) as conns:
            polls, streams = conns[:HELD], conns[HELD:]
            await asyncio.gather(*(s.read_until(b"event: rt.open") for s in streams))
            await until(
                lambda: sockets(srv.pid) >= base_sockets + 2 * HELD,
                f"{2 * HELD} accepted sockets",
                srv,
                samples,
            )
            # Held requests are still waiting: none of the long polls has answered.
            assert not any(p.received for p in polls)
            with_open = threads(srv.pid)
            open_sockets = sockets(srv.pid)
            samples.append(with_open)

            event = await http_publish(http, srv.base_url, server.token, topic, {"go": 1})
            answers = await asyncio.gather(*(p.read_to_eof() for p in polls))
            await asyncio.gather(*(s.read_until(event["id"].encode()) for s in streams))
            samples.append(threads(srv.pid))

    assert all(a.startswith(b"HTTP/1.1 200") and event["id"].encode() in a for a in answers)
    print(
        f"\n[{server.kind}] pid {srv.pid}: baseline threads {baseline} "
        f"(sockets {base_sockets}); with {HELD} long polls + {HELD} SSE streams open: "
        f"threads {with_open} (max sampled {max(samples)}), sockets {open_sockets}"
    )
    assert max(samples) <= baseline + SLACK, (baseline, samples)


async def test_plain_django_streaming_view_pins_a_thread_each(server: Servers) -> None:
    """The contrast: the same server, a plain Django async streaming view."""
    srv = server.a
    await warm_up(server, f"e2e.threads{uuid4().hex[:10]}")
    baseline = threads(srv.pid)
    samples: list[int] = []
    async with open_raw(srv.port, ["/plain/stream"] * PLAIN) as conns:
        await asyncio.gather(*(c.read_until(b"open\n") for c in conns))
        with_open = threads(srv.pid)
    print(
        f"\n[{server.kind}] pid {srv.pid}: plain Django StreamingHttpResponse (async generator): "
        f"baseline threads {baseline}; with {PLAIN} streams open: threads {with_open}"
    )
    samples.append(with_open)
    assert with_open >= baseline + PLAIN * 0.8, (baseline, with_open)
