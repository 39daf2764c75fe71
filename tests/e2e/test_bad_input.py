"""Bad input over a real server: clear errors, documented close codes, never a crash.

The server runs with small limits (frame rate, request and frame sizes) from the
environment. The last test checks that after all of this the same server still delivers
to a normal subscriber and logged no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rtdelivery.transports.websocket import fallback_close_code
from tests.e2e.clients import http_client, http_publish, make_client, seqs, ws_connect
from tests.e2e.conftest import SERVER_KINDS, Servers, running_servers

MAX_BYTES = 16 * 1024
LIMITS = {
    "RTD_WS_RATE": "20",
    "RTD_WS_BURST": "20",
    "RTD_MAX_REQUEST_BYTES": str(MAX_BYTES),
    "RTD_WS_MAX_MESSAGE_BYTES": str(MAX_BYTES),
}
WAIT = 10.0
HTTP_ENDPOINTS = ("poll", "longpoll", "sse", "history")


def close_code(server: Servers, code: int) -> int:
    """The close code a client sees: Daphne only lets applications send 1000 and 3000-4999."""
    return fallback_close_code(code) if server.kind == "daphne" else code


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server(request: pytest.FixtureRequest, redis_url: str, e2e_log_dir: Path) -> Iterator[Servers]:
    with running_servers(request.param, redis_url, e2e_log_dir, count=1, extra_env=LIMITS) as group:
        yield group


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) - {"topic"} == {"code", "message"}, body
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    error: dict[str, Any] = body["error"]
    return error


async def ws_reply(ws: Any, payload: str | bytes) -> dict[str, Any]:
    await ws.send(payload)
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    return reply


# -- HTTP ---------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", HTTP_ENDPOINTS)
@pytest.mark.parametrize(
    "query",
    [
        {"topic": "bad topic!"},
        {"topic": ""},
        {"topic": "a" * 81},
        {"topic": "a..b"},
        {"topic": "e2e.\u00e9"},
        {},
    ],
)
async def test_invalid_topic(server: Servers, endpoint: str, query: dict[str, str]) -> None:
    async with http_client() as http:
        response = await http.get(f"{server.a.base_url}/rt/{endpoint}", params=query)
    assert_error(response, 400, "invalid_topic")


@pytest.mark.parametrize("endpoint", HTTP_ENDPOINTS)
async def test_garbage_and_tampered_cursor(server: Servers, endpoint: str) -> None:
    url = f"{server.a.base_url}/rt/{endpoint}"
    async with http_client() as http:
        good = (await http.get(f"{server.a.base_url}/rt/poll", params={"topic": "e2e.x"})).json()
        tampered = good["cursor"][:-3] + ("AAA" if good["cursor"][-3:] != "AAA" else "BBB")
        for cursor in ("garbage", "!!!", "A" * 9000, tampered):
            response = await http.get(url, params={"topic": "e2e.x", "cursor": cursor})
            assert_error(response, 400, "invalid_cursor")


async def test_sse_garbage_last_event_id(server: Servers) -> None:
    async with http_client() as http:
        response = await http.get(
            f"{server.a.base_url}/rt/sse",
            params={"topic": "e2e.x"},
            headers={"last-event-id": "not-a-cursor"},
        )
    assert_error(response, 400, "invalid_cursor")


@pytest.mark.parametrize(
    ("endpoint", "query"),
    [
        ("longpoll", {"topic": "e2e.x", "timeout": "soon"}),
        ("longpoll", {"topic": "e2e.x", "timeout": "-1"}),
        ("longpoll", {"topic": "e2e.x", "timeout": "nan"}),
        ("history", {"topic": "e2e.x", "limit": "0"}),
        ("history", {"topic": "e2e.x", "limit": "many"}),
        # Unicode and oversized digits: 400, never 500 (issue 9, case 8).
        ("history", {"topic": "e2e.x", "limit": "\u00b2"}),
        ("history", {"topic": "e2e.x", "limit": "9" * 5000}),
        ("longpoll", {"topic": "e2e.x", "timeout": "\u0663"}),
        ("longpoll", {"topic": "e2e.x", "timeout": "1e400"}),
        ("history", {"topic": ["e2e.x", "e2e.y"]}),
        ("poll", {"topic": "e2e.x", "cursor": ["a", "b"]}),
        ("poll", {"topic": [f"e2e.t{i}" for i in range(51)]}),
    ],
)
async def test_bad_parameters(server: Servers, endpoint: str, query: dict[str, Any]) -> None:
    async with http_client() as http:
        response = await http.get(f"{server.a.base_url}/rt/{endpoint}", params=query)
    assert_error(response, 400)


async def test_non_ascii_query_bytes(server: Servers) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.a.port)
    try:
        writer.write(
            b"GET /rt/poll?topic=e2e.\xff HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), WAIT)
    finally:
        writer.close()
        await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


@pytest.mark.parametrize("endpoint", HTTP_ENDPOINTS)
async def test_policy_refusal_is_403(server: Servers, endpoint: str) -> None:
    async with http_client() as http:
        response = await http.get(
            f"{server.a.base_url}/rt/{endpoint}", params={"topic": "e2edeny.x"}
        )
    assert_error(response, 403, "forbidden")


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b"\xff\xfe", "application/json", 400, "invalid_json"),
        (b"[1, 2]", "application/json", 400, "invalid_json"),
        (b'{"topic": "e2e.x"}', "application/json", 400, "invalid_event"),
        (b'{"topic": "e2e.x", "data": 1, "extra": 1}', "application/json", 400, "invalid_event"),
        (b'{"topic": "bad topic", "data": 1}', "application/json", 400, "invalid_topic"),
        (b'{"topic": "e2e.x", "data": 1, "type": 5}', "application/json", 400, None),
        (b'{"topic": "e2e.x", "data": 1}', "text/plain", 400, "invalid_json"),
        (b"x" * (MAX_BYTES + 1), "application/json", 413, "too_large"),
    ],
)
async def test_publish_bad_body(
    server: Servers, content: bytes, content_type: str, status: int, code: str | None
) -> None:
    async with http_client() as http:
        response = await http.post(
            f"{server.a.base_url}/rt/publish",
            content=content,
            headers={"authorization": f"Bearer {server.token}", "content-type": content_type},
        )
    assert_error(response, status, code)


async def test_publish_oversized_chunked_body(server: Servers) -> None:
    async def body() -> Any:
        for _ in range(4):
            yield b"x" * (MAX_BYTES // 2)

    async with http_client() as http:
        response = await http.post(
            f"{server.a.base_url}/rt/publish",
            content=body(),
            headers={"authorization": f"Bearer {server.token}", "content-type": "application/json"},
        )
    assert_error(response, 413, "too_large")


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"authorization": "Bearer wrong-token-0123456789"}, "bad_token"),
        ({"authorization": "Bearer"}, "bad_token"),
        ({"authorization": "Bearer caf\u00e9-token-0123456789".encode("latin-1")}, "bad_token"),
        # Not a Bearer token: the session + CSRF rules apply.
        ({"authorization": "Basic dXNlcjpwYXNz"}, "csrf_failed"),
        ({}, "csrf_failed"),
    ],
)
async def test_publish_refused(server: Servers, headers: dict[str, Any], code: str) -> None:
    async with http_client() as http:
        response = await http.post(
            f"{server.a.base_url}/rt/publish", json={"topic": "e2e.x", "data": 1}, headers=headers
        )
    assert_error(response, 403, code)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "poll", "GET"),
        ("PUT", "longpoll", "GET"),
        ("DELETE", "sse", "GET"),
        ("POST", "history", "GET"),
        ("GET", "publish", "POST"),
    ],
)
async def test_wrong_method_is_405_with_allow(
    server: Servers, method: str, path: str, allow: str
) -> None:
    async with http_client() as http:
        response = await http.request(method, f"{server.a.base_url}/rt/{path}?topic=e2e.x")
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allow


@pytest.mark.parametrize("path", ["/rt/nope", "/rt/", "/rt/poll/", "/rt/ws/"])
async def test_unknown_path_is_404_json(server: Servers, path: str) -> None:
    async with http_client() as http:
        response = await http.get(f"{server.a.base_url}{path}")
    assert_error(response, 404, "not_found")


async def test_plain_http_to_the_websocket_route_is_426_json(server: Servers) -> None:
    async with http_client() as http:
        response = await http.get(f"{server.a.base_url}/rt/ws")
    assert_error(response, 426, "upgrade_required")
    assert response.headers["upgrade"] == "websocket"


# -- WebSocket ----------------------------------------------------------------------------


async def test_ws_malformed_frames_get_error_frames_and_socket_stays_usable(
    server: Servers,
) -> None:
    base = server.a.base_url
    topic = f"e2e.t{uuid4().hex[:12]}"
    async with http_client() as http:
        ws = await ws_connect(base)
        try:
            cases: list[tuple[str | bytes, str, Any]] = [
                ("{not json", "invalid_json", None),
                ("[1, 2, 3]", "invalid_frame", None),
                ('"just a string"', "invalid_frame", None),
                (b"\x00\x01binary", "invalid_frame", None),
                ('{"ref": "r1"}', "unknown_op", "r1"),
                ('{"op": "launch", "ref": 7}', "unknown_op", 7),
                ('{"op": 12, "ref": "r2"}', "unknown_op", "r2"),
                ('{"op": "subscribe", "topic": "bad topic", "ref": "r3"}', "invalid_topic", "r3"),
                ('{"op": "subscribe", "ref": "r4"}', "invalid_topic", "r4"),
                ('{"op": "subscribe", "topic": "e2e.x", "since": "junk", "ref": "r5"}', "invalid_cursor", "r5"),
                ('{"op": "subscribe", "topic": "e2e.x", "since": 42, "ref": "r5b"}', None, "r5b"),
                ('{"op": "subscribe", "topic": "e2edeny.x", "ref": "r6"}', "forbidden", "r6"),
                ('{"op": "publish", "topic": "e2e.x", "ref": "r7"}', "invalid_event", "r7"),
                ('{"op": "publish", "topic": "e2edeny.x", "data": 1, "ref": "r8"}', "forbidden", "r8"),
                ('{"op": "publish", "topic": "e2e.x", "data": 1, "type": {}, "ref": "r9"}', None, "r9"),
                ('{"op": "unsubscribe", "topic": "e2e.never", "ref": "r10"}', "not_subscribed", "r10"),
                ('{"op": "presence", "topic": "e2e.x", "ref": "r11"}', None, "r11"),
            ]  # fmt: skip
            for payload, code, ref in cases:
                reply = await ws_reply(ws, payload)
                assert reply["op"] == "error", (payload, reply)
                assert reply["message"], reply
                if code is not None:
                    assert reply["code"] == code, (payload, reply)
                if ref is None:
                    assert "ref" not in reply, reply
                else:
                    assert reply["ref"] == ref, reply

            # Still usable: ping, subscribe, receive a delivery.
            assert await ws_reply(ws, '{"op": "ping", "ref": "p"}') == {"op": "pong", "ref": "p"}
            subscribed = await ws_reply(ws, json.dumps({"op": "subscribe", "topic": topic}))
            assert subscribed["op"] == "subscribed"
            assert subscribed["recovered"] is True
            again = await ws_reply(ws, json.dumps({"op": "subscribe", "topic": topic, "ref": 1}))
            assert again["op"] == "error"
            assert again["code"] == "already_subscribed"
            event = await http_publish(http, base, server.token, topic, {"ok": True})
            frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
            assert frame["op"] == "event"
            assert frame["id"] == event["id"]
        finally:
            await ws.close()


async def test_ws_oversized_frame_closes_1009(server: Servers) -> None:
    ws = await ws_connect(server.a.base_url, max_size=None)
    await ws.send(json.dumps({"op": "ping", "pad": "x" * (MAX_BYTES + 10)}))
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), WAIT)
    assert ws.close_code == close_code(server, 1009)


async def test_ws_flood_closes_1008(server: Servers) -> None:
    ws = await ws_connect(server.a.base_url)
    with contextlib.suppress(ConnectionClosed):  # may close while we are still sending
        for _ in range(100):
            await ws.send('{"op": "ping"}')
    replies = []
    with contextlib.suppress(ConnectionClosed):
        for _ in range(101):
            replies.append(json.loads(await asyncio.wait_for(ws.recv(), WAIT)))
    assert ws.close_code == close_code(server, 1008)
    # The burst (20) was served before the close.
    assert 1 <= len(replies) < 100
    assert all(r == {"op": "pong"} for r in replies)


@pytest.mark.parametrize(
    ("origin", "path"),
    [
        (None, "/rt/ws"),
        ("http://evil.example", "/rt/ws"),
        ("null", "/rt/ws"),
        ("http://127.0.0.1.evil.example", "/rt/ws"),
        ("same", "/rt/wsx"),
        ("same", "/elsewhere"),
    ],
)
async def test_ws_refused_handshakes(server: Servers, origin: str | None, path: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(server.a.base_url, origin=origin, path=path)
    assert refused.value.response.status_code == 403


# -- and the server is fine ---------------------------------------------------------------


@pytest.mark.parametrize("transport", ["poll", "longpoll", "sse", "ws"])
async def test_server_still_delivers_after_all_that(server: Servers, transport: str) -> None:
    topic = f"e2e.t{uuid4().hex[:12]}"
    async with http_client() as http, make_client(transport, server.a.base_url, topic) as sub:
        for i in range(3):
            await http_publish(http, server.a.base_url, server.token, topic, {"i": i})
        events = await sub.wait_total(3, WAIT)
    assert seqs(events) == [1, 2, 3]
    assert server.a.process.poll() is None
    assert "Traceback" not in server.a.log(), server.a.log_tail(80)
