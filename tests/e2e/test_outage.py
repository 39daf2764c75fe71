"""Redis down on every transport, against real Daphne and Uvicorn processes.

Each test starts its own redis-server on a free loopback port (stopping it harms nobody)
and two servers of one kind on it: the subscribers are on B, publishes go through A, so
recovery crosses the backplane. While a WebSocket and an SSE stream are open, Redis is
stopped (SIGTERM to its PID). Then every HTTP endpoint answers ``503 unavailable`` with
``Retry-After`` and nothing about Redis in the body; a new WebSocket subscribe gets the
``unavailable`` error frame and close 1013 (4013 under Daphne, which refuses 1013); a
publish on the open socket gets the error frame and the socket stays usable; each server
logs one WARNING for the outage and no traceback. Redis comes back empty on the same
port and, without restarting the servers, publishing and delivery work again: the open
WebSocket and SSE stream get every acknowledged event exactly once, a resume from a
pre-outage cursor says ``recovered: false`` (its epoch is gone), and each server logs
the end of the outage.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import find_free_port
from tests.e2e.clients import SSEClient, WSClient, http_client, ws_connect
from tests.e2e.conftest import SERVER_KINDS, Server, Servers, running_servers
from tests.history.conftest import RedisServer

#: Upper bound for one wait (seconds); a healthy run needs far less.
WAIT = 20.0
TOPIC = "e2e.x"
PRESENCE_TOPIC = "e2epres.x"
#: What a client is told, whatever failed (rtdelivery.core.errors.Unavailable.MESSAGE).
MESSAGE = "The realtime backend is unavailable; retry later."
#: The WebSocket close after a subscribe refused for an outage, per server kind.
CLOSE_UNAVAILABLE = {"uvicorn": 1013, "daphne": 4013}
#: Line prefixes of rtdelivery.outage in the server log (format from settings_e2e).
START = "WARNING rtdelivery.outage: Realtime backend (Redis) unavailable;"
END = "INFO rtdelivery.outage: Realtime backend (Redis) available again"


@pytest.fixture(params=SERVER_KINDS)
def outage_servers(
    request: pytest.FixtureRequest, e2e_log_dir: Path, tmp_path: Path
) -> Iterator[tuple[Servers, RedisServer]]:
    """Two servers of one kind on a private redis-server the test may stop and start."""
    redis = RedisServer(find_free_port(), tmp_path)
    redis.start()
    try:
        with running_servers(request.param, redis.url, e2e_log_dir) as servers:
            try:
                yield servers, redis
            finally:
                if redis.process is None:
                    redis.start()  # the servers' teardown deletes their keys
    finally:
        redis.stop()


async def eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Call ``check`` until it returns something truthy (the server has to notice)."""
    deadline = time.monotonic() + WAIT
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {WAIT}s waiting for {what}")
        await asyncio.sleep(0.1)  # polling a condition, bounded by the deadline


def url(server: Server, endpoint: str, **params: str) -> str:
    return f"{server.base_url}/rt/{endpoint}?{urlencode(params)}"


async def publish(http: httpx.AsyncClient, server: Server, token: str, data: Any) -> httpx.Response:
    return await http.post(
        f"{server.base_url}/rt/publish",
        json={"topic": TOPIC, "type": "message", "data": data},
        headers={"authorization": f"Bearer {token}"},
    )


async def publish_ok(http: httpx.AsyncClient, server: Server, token: str, data: Any) -> Any:
    response = await publish(http, server, token, data)
    assert response.status_code == 201, (response.status_code, response.text)
    return response.json()


async def poll(http: httpx.AsyncClient, server: Server, cursor: str | None = None) -> Any:
    params = {"topic": TOPIC, **({"cursor": cursor} if cursor else {})}
    response = await http.get(url(server, "poll", **params))
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


def assert_unavailable(response: httpx.Response, what: str, redis: RedisServer) -> None:
    """503 ``unavailable`` with ``Retry-After``; nothing about Redis in the answer."""
    described = f"{what}: {response.status_code} {response.headers} {response.text[:300]}"
    assert response.status_code == 503, described
    assert response.headers["content-type"].startswith("application/json"), described
    assert response.json() == {"error": {"code": "unavailable", "message": MESSAGE}}, described
    retry_after = response.headers.get("retry-after", "")
    assert retry_after.isdigit(), described
    assert 1 <= int(retry_after) <= 60, described
    for leak in (str(redis.port), "redis", "127.0.0.1", "Connection", "Error"):
        assert leak not in response.text, f"{what}: {leak!r} in {response.text!r}"


async def sse_status(http: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """Send an SSE request; read the body only if it is not a stream."""
    response = await http.send(request, stream=True)
    try:
        if response.status_code == 200:
            raise AssertionError(f"{request.url}: a stream started during the outage")
        await response.aread()
    finally:
        await response.aclose()
    return response


async def check_http_unavailable(
    http: httpx.AsyncClient, server: Server, token: str, cursor: str, redis: RedisServer
) -> None:
    """Every HTTP endpoint of ``server``, with and without a cursor."""
    gets = {
        "poll": url(server, "poll", topic=TOPIC),
        "poll since": url(server, "poll", topic=TOPIC, cursor=cursor),
        "longpoll": url(server, "longpoll", topic=TOPIC, timeout="5"),
        "longpoll since": url(server, "longpoll", topic=TOPIC, cursor=cursor, timeout="5"),
        "history": url(server, "history", topic=TOPIC),
        "history since": url(server, "history", topic=TOPIC, cursor=cursor),
        "presence": url(server, "presence", topic=PRESENCE_TOPIC),
    }
    for what, address in gets.items():
        assert_unavailable(await http.get(address), f"{server.kind} {what}", redis)
    sse = {"accept": "text/event-stream"}
    streams = {
        "sse": http.build_request("GET", url(server, "sse", topic=TOPIC), headers=sse),
        "sse since": http.build_request(
            "GET", url(server, "sse", topic=TOPIC), headers={**sse, "last-event-id": cursor}
        ),
        "sse with presence": http.build_request(
            "GET", url(server, "sse", topic=PRESENCE_TOPIC), headers=sse
        ),
    }
    for what, request in streams.items():
        assert_unavailable(await sse_status(http, request), f"{server.kind} {what}", redis)
    published = await publish(http, server, token, {"during": "outage"})
    assert_unavailable(published, f"{server.kind} publish", redis)


async def check_ws_subscribe_refused(server: Server, redis: RedisServer) -> None:
    """A new socket's subscribe: the error frame, then the documented close."""
    ws = await ws_connect(server.base_url)
    try:
        await ws.send(json.dumps({"op": "subscribe", "topic": TOPIC, "ref": "s1"}))
        text = await asyncio.wait_for(ws.recv(), WAIT)
        assert isinstance(text, str)
        frame = json.loads(text)
        assert frame == {
            "op": "error",
            "code": "unavailable",
            "message": MESSAGE,
            "retry_after": frame.get("retry_after"),
            "ref": "s1",
        }, frame
        assert isinstance(frame["retry_after"], int), frame
        assert frame["retry_after"] >= 1, frame
        assert str(redis.port) not in text
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), WAIT)
        assert ws.close_code == CLOSE_UNAVAILABLE[server.kind], (ws.close_code, ws.close_reason)
    finally:
        await ws.close()


def assert_quiet(server: Server) -> None:
    """No traceback and no ERROR line (e.g. django.request's one per 503 of a view)."""
    log = server.log()
    errors = [line for line in log.splitlines() if line.startswith("ERROR ")]
    assert "Traceback" not in log, server.log_tail(80)
    assert errors == [], server.log_tail(80)


def outage_log(server: Server) -> tuple[list[str], list[str]]:
    """rtdelivery.outage's WARNING and INFO lines in ``server``'s log."""
    lines = server.log().splitlines()
    warnings = [line for line in lines if line.startswith("WARNING rtdelivery.outage:")]
    infos = [line for line in lines if line.startswith("INFO rtdelivery.outage:")]
    return warnings, infos


async def test_redis_down_on_every_transport_and_back_without_restart(
    outage_servers: tuple[Servers, RedisServer],
) -> None:
    servers, redis = outage_servers
    a, b, token = servers.a, servers.b, servers.token
    async with (
        http_client(timeout=httpx.Timeout(WAIT)) as http,
        WSClient(b.base_url, [TOPIC]) as ws,
        SSEClient(b.base_url, [TOPIC]) as sse,
    ):
        assert isinstance(ws, WSClient)
        assert isinstance(sse, SSEClient)
        # 1. Redis up: both subscribers live on B, events published through A.
        before = [await publish_ok(http, a, token, {"before": i}) for i in range(3)]
        assert [e["seq"] for e in before] == [1, 2, 3]
        for client in (ws, sse):
            await client.wait_total(3, WAIT)
        old_cursor = (await poll(http, b))["cursor"]  # the live end, in the old epoch
        assert outage_log(a) == outage_log(b) == ([], [])

        # 2. Redis down.
        redis.stop()
        for server in (a, b):
            await check_http_unavailable(http, server, token, old_cursor, redis)
            await check_ws_subscribe_refused(server, redis)
        # The open socket: a publish gets the error frame with its ref; it stays open.
        reply = await ws.request(
            {"op": "publish", "topic": TOPIC, "type": "message", "data": {"during": "ws"}}
        )
        ref = reply.get("ref")
        assert reply == {
            "op": "error",
            "code": "unavailable",
            "message": MESSAGE,
            "retry_after": reply.get("retry_after"),
            "ref": ref,
        }, reply
        assert isinstance(ref, str), reply
        assert isinstance(reply["retry_after"], int), reply
        assert (await ws.request({"op": "ping"}))["op"] == "pong"
        assert (await ws.request({"op": "ping"}))["op"] == "pong"
        # Heartbeats keep the SSE stream going; nothing was delivered or announced.
        assert len(ws.events) == len(sse.events) == 3
        assert (ws.errors, ws.notices, ws.close_code, sse.notices) == ([], [], None, [])

        # 3. One WARNING per server for the whole outage; no traceback, no line per request.
        for server in (a, b):
            warnings, infos = outage_log(server)
            assert len(warnings) == 1, server.log_tail(60)
            assert warnings[0].startswith(START), server.log_tail(60)
            assert infos == [], server.log_tail(60)
            assert_quiet(server)

        # 4. Redis back on the same port, empty; the servers keep running.
        redis.start()

        async def publish_again() -> Any:
            response = await publish(http, a, token, {"after": 0})
            if response.status_code == 503:
                return None  # A has not noticed yet: retry, as Retry-After says
            assert response.status_code == 201, (response.status_code, response.text)
            return response.json()

        after = [await eventually(publish_again, "a publish through A to work again")]
        after += [await publish_ok(http, a, token, {"after": i}) for i in (1, 2)]
        # Redis came back empty: a new epoch, counting from 1 again.
        assert [e["seq"] for e in after] == [1, 2, 3]
        acked = [e["id"] for e in before + after]
        # Both subscribers, still on their first connection, get every acknowledged
        # event exactly once and in order: nothing acknowledged is missing.
        for client in (ws, sse):
            await client.wait_total(6, WAIT)
            assert [e["id"] for e in client.events] == acked, (client.transport, client.events)
            assert client.connections == 1
        assert (ws.close_code, ws.errors) == (None, [])
        assert not [n for n in sse.notices if n["event"] in ("eof", "rt.close")], sse.notices
        # Redis lost the old epoch's history, so the subscribers may be told (WebSocket:
        # `subscribed` with recovered false; SSE: `rt.reset`). Such a reset must not hide
        # anything either: resuming from its cursor gives every event of the new epoch.
        for notice in ws.notices + sse.notices:
            assert notice["event"] in ("subscribed", "rt.reset"), notice
            assert notice["topic"] == TOPIC, notice
            assert notice.get("recovered", False) is False, notice
            replay = await poll(http, b, notice["cursor"])
            assert replay["recovered"] is True, (notice, replay)
            assert [e["id"] for e in replay["events"]] == [e["id"] for e in after], replay
        assert ws.cursor == sse.last_event_id == after[-1]["id"]

        # A resume from before the outage is not continued silently: its epoch is gone, so
        # it is told, and gets the new epoch from its start.
        resumed = await poll(http, b, old_cursor)
        assert (resumed["recovered"], resumed["lost"]) == (False, [TOPIC])
        assert [e["id"] for e in resumed["events"]] == [e["id"] for e in after]
        # From where the subscribers are, it is continued.
        current = await poll(http, b, sse.last_event_id)
        assert (current["recovered"], current["lost"], current["events"]) == (True, [], [])
        # The open socket publishes again; a new one subscribes again; presence answers.
        ack = await ws.publish(TOPIC, {"after": "ws"})
        assert ack["seq"] == 4
        await ws.wait_total(7, WAIT)
        async with WSClient(a.base_url, [TOPIC]) as fresh:
            assert fresh.recovered is True
        presence = await http.get(url(b, "presence", topic=PRESENCE_TOPIC))
        assert presence.status_code == 200, presence.text

        # Each server logged the end of the outage (once), still with no traceback.
        async def ended() -> bool:
            return all(outage_log(server)[1] for server in (a, b))

        await eventually(ended, "the outage-end line in both logs")
        for server in (a, b):
            warnings, infos = outage_log(server)
            assert len(warnings) == 1, server.log_tail(60)
            assert len(infos) == 1, server.log_tail(60)
            assert infos[0].startswith(END), server.log_tail(60)
            assert_quiet(server)
