"""Access ends across processes: logging out on server A ends the same session's WebSocket
and SSE stream on server B (through the backplane), with the documented reason, while
another user's socket on B stays. And a connection token expiring mid-stream on B: the
client fetches a fresh one and resumes from the cursor with no loss.

Two real servers (Uvicorn, then Daphne) share Redis and a migrated SQLite file made by
tests/e2e/access_setup.py (users, sessions, tokens).
"""

# ruff: noqa: F811  (the access_db fixture imported from test_access_matrix is used by name)
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from django.http import HttpRequest
from django.middleware.csrf import get_token
from django.test import override_settings
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.e2e.clients import SSEParser, http_client, ws_connect
from tests.e2e.conftest import SERVER_KINDS, Servers, running_servers
from tests.e2e.test_access_matrix import access_db  # noqa: F401  (a fixture)

#: Upper bound for one step (seconds); a healthy server answers in milliseconds.
WAIT = 10.0
#: The servers' SECRET_KEY (demo_site/settings.py), to mint short-lived tokens here.
SERVERS_SECRET_KEY = "demo-only-insecure-secret-key-change-me"
TTL = 2.0


@pytest.fixture(scope="module", params=SERVER_KINDS)
def pair(
    request: pytest.FixtureRequest,
    redis_url: str,
    e2e_log_dir: Path,
    access_db: tuple[Path, dict[str, Any]],
) -> Iterator[tuple[Servers, dict[str, Any]]]:
    """Two servers of each kind on the shared database."""
    path, data = access_db
    with running_servers(
        request.param, redis_url, e2e_log_dir, count=2, extra_env={"RTD_E2E_DB": str(path)}
    ) as group:
        yield group, data


@dataclass
class _User:
    pk: str
    is_authenticated: bool = True


def mint(pk: str, ttl: float) -> str:
    from rtdelivery.tokens import connection_token

    with override_settings(SECRET_KEY=SERVERS_SECRET_KEY):
        return connection_token(_User(pk), ttl=ttl)


async def ws_until(ws: ClientConnection, op: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(WAIT + TTL):
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("op") == op:
                return seen, frame
            if frame.get("op") == "event":  # not presence frames
                seen.append(frame)


async def ws_subscribe(ws: ClientConnection, topic: str, since: str | None = None) -> None:
    frame: dict[str, Any] = {"op": "subscribe", "topic": topic, "ref": "s"}
    if since is not None:
        frame["since"] = since
    await ws.send(json.dumps(frame))
    _, reply = await ws_until(ws, "subscribed")
    assert reply["topic"] == topic


async def ws_close_code(ws: ClientConnection) -> int:
    async with asyncio.timeout(WAIT):
        while True:
            try:
                await ws.recv()
            except ConnectionClosed:
                break
    assert ws.close_code is not None
    return ws.close_code


class Stream:
    """An SSE response read message by message."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.parser = SSEParser()
        self.pending: list[dict[str, str]] = []
        self.chunks: AsyncIterator[bytes] = response.aiter_raw()
        self.ended = False

    async def next(self) -> dict[str, Any]:
        async with asyncio.timeout(WAIT + TTL):
            while not self.pending:
                try:
                    chunk = await anext(self.chunks)
                except StopAsyncIteration:
                    self.ended = True
                    raise
                self.pending.extend(self.parser.feed(chunk))
        message = self.pending.pop(0)
        return {**message, "json": json.loads(message["data"])}

    async def until(self, event: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        seen = []
        while True:
            message = await self.next()
            if message["event"] == event:
                return seen, message
            if message["event"] == "message":  # not rt.presence
                seen.append(message)


async def publish(http: httpx.AsyncClient, servers: Servers, topic: str, data: Any) -> None:
    response = await http.post(
        f"{servers.a.base_url}/rt/publish",
        json={"topic": topic, "data": data},
        headers={"authorization": f"Bearer {servers.token}"},
    )
    assert response.status_code == 201, response.text


async def test_logout_on_one_process_ends_the_sessions_socket_and_stream_on_another(
    pair: tuple[Servers, dict[str, Any]],
) -> None:
    servers, data = pair
    a, b = servers.a, servers.b
    cookie_name = data["session_cookie_name"]
    # Each server kind has its own module-scoped pair but the same database: a session
    # logged out by the first kind is gone for the second, so each kind logs out its own.
    user = "owner" if servers.kind == SERVER_KINDS[0] else "staff"
    session = data["session"][user]
    topic = f"acl.user.{data['pk']['owner']}"
    request = HttpRequest()
    csrf_token = get_token(request)
    cookies = f"{cookie_name}={session}; csrftoken={request.META['CSRF_COOKIE']}"

    ws = await ws_connect(b.base_url, additional_headers={"cookie": cookies})
    bystander = await ws_connect(
        b.base_url,
        additional_headers={"cookie": f"{cookie_name}={data['session']['other']}"},
    )
    async with http_client() as http:
        try:
            await ws_subscribe(ws, topic)
            await ws_subscribe(bystander, "acl.public.room")
            url = f"{b.base_url}/rt/sse?{urlencode({'topic': topic})}"
            async with http.stream("GET", url, headers={"cookie": cookies}) as response:
                assert response.status_code == 200
                stream = Stream(response)
                assert (await stream.next())["event"] == "rt.open"
                await publish(http, servers, topic, "before")

                # Django's LogoutView on server A (POST, with the CSRF token).
                logout = await http.post(
                    f"{a.base_url}/logout/",
                    headers={"cookie": cookies, "x-csrftoken": csrf_token, "referer": a.base_url},
                )
                assert logout.status_code in (200, 302), logout.status_code

                events, error = await ws_until(ws, "error")
                assert [e["data"] for e in events] == ["before"]
                assert error["code"] == "logged_out"
                assert error["cursor"]
                assert await ws_close_code(ws) == 4004
                events, close = await stream.until("rt.close")
                assert [e["json"]["data"] for e in events] == ["before"]
                assert close["json"]["reason"] == "logged_out"
                with pytest.raises(StopAsyncIteration):
                    await stream.next()

            # The other user's socket on B still receives.
            await publish(http, servers, "acl.public.room", "still")
            _, event = await ws_until(bystander, "event")
            assert event["data"] == "still"
            # And the logged-out session is anonymous now: refused on the private topic.
            again = await ws_connect(b.base_url, additional_headers={"cookie": cookies})
            await again.send(json.dumps({"op": "subscribe", "topic": topic, "ref": 1}))
            _, refused = await ws_until(again, "error")
            assert refused["code"] == "forbidden"
            await again.close()
        finally:
            await ws.close()
            await bystander.close()


async def test_token_expiry_mid_stream_then_a_fresh_token_resumes_with_no_loss(
    pair: tuple[Servers, dict[str, Any]],
) -> None:
    servers, data = pair
    b = servers.b
    pk = data["pk"]["owner"]
    topic = f"acl.user.{pk}"
    async with http_client() as http:
        # WebSocket: an error frame with the cursor, then close 4003.
        ws = await ws_connect(b.base_url, path="/rt/ws?access_token=" + mint(pk, TTL))
        await ws_subscribe(ws, topic)
        url = f"{b.base_url}/rt/sse?{urlencode({'topic': topic, 'access_token': mint(pk, TTL)})}"
        async with http.stream("GET", url) as response:
            assert response.status_code == 200
            stream = Stream(response)
            assert (await stream.next())["event"] == "rt.open"
            started = time.monotonic()
            await publish(http, servers, topic, 1)
            events, error = await ws_until(ws, "error")
            assert error["code"] == "token_expired"
            assert [e["data"] for e in events] == [1]
            assert await ws_close_code(ws) == 4003
            events, close = await stream.until("rt.close")
            assert close["json"]["reason"] == "token_expired"
            assert [e["json"]["data"] for e in events] == [1]
            assert time.monotonic() - started < TTL + WAIT
        # Published while the clients fetch fresh tokens: not lost.
        await publish(http, servers, topic, 2)
        await publish(http, servers, topic, 3)
        ws = await ws_connect(b.base_url, path="/rt/ws?access_token=" + mint(pk, 60))
        try:
            await ws_subscribe(ws, topic, since=error["cursor"])
            got = [(await ws_until(ws, "event"))[1]["data"] for _ in range(2)]
            assert got == [2, 3]
        finally:
            await ws.close()
        params = {"topic": topic, "access_token": mint(pk, 60), "cursor": close["json"]["cursor"]}
        async with http.stream("GET", f"{b.base_url}/rt/sse?{urlencode(params)}") as response:
            stream = Stream(response)
            assert (await stream.next())["event"] == "rt.open"
            got = [(await stream.until("message"))[1]["json"]["data"] for _ in range(2)]
            assert got == [2, 3]
