"""A long-poll client's presence, seen by a WebSocket client on another server process.

Two real servers (Daphne or Uvicorn) share Redis. A WebSocket on B subscribes to a presence
topic; a long-poll client with ``client=<id>`` asks A. B's socket gets the polling client's
``join``, a snapshot on either server counts it, further long polls announce nothing, and
once the client stops asking, the ``leave`` reaches B within about ``PRESENCE_POLL_TTL``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.e2e.clients import http_client, ws_connect
from tests.e2e.conftest import SERVER_KINDS, Servers, running_servers

WAIT = 20.0
TTL = 1  # PRESENCE_POLL_TTL of these servers (seconds)


@pytest.fixture(scope="module", params=SERVER_KINDS)
def pair(request: pytest.FixtureRequest, redis_url: str, e2e_log_dir: Path) -> Iterator[Servers]:
    env = {"RTD_PRESENCE_POLL_TTL": str(TTL)}
    with running_servers(request.param, redis_url, e2e_log_dir, extra_env=env) as group:
        yield group


async def next_presence(ws: Any, deadline: float) -> dict[str, Any]:
    """The next presence change frame (snapshots and other frames are skipped)."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if frame.get("op") == "presence" and "action" in frame:
            return dict(frame)


async def test_long_poll_client_joins_and_leaves_for_a_websocket_on_another_process(
    pair: Servers,
) -> None:
    topic = f"e2epres.p{uuid4().hex[:10]}"
    client = uuid4().hex
    deadline = time.monotonic() + WAIT
    ws = await ws_connect(pair.b.base_url)
    try:
        await ws.send(json.dumps({"op": "subscribe", "topic": topic, "ref": 1}))
        own = await next_presence(ws, deadline)  # the socket's own join
        assert own["action"] == "join"
        async with http_client() as http:
            url = f"{pair.a.base_url}/rt/longpoll"
            params = {"topic": topic, "client": client, "timeout": "0"}
            answer = await http.get(url, params=params)
            assert answer.status_code == 200, answer.text
            join = await next_presence(ws, deadline)
            assert (join["action"], join["topic"]) == ("join", topic)
            assert join["connection"].startswith("c.")
            assert join["connection"] != own["connection"]
            assert join["user"] == {"id": None, "name": None}
            for server in (pair.a, pair.b):
                snapshot = await http.get(f"{server.base_url}/rt/presence", params={"topic": topic})
                assert snapshot.json()["count"] == 2, snapshot.text

            # Asking again (through B this time) keeps it present without a new join.
            last = time.monotonic()
            for base in (pair.b.base_url, pair.a.base_url):
                again = await http.get(f"{base}/rt/longpoll", params=params)
                assert again.status_code == 200, again.text
                last = time.monotonic()
            leave = await next_presence(ws, deadline)
            left = time.monotonic()
            assert (leave["action"], leave["connection"]) == ("leave", join["connection"])
            assert left - last >= TTL * 0.9
            snapshot = await http.get(f"{pair.b.base_url}/rt/presence", params={"topic": topic})
            assert snapshot.json()["count"] == 1
    finally:
        await ws.close()
