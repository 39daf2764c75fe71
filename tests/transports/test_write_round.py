"""The WebSocket write round on a real Uvicorn server (in-process, real sockets).

Under Uvicorn's websockets-sansio protocol, events queued while a connection's writer
waits are written to every such socket by one callback per loop step
(``flow.WriteRound``), not by waking each connection's task. These tests check that the
round is used and that it changes nothing a client can see: every event once, in order,
after its ``subscribed`` frame, with replies (pongs, acks) still answered, with and
without permessage-deflate (a per-connection compressor: no shared frame bytes).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import uuid4

import pytest
import uvicorn
import websockets
from django.core.asgi import get_asgi_application

import rtdelivery.asgi
from rtdelivery import apublish
from rtdelivery.conf import get_settings
from rtdelivery.core.cursors import Cursor
from rtdelivery.hub import get_hub
from rtdelivery.transports import websocket
from tests.conftest import find_free_port
from tests.transports.conftest import WAIT, wait_until

TOPICS = {"wr.*": {"subscribe": "anyone", "publish": "anyone", "history_size": 1000}}
SOCKETS = 12
EVENTS = 300
ORIGIN: Any = "http://127.0.0.1"


@pytest.fixture
async def server(rt: Callable[..., dict[str, Any]], settings: Any) -> AsyncIterator[str]:
    """Uvicorn (its default WebSocket protocol) serving the project in this loop."""
    rt(TOPICS=TOPICS, QUEUE_SIZE=2000)
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    app = rtdelivery.asgi.rtdelivery_application(get_asgi_application())
    port = find_free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", ws="auto"
    )
    srv = uvicorn.Server(config)
    serving = asyncio.ensure_future(srv.serve())
    async with asyncio.timeout(WAIT):
        while not srv.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.01)
    try:
        yield f"ws://127.0.0.1:{port}/rt/ws"
    finally:
        srv.should_exit = True
        await asyncio.wait_for(serving, WAIT)


@pytest.fixture
def flushed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Events delivered by the write round, per flush that wrote any."""
    counts: list[int] = []
    flush = websocket.Connection.flush_round

    def counting(self: websocket.Connection) -> int:
        n = flush(self)
        if n:
            counts.append(n)
        return n

    monkeypatch.setattr(websocket.Connection, "flush_round", counting)
    return counts


async def _request(ws: Any, frame: dict[str, Any], frames: list[dict[str, Any]]) -> dict[str, Any]:
    """Send ``frame`` with a ref; return the answer with that ref (events seen meanwhile
    go to ``frames``)."""
    ref = uuid4().hex
    await ws.send(json.dumps({**frame, "ref": ref}))
    async with asyncio.timeout(WAIT):
        while True:
            answer = json.loads(await ws.recv())
            if answer.get("ref") == ref:
                return answer
            frames.append(answer)


async def _client(
    url: str, topic: str, compression: str | None, pings: asyncio.Event
) -> tuple[list[int], int]:
    """Subscribe, ping while events arrive, return the seqs received and pongs answered."""
    frames: list[dict[str, Any]] = []
    async with websockets.connect(url, compression=compression, max_size=None, origin=ORIGIN) as ws:
        answer = await _request(ws, {"op": "subscribe", "topic": topic}, frames)
        assert answer["op"] == "subscribed", answer
        assert frames == []  # nothing of the topic before its `subscribed` frame
        pongs = 0
        await pings.wait()
        while sum(1 for f in frames if f.get("op") == "event") < EVENTS:
            answer = await _request(ws, {"op": "ping"}, frames)
            assert answer["op"] == "pong", answer
            pongs += 1
            if pongs >= 5:  # enough interleaving; read the rest
                async with asyncio.timeout(WAIT):
                    while sum(1 for f in frames if f.get("op") == "event") < EVENTS:
                        frames.append(json.loads(await ws.recv()))
    assert {f["op"] for f in frames} <= {"event"}, frames
    return [f["seq"] for f in frames], pongs


@pytest.mark.parametrize("compression", [None, "deflate"], ids=["plain", "deflate"])
async def test_every_event_once_in_order_with_replies_interleaved(
    server: str, flushed: list[int], compression: str | None
) -> None:
    topic = f"wr.{uuid4().hex[:8]}"
    pings = asyncio.Event()
    clients = [
        asyncio.ensure_future(_client(server, topic, compression, pings)) for _ in range(SOCKETS)
    ]
    # Every socket subscribed (each waits for its `subscribed` frame) before publishing.
    await wait_until(
        lambda: get_hub().local_subscribers(topic) == SOCKETS, WAIT, "every socket subscribed"
    )
    pings.set()
    for i in range(EVENTS):
        await apublish(topic, {"i": i})
        if i % 50 == 49:
            await asyncio.sleep(0.005)  # let replies and writes interleave with publishing
    results = await asyncio.wait_for(asyncio.gather(*clients), WAIT * 2)
    for seqs, pongs in results:
        assert seqs == list(range(1, EVENTS + 1))
        assert pongs >= 1
    # The round wrote events (it would be 0 if every event woke the writer task instead).
    assert sum(flushed) > EVENTS


async def test_a_late_subscriber_gets_subscribed_first_then_each_event_once(
    server: str, flushed: list[int]
) -> None:
    topic = f"wr.{uuid4().hex[:8]}"
    frames: list[dict[str, Any]] = []
    async with websockets.connect(server, compression=None, origin=ORIGIN) as early:
        await _request(early, {"op": "subscribe", "topic": topic}, frames)
        publishing = asyncio.ensure_future(_publish_slowly(topic, 200))
        async with websockets.connect(server, compression=None, origin=ORIGIN) as late:
            late_frames: list[dict[str, Any]] = []
            answer = await _request(late, {"op": "subscribe", "topic": topic}, late_frames)
            assert answer["op"] == "subscribed"
            assert late_frames == []
            await asyncio.wait_for(publishing, WAIT)
            start = _seq_of(answer["cursor"], topic)
            async with asyncio.timeout(WAIT):
                while len(late_frames) < 200 - start:
                    late_frames.append(json.loads(await late.recv()))
            assert [f["seq"] for f in late_frames] == list(range(start + 1, 201))
        async with asyncio.timeout(WAIT):
            while len(frames) < 200:
                frames.append(json.loads(await early.recv()))
        assert [f["seq"] for f in frames] == list(range(1, 201))
    assert sum(flushed) > 0


async def _publish_slowly(topic: str, n: int) -> None:
    for i in range(n):
        await apublish(topic, {"i": i})
        if i % 10 == 9:
            await asyncio.sleep(0.001)


def _seq_of(cursor: str, topic: str) -> int:
    position = Cursor.decode(cursor, get_settings().cursor_key).get(topic)
    assert position is not None
    return position.seq
