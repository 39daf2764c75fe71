"""Per-client limits over real servers (Uvicorn and Daphne): as documented, per process.

Two servers on one Redis with ``MAX_CONNECTIONS_PER_IP=2`` and a small publish bucket. Every
client is on 127.0.0.1: a third stream or socket to one process is refused (``429
too_many_connections``, WebSocket close ``4029`` with its reason), while the other process,
counting its own, still accepts.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from rtdelivery.transports.websocket import CLOSE_TOO_MANY_CONNECTIONS
from tests.e2e.clients import http_client, ws_connect
from tests.e2e.conftest import SERVER_KINDS, Servers, running_servers

LIMITS = {
    "RTD_MAX_CONNECTIONS_PER_IP": "2",
    "RTD_PUBLISH_RATE": "0.2",
}
WAIT = 10.0


@pytest.fixture(scope="module", params=SERVER_KINDS)
def servers(request: pytest.FixtureRequest, redis_url: str, e2e_log_dir: Path) -> Iterator[Servers]:
    with running_servers(request.param, redis_url, e2e_log_dir, count=2, extra_env=LIMITS) as group:
        yield group


@contextlib.asynccontextmanager
async def sse(http: httpx.AsyncClient, base_url: str, topic: str) -> AsyncIterator[httpx.Response]:
    async with http.stream("GET", f"{base_url}/rt/sse", params={"topic": topic}) as response:
        if response.status_code != 200:
            await response.aread()
        yield response


async def test_connections_per_address_per_process(servers: Servers) -> None:
    topic = f"e2e.{uuid4().hex[:10]}"
    a, b = servers.a.base_url, servers.b.base_url
    async with http_client() as http, contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(sse(http, a, topic))
        assert first.status_code == 200
        socket = await ws_connect(a)
        stack.push_async_callback(socket.close)
        # The third connection to this process, on each transport.
        async with sse(http, a, topic) as refused:
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "5"
            assert json.loads(refused.content)["error"]["code"] == "too_many_connections"
        held = await http.get(f"{a}/rt/longpoll", params={"topic": topic, "timeout": "5"})
        assert held.status_code == 429, held.text
        third = await ws_connect(a)
        frame = json.loads(await third.recv())
        assert frame["op"] == "error", frame
        assert frame["code"] == "too_many_connections", frame
        assert frame["retry_after"] == 5, frame
        with pytest.raises(ConnectionClosed) as closed:
            await third.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == CLOSE_TOO_MANY_CONNECTIONS
        if servers.kind == "uvicorn":  # Daphne sends no close reason at all
            assert closed.value.rcvd.reason == "too_many_connections"
        # The other process counts its own connections (no Redis round trip per request).
        other = await stack.enter_async_context(sse(http, b, topic))
        assert other.status_code == 200


async def test_publish_rate_per_address(servers: Servers) -> None:
    topic = f"e2e.{uuid4().hex[:10]}"
    a = servers.a.base_url

    async def publish(headers: dict[str, str]) -> httpx.Response:
        return await http.post(f"{a}/rt/publish", json={"topic": topic, "data": 1}, headers=headers)

    # Anonymous clients publish with the CSRF pair (cookie + header); the bucket is per address.
    csrf = "x" * 32
    client_headers = {"Cookie": f"csrftoken={csrf}", "X-CSRFToken": csrf, "Origin": a}
    async with http_client() as http:
        answers = [await publish(client_headers) for _ in range(21)]  # PUBLISH_BURST is 20
        assert [r.status_code for r in answers[:20]] == [201] * 20, answers[0].text
        assert answers[20].status_code == 429
        assert answers[20].json()["error"]["code"] == "rate_limited"
        assert int(answers[20].headers["retry-after"]) >= 1
        # A server's publish token is not limited.
        token = await publish({"Authorization": f"Bearer {servers.token}"})
        assert token.status_code == 201, token.text
