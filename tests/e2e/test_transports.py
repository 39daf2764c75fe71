"""Delivery over real servers: one suite, parametrized over transport x server kind.

Two server processes (A and B) share Redis; events are published through A and received by
subscribers on B, so every delivery crosses the backplane. Each check ends with a sentinel
event: once it has arrived, any duplicate or stray event would have arrived before it, so
"exactly once" is asserted without waiting a fixed time.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode
from uuid import uuid4

import httpx
import pytest

from tests.e2e.clients import (
    TRANSPORTS,
    BaseClient,
    SSEClient,
    WSClient,
    http_client,
    http_publish,
    make_client,
    open_raw,
    seqs,
)
from tests.e2e.conftest import Servers

TRANSPORT = pytest.mark.parametrize("transport", TRANSPORTS)
#: Upper bound for one wait on deliveries (seconds); a healthy run needs far less.
WAIT = 20.0


async def publish(
    http: httpx.AsyncClient, servers: Servers, topic: str, data: Any
) -> dict[str, Any]:
    return await http_publish(http, servers.a.base_url, servers.token, topic, data)


async def finish_with_sentinel(
    sub: BaseClient, http: httpx.AsyncClient, servers: Servers, topic: str
) -> list[dict[str, Any]]:
    """Publish a sentinel and wait for it; returns every event received before it (inclusive)."""
    sentinel = await publish(http, servers, topic, {"sentinel": True})
    await sub.wait_for(
        lambda: any(e["id"] == sentinel["id"] for e in sub.events), WAIT, "the sentinel"
    )
    return list(sub.events)


async def poll_once(
    http: httpx.AsyncClient, base_url: str, topics: list[str], cursor: str | None
) -> dict[str, Any]:
    params: list[tuple[str, str]] = [("topic", t) for t in topics]
    if cursor:
        params.append(("cursor", cursor))
    response = await http.get(f"{base_url}/rt/poll?{urlencode(params)}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@TRANSPORT
@pytest.mark.parametrize("publisher", ["http", "ws"])
async def test_every_event_once_in_order(
    servers: Servers, transport: str, publisher: str, topic: str
) -> None:
    n = 100
    async with http_client() as http, make_client(transport, servers.b.base_url, topic) as sub:
        assert sub.recovered is True
        if publisher == "http":
            acks = [await publish(http, servers, topic, {"i": i}) for i in range(n)]
        else:
            async with WSClient(servers.a.base_url, []) as pub:
                assert isinstance(pub, WSClient)
                acks = list(await asyncio.gather(*(pub.publish(topic, {"i": i}) for i in range(n))))
        assert sorted(a["seq"] for a in acks) == list(range(1, n + 1))
        events = await finish_with_sentinel(sub, http, servers, topic)

    assert seqs(events) == list(range(1, n + 2)), f"{transport}: lost, duplicated or reordered"
    by_seq = {a["seq"]: a for a in acks}
    for event in events[:n]:
        assert set(event) == {"id", "topic", "seq", "type", "data", "time"}
        assert event["topic"] == topic
        assert event["type"] == "message"
        assert event["id"] == by_seq[event["seq"]]["id"]
        assert isinstance(event["time"], int)
        assert event["time"] > 1_600_000_000_000
    assert sorted(e["data"]["i"] for e in events[:n]) == list(range(n))


@TRANSPORT
async def test_resume_after_drop_no_loss_no_duplicates(
    servers: Servers, transport: str, topic: str
) -> None:
    n, drop_at, reconnect_at = 60, 20, 40
    dropped = asyncio.Event()
    reconnect_now = asyncio.Event()

    async with http_client() as http, make_client(transport, servers.b.base_url, topic) as sub:

        async def publisher() -> None:
            for i in range(1, n + 1):
                await publish(http, servers, topic, {"i": i})
                if i == drop_at:
                    await asyncio.wait_for(dropped.wait(), WAIT)
                if i == reconnect_at:
                    reconnect_now.set()  # and keep publishing while the client reconnects

        task = asyncio.create_task(publisher())
        try:
            await sub.wait_total(drop_at // 2, WAIT)  # mid-stream
            await sub.drop()
            dropped.set()
            before_drop = len(sub.events)
            assert drop_at // 2 <= before_drop <= drop_at
            await asyncio.wait_for(reconnect_now.wait(), WAIT)
            await sub.connect()  # from sub.cursor (SSE: Last-Event-ID)
            await asyncio.wait_for(task, WAIT)
        finally:
            task.cancel()
        events = await finish_with_sentinel(sub, http, servers, topic)

    assert sub.connections == 2
    assert [o["recovered"] for o in sub.opens] == [True, True]
    assert seqs(events) == list(range(1, n + 2)), f"{transport}: resume lost or repeated events"


@TRANSPORT
async def test_resume_beyond_history_says_recovered_false(servers: Servers, transport: str) -> None:
    topic = f"e2esmall.t{uuid4().hex[:12]}"  # history_size 5
    async with http_client() as http:
        for i in range(2):
            await publish(http, servers, topic, {"i": i})
        async with make_client(transport, servers.b.base_url, topic) as first:
            assert first.recovered is True
            old = first.cursor
        assert old
        for i in range(20):  # seq 3..22: 18..22 retained, 3 is gone
            await publish(http, servers, topic, {"i": i})

        async with make_client(transport, servers.b.base_url, topic, cursor=old) as late:
            assert late.recovered is False, late.opens
            assert late.opens[-1]["lost"] == [topic]
            events = await finish_with_sentinel(late, http, servers, topic)
            resumed = late.cursor

        assert seqs(events) == [23], f"{transport}: a backlog was sent after recovered=false"
        # The answer's new position works: resuming from it recovers.
        async with make_client(transport, servers.b.base_url, topic, cursor=resumed) as again:
            assert again.recovered is True


async def test_history_says_recovered_false(servers: Servers) -> None:
    topic = f"e2esmall.t{uuid4().hex[:12]}"
    async with http_client() as http:
        await publish(http, servers, topic, {"i": 0})
        old = (await poll_once(http, servers.b.base_url, [topic], None))["cursor"]
        for i in range(20):
            await publish(http, servers, topic, {"i": i})
        url = f"{servers.b.base_url}/rt/history"
        latest = (await http.get(url, params={"topic": topic})).json()
        assert seqs(latest["events"]) == [17, 18, 19, 20, 21]
        assert latest["recovered"] is True
        answer = (await http.get(url, params={"topic": topic, "cursor": old})).json()
        assert answer["recovered"] is False
        assert answer["lost"] == [topic]
        assert answer["events"] == []
        after = (await http.get(url, params={"topic": topic, "cursor": answer["cursor"]})).json()
        assert after["events"] == []
        assert after["recovered"] is True


async def test_sse_multi_topic_ids_resume_both_topics(servers: Servers) -> None:
    t1, t2 = f"e2e.m{uuid4().hex[:10]}", f"e2e.n{uuid4().hex[:10]}"
    base = servers.b.base_url
    async with http_client() as http:
        start = (await poll_once(http, base, [t1, t2], None))["cursor"]
        # The URL keeps cursor=start on reconnect, like a browser: Last-Event-ID must win.
        async with SSEClient(base, [t1, t2], cursor=start) as sse:
            assert isinstance(sse, SSEClient)
            for i in range(5):
                await publish(http, servers, t1, {"i": i})
                await publish(http, servers, t2, {"i": i})
            await sse.wait_total(10, WAIT)
            assert all(sid != e["id"] for sid, e in zip(sse.ids, sse.events, strict=True))

            # Each id is a cursor over both topics at that event: a poll from the 4th id
            # answers exactly the 6 events after it, on both topics.
            mid = await poll_once(http, base, [t1, t2], sse.ids[3])
            later = {(e["topic"], e["seq"]) for e in sse.events[4:]}
            assert {(e["topic"], e["seq"]) for e in mid["events"]} == later

            await sse.drop()
            for i in range(5, 10):
                await publish(http, servers, t1, {"i": i})
                await publish(http, servers, t2, {"i": i})
            missed = await poll_once(http, base, [t1, t2], sse.last_event_id)
            assert sorted((e["topic"], e["seq"]) for e in missed["events"]) == sorted(
                [(t1, s) for s in range(6, 11)] + [(t2, s) for s in range(6, 11)]
            )

            await sse.connect()  # Last-Event-ID: the last id of the dropped stream
            assert sse.opens[-1]["recovered"] is True
            await finish_with_sentinel(sse, http, servers, t1)
            events = await finish_with_sentinel(sse, http, servers, t2)

    assert seqs(events, t1) == list(range(1, 12))
    assert seqs(events, t2) == list(range(1, 12))


BURST = 20  # concurrent polls, each over MAX_TOPICS (50) topics: 1,000 history reads at once


async def test_burst_of_concurrent_requests(servers: Servers) -> None:
    """A burst of requests on one process: every one is answered (none refused for want
    of a Redis connection)."""
    prefix = f"e2e.burst{uuid4().hex[:10]}"
    path = f"/rt/poll?{urlencode([('topic', f'{prefix}.{i}') for i in range(50)])}"
    async with open_raw(servers.b.port, [path] * BURST) as polls:
        answers = await asyncio.gather(*(p.read_to_eof() for p in polls))
    refused = [a for a in answers if not a.startswith(b"HTTP/1.1 200")]
    assert not refused, f"{len(refused)} of {BURST} refused: {refused[0][-200:]!r}"
