"""SIGTERM (issue 9, case 5): every connection is told to go away, and the process exits.

Server A gets SIGTERM while it serves an SSE stream, a WebSocket and a held long poll.
Each must get its documented goodbye (``rt.close`` ``going_away`` with a cursor; close
1001, 4002 under Daphne; the long poll answered at once with its cursor), A must exit
within ``SHUTDOWN_TIMEOUT`` plus a margin, and each client resuming on server B from
what it had must get every event exactly once. A second test stalls the clients (they
stop reading with full buffers): A must still exit within the bound, and they still
resume without loss.

Before the fix, Uvicorn closed WebSockets with 1012 and never exited while an SSE stream
was open; Daphne cut the stream mid-chunk and dropped the socket without a close frame.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.e2e.clients import LongPollClient, SSEClient, WSClient, http_client
from tests.e2e.conftest import SERVER_KINDS, Server, running_servers
from tests.faults.rawclients import RawSSE, RawWS

SHUTDOWN_TIMEOUT = 3.0
#: The documented bound: SHUTDOWN_TIMEOUT, then the server's own (prompt) shutdown.
EXIT_BOUND = SHUTDOWN_TIMEOUT + 2.0
#: Close codes of "going away" per server (Daphne refuses 1001 from an application).
GOING_AWAY = {"daphne": 4002, "uvicorn": 1001}
WAIT = 15.0

pytestmark = pytest.mark.timeout(180)


def flow_env(**extra: str) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "tests.faults.settings_flow",
        "RTD_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
        "RTD_WS_RATE": "100000",
        "RTD_WS_BURST": "100000",
        **extra,
    }


async def sigterm_and_wait(server: Server) -> float:
    """SIGTERM ``server`` (by PID) and return how long it took to exit (bounded)."""
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(server.process.wait, EXIT_BOUND + 10)
    except Exception:
        pytest.fail(
            f"{server.kind} still running {EXIT_BOUND + 10:.0f}s after SIGTERM:\n"
            f"{server.log_tail()}",
            pytrace=False,
        )
    return time.monotonic() - started


async def ended(client: Any) -> None:
    """Wait (bounded) until a clients.py client's connection task is over."""
    task = client._task
    if task is not None:
        await asyncio.wait_for(asyncio.shield(task), WAIT)


async def publish(publisher: WSClient, topic: str, first: int, count: int) -> None:
    await asyncio.gather(*(publisher.publish(topic, {"i": i}) for i in range(first, first + count)))


def tally(seqs: list[int], total: int) -> dict[str, int]:
    unique = set(seqs)
    return {
        "delivered": len(seqs),
        "silent": len(set(range(1, total + 1)) - unique),
        "duplicates": len(seqs) - len(unique),
    }


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_sigterm_says_goodbye_and_nothing_is_lost(
    kind: str, redis_url: str, e2e_log_dir: Path, fault_report: Any
) -> None:
    streams, quiet = f"e2e.sd{uuid4().hex[:10]}", f"e2e.sq{uuid4().hex[:10]}"
    with running_servers(kind, redis_url, e2e_log_dir, extra_env=flow_env()) as servers:
        a, b = servers.a, servers.b
        sse = SSEClient(a.base_url, [streams])
        ws = WSClient(a.base_url, [streams])
        publisher = WSClient(b.base_url, [f"e2e.pub{uuid4().hex[:10]}"])
        for client in (sse, ws, publisher):
            await client.connect()
        async with http_client() as http:
            start = (await http.get(f"{a.base_url}/rt/poll", params={"topic": quiet})).json()
            held = asyncio.ensure_future(
                http.get(
                    f"{a.base_url}/rt/longpoll",
                    params={"topic": quiet, "cursor": start["cursor"], "timeout": "50"},
                )
            )
            await publish(publisher, streams, 1, 20)
            await sse.wait_total(20, WAIT)
            await ws.wait_total(20, WAIT)
            # Twenty more, and SIGTERM at once: some are still on their way through A.
            await publish(publisher, streams, 21, 20)
            assert not held.done(), "the long poll was answered before the shutdown"
            signalled = time.monotonic()
            exit_task = asyncio.ensure_future(sigterm_and_wait(a))
            answer = await asyncio.wait_for(held, WAIT)
            answered_after = time.monotonic() - signalled
            took = await exit_task
        await ended(sse)
        await ended(ws)
        print(
            f"{kind}: long poll answered {answered_after:.2f}s after SIGTERM; exit in {took:.2f}s"
        )

        # The goodbyes, as documented.
        closes = [n for n in sse.notices if n["event"] == "rt.close"]
        assert [c["reason"] for c in closes] == ["going_away"], sse.notices
        assert closes[0]["cursor"], closes
        assert sse.notices[-1] == {"event": "eof"}, sse.notices
        assert ws.close_code == GOING_AWAY[kind], (ws.close_code, ws.errors)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["events"] == [], body
        assert body["cursor"], body
        assert answered_after < 2.0, f"the long poll waited {answered_after:.2f}s"
        assert took < EXIT_BOUND, f"{kind} took {took:.2f}s to exit (bound {EXIT_BOUND}s)"

        # Resume on B from what each client has; more events meanwhile.
        await publish(publisher, streams, 41, 20)
        await publish(publisher, quiet, 1, 5)
        sse_b = SSEClient(b.base_url, [streams], closes[0]["cursor"])
        ws_b = WSClient(b.base_url, [streams], dict(ws.cursors))
        lp_b = LongPollClient(b.base_url, [quiet], body["cursor"])
        try:
            for client in (sse_b, ws_b, lp_b):
                await client.connect()
            await sse_b.wait_total(60 - len(sse.events), WAIT)
            await ws_b.wait_total(60 - len(ws.events), WAIT)
            await lp_b.wait_total(5, WAIT)
        finally:
            for client in (sse_b, ws_b, lp_b, sse, ws, publisher):
                await client.close()

    outcomes = {
        "sse": ([e["seq"] for e in sse.events + sse_b.events], 60),
        "ws": ([e["seq"] for e in ws.events + ws_b.events], 60),
        "longpoll": ([e["seq"] for e in lp_b.events], 5),
    }
    for transport, (seqs, total) in outcomes.items():
        counts = tally(seqs, total)
        fault_report("sigterm", transport, kind, announced=1, **counts)
        assert counts == {"delivered": total, "silent": 0, "duplicates": 0}, (transport, counts)
        assert seqs == list(range(1, total + 1)), transport


@pytest.mark.parametrize("kind", SERVER_KINDS)
async def test_sigterm_with_stalled_clients_exits_in_time(
    kind: str, redis_url: str, e2e_log_dir: Path, fault_report: Any
) -> None:
    topic = f"e2e.st{uuid4().hex[:10]}"
    total = 2000
    # An inbox that holds them all: stuck at shutdown, not too slow.
    env = flow_env(RTD_QUEUE_SIZE=str(2 * total), RTD_HISTORY_SIZE=str(2 * total))
    with running_servers(kind, redis_url, e2e_log_dir, extra_env=env) as servers:
        a, b = servers.a, servers.b
        sse = RawSSE(a.port)
        await sse.connect(topic)
        ws = RawWS(a.port)
        await ws.connect(topic)
        publisher = WSClient(b.base_url, [f"e2e.pub{uuid4().hex[:10]}"])
        await publisher.connect()
        control = WSClient(a.base_url, [topic])
        await control.connect()
        try:
            # 8 MB: more than the kernel's socket buffers take (4 MB at most here), so
            # both writers are stuck (Uvicorn's send waits, Daphne's producer is paused).
            pad = "x" * 4000
            # In chunks: one socket's publishes are answered one after another, and each
            # waits for its ack at most CONNECT_TIMEOUT from when it was sent (a loaded
            # machine would time the last of 2,000 sent at once out, not the server).
            for first in range(1, total + 1, 100):
                await asyncio.gather(
                    *(
                        publisher.publish(topic, {"i": i, "pad": pad})
                        for i in range(first, min(first + 100, total + 1))
                    )
                )
            await control.wait_total(total, WAIT)
            await control.close()
            took = await sigterm_and_wait(a)
            print(f"{kind}: exit in {took:.2f}s with two stalled clients")
            # Whatever reached the clients before the server went.
            await sse.read_until_end(WAIT)
            await ws.read_until_end(WAIT)
        except BaseException:
            # Nothing left open for the next test's warnings when this one fails early.
            for client in (publisher, control):
                await client.close()
            raise
        finally:
            sse.abort()
            ws.abort()
        assert took < EXIT_BOUND, f"{kind} took {took:.2f}s to exit (bound {EXIT_BOUND}s)"

        # Each resumes on B from the last event it got.
        assert sse.opened is not None
        sse_b = SSEClient(b.base_url, [topic], sse.opened["cursor"])
        sse_b.last_event_id = sse.last_id  # Last-Event-ID wins over the URL's cursor
        ws_b = WSClient(b.base_url, [topic], dict(ws.cursors))
        try:
            for client in (sse_b, ws_b):
                await client.connect()
            await sse_b.wait_total(total - len(sse.events), WAIT)
            await ws_b.wait_total(total - len(ws.events), WAIT)
        finally:
            for client in (sse_b, ws_b, publisher):
                await client.close()

    for transport, raw, resumed in (("sse", sse, sse_b), ("ws", ws, ws_b)):
        seqs = [e["seq"] for e in raw.events + resumed.events]
        counts = tally(seqs, total)
        announced = int(raw.closing is not None)
        fault_report("sigterm-stalled", transport, kind, announced=announced, **counts)
        assert counts == {"delivered": total, "silent": 0, "duplicates": 0}, (transport, counts)
