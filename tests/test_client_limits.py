"""Per-client limits (rtdelivery.transports.limits): open connections per user and per
address (SSE streams, WebSockets, held long polls), and publishes per user, answered
with ``429`` + ``Retry-After`` or WebSocket close ``4029``.

In-process, through the project's ASGI application (channels' communicators, whose
scopes are given a client address here).
"""

# ruff: noqa: F811 - the transports' fixtures (rt, application, people) are used by name

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import pytest
from asgiref.testing import ApplicationCommunicator
from channels.testing import HttpCommunicator, WebsocketCommunicator

from rtdelivery.transports import limits
from rtdelivery.transports.websocket import CLOSE_TOO_MANY_CONNECTIONS
from tests.transports.conftest import (  # noqa: F401 - fixtures
    WAIT,
    Identity,
    _close_hub_after_test,
    application,
    people,
    rt,
)

TOKEN = "limits-publish-token"
TOPICS = {"a.*": {"subscribe": "anyone", "publish": "anyone"}}
ORIGIN = (b"origin", b"http://testserver")


@pytest.fixture
def topic() -> str:
    return f"a.{uuid4().hex[:10]}"


def headers(who: Identity | None) -> list[tuple[bytes, bytes]]:
    return who.headers() if who is not None else [(b"host", b"testserver"), ORIGIN]


class Stream:
    """An SSE stream (or a held long poll) from ``ip``, open until :meth:`close`."""

    def __init__(self, app: Any, path: str, ip: str, who: Identity | None = None) -> None:
        path, _, query = path.partition("?")
        self.comm = ApplicationCommunicator(
            app,
            {
                "type": "http",
                "http_version": "1.1",
                "method": "GET",
                "path": path,
                "query_string": query.encode(),
                "headers": headers(who),
                "client": (ip, 40000),
            },
        )

    async def start(self) -> dict[str, Any]:
        await self.comm.send_input({"type": "http.request", "body": b""})
        start: dict[str, Any] = await self.comm.receive_output(WAIT)
        assert start["type"] == "http.response.start", start
        if start["status"] != 200:
            body = await self.comm.receive_output(WAIT)
            start["json"] = json.loads(body["body"])
        return start

    async def close(self) -> None:
        await self.comm.send_input({"type": "http.disconnect"})
        await self.comm.wait(WAIT)


async def websocket(app: Any, ip: str, who: Identity | None = None) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(app, "/rt/ws", headers=headers(who))
    comm.scope["client"] = (ip, 40000)  # before the application first runs
    connected, code = await comm.connect(WAIT)
    assert connected, f"refused with {code}"
    return comm


async def closed_with(comm: WebsocketCommunicator) -> tuple[int, str]:
    message = await comm.receive_output(WAIT)
    assert message["type"] == "websocket.close", message
    return message["code"], message.get("reason", "")


async def test_connections_per_address(
    rt: Callable[..., dict[str, Any]], application: Any, topic: str
) -> None:
    rt(TOPICS=TOPICS, MAX_CONNECTIONS_PER_IP=2)
    one = Stream(application, f"/rt/sse?topic={topic}", "10.0.0.1")
    assert (await one.start())["status"] == 200
    two = await websocket(application, "10.0.0.1")
    assert limits.open_connections(ip="10.0.0.1") == 2
    # The third: an SSE stream, a long poll and a WebSocket are all refused.
    refused = await Stream(application, f"/rt/sse?topic={topic}", "10.0.0.1").start()
    assert refused["status"] == 429
    assert refused["json"]["error"]["code"] == "too_many_connections"
    assert dict(refused["headers"])[b"retry-after"] == b"5"
    held = await Stream(application, f"/rt/longpoll?topic={topic}&timeout=5", "10.0.0.1").start()
    assert held["status"] == 429, held
    assert held["json"]["error"]["code"] == "too_many_connections"
    third = WebsocketCommunicator(application, "/rt/ws", headers=headers(None))
    third.scope["client"] = ("10.0.0.1", 40001)
    connected, _ = await third.connect(WAIT)
    assert connected  # accepted only to say why
    frame = await third.receive_json_from(WAIT)
    assert (frame["op"], frame["code"], frame["retry_after"]) == (
        "error",
        "too_many_connections",
        5,
    )
    assert await closed_with(third) == (CLOSE_TOO_MANY_CONNECTIONS, "too_many_connections")
    # Another address is not affected; closing one frees a place.
    other = Stream(application, f"/rt/sse?topic={topic}", "10.0.0.2")
    assert (await other.start())["status"] == 200
    await other.close()
    await one.close()
    assert limits.open_connections(ip="10.0.0.1") == 1
    again = Stream(application, f"/rt/sse?topic={topic}", "10.0.0.1")
    assert (await again.start())["status"] == 200
    await again.close()
    await two.disconnect(timeout=WAIT)
    assert limits.open_connections(ip="10.0.0.1") == 0


async def test_connections_per_user(
    rt: Callable[..., dict[str, Any]], application: Any, people: dict[str, Identity], topic: str
) -> None:
    rt(TOPICS=TOPICS, MAX_CONNECTIONS_PER_USER=1)
    owner = people["owner"]
    first = await websocket(application, "10.0.1.1", owner)
    # The same user from another address: refused on every transport.
    refused = await Stream(application, f"/rt/sse?topic={topic}", "10.0.1.2", owner).start()
    assert refused["status"] == 429
    assert refused["json"]["error"]["code"] == "too_many_connections"
    second = WebsocketCommunicator(application, "/rt/ws", headers=headers(owner))
    second.scope["client"] = ("10.0.1.3", 40000)
    assert (await second.connect(WAIT))[0]
    assert (await second.receive_json_from(WAIT))["code"] == "too_many_connections"
    assert (await closed_with(second))[0] == CLOSE_TOO_MANY_CONNECTIONS
    # Another user, and anonymous clients, are not.
    other = Stream(application, f"/rt/sse?topic={topic}", "10.0.1.2", people["other"])
    assert (await other.start())["status"] == 200
    anonymous = Stream(application, f"/rt/sse?topic={topic}", "10.0.1.2")
    assert (await anonymous.start())["status"] == 200
    await other.close()
    await anonymous.close()
    await first.disconnect(timeout=WAIT)


async def test_no_limit_when_none(
    rt: Callable[..., dict[str, Any]], application: Any, topic: str
) -> None:
    rt(TOPICS=TOPICS, MAX_CONNECTIONS_PER_IP=None, MAX_CONNECTIONS_PER_USER=None)
    streams = [Stream(application, f"/rt/sse?topic={topic}", "10.0.2.1") for _ in range(5)]
    for stream in streams:
        assert (await stream.start())["status"] == 200
    assert limits.open_connections(ip="10.0.2.1") == 0  # not counted at all
    await asyncio.gather(*(s.close() for s in streams))


async def publish(app: Any, topic: str, who: Identity | None, *, token: str | None = None) -> Any:
    extra = [(b"content-type", b"application/json")]
    if token is not None:
        extra.append((b"authorization", f"Bearer {token}".encode()))
    base = who.headers(csrf=True) if who is not None else [(b"host", b"testserver")]
    comm = HttpCommunicator(
        app,
        "POST",
        "/rt/publish",
        body=json.dumps({"topic": topic, "data": 1}).encode(),
        headers=base + extra,
    )
    comm.scope["client"] = ("10.0.3.1", 40000)
    return await comm.get_response(timeout=WAIT)


async def test_publish_rate_per_user(
    rt: Callable[..., dict[str, Any]], application: Any, people: dict[str, Identity], topic: str
) -> None:
    rt(TOPICS=TOPICS, PUBLISH_RATE=0.5, PUBLISH_BURST=2, PUBLISH_TOKENS=[TOKEN])
    owner = people["owner"]
    for _ in range(2):
        assert (await publish(application, topic, owner))["status"] == 201
    refused = await publish(application, topic, owner)
    assert refused["status"] == 429
    assert json.loads(refused["body"])["error"]["code"] == "rate_limited"
    assert dict(refused["headers"])[b"retry-after"] == b"2"  # 1 publish at 0.5/s
    # Another user has a bucket of its own; a server's publish token is not limited.
    assert (await publish(application, topic, people["other"]))["status"] == 201
    for _ in range(5):
        assert (await publish(application, topic, None, token=TOKEN))["status"] == 201
    # Over a WebSocket, the same bucket: an error frame, the socket stays open.
    comm = await websocket(application, "10.0.3.1", owner)
    await comm.send_json_to({"op": "publish", "topic": topic, "data": 1, "ref": 7})
    frame = await comm.receive_json_from(WAIT)
    assert frame["op"] == "error", frame
    assert frame["code"] == "rate_limited", frame
    assert frame["ref"] == 7
    assert frame["retry_after"] >= 1
    await comm.send_json_to({"op": "ping", "ref": 8})
    assert (await comm.receive_json_from(WAIT))["ref"] == 8
    await comm.disconnect(timeout=WAIT)


async def test_publish_rate_anonymous_is_per_address(
    rt: Callable[..., dict[str, Any]], application: Any, topic: str
) -> None:
    rt(TOPICS=TOPICS, PUBLISH_RATE=0.5, PUBLISH_BURST=1)
    comm = await websocket(application, "10.0.4.1")
    await comm.send_json_to({"op": "publish", "topic": topic, "data": 1, "ref": 1})
    assert (await comm.receive_json_from(WAIT))["op"] == "ack"
    await comm.send_json_to({"op": "publish", "topic": topic, "data": 1, "ref": 2})
    assert (await comm.receive_json_from(WAIT))["code"] == "rate_limited"
    other = await websocket(application, "10.0.4.2")
    await other.send_json_to({"op": "publish", "topic": topic, "data": 1, "ref": 3})
    assert (await other.receive_json_from(WAIT))["op"] == "ack"
    await comm.disconnect(timeout=WAIT)
    await other.disconnect(timeout=WAIT)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"MAX_CONNECTIONS_PER_IP": 0}, "must be an integer >= 1 or None, got 0"),
        ({"MAX_CONNECTIONS_PER_USER": 2.5}, "must be an integer >= 1 or None, got 2.5"),
        ({"PUBLISH_RATE": 0}, "must be a number > 0 (publishes per second) or None, got 0"),
        ({"PUBLISH_BURST": None}, "must be an integer >= 1, got None"),
        ({"CORS_ALLOW_CREDENTIALS": "yes"}, "must be True or False, got 'yes'"),
    ],
)
def test_settings_are_validated(extra: dict[str, Any], message: str) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from rtdelivery.conf import build

    with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
        build(extra)
    if "PUBLISH_BURST" not in extra and "CORS_ALLOW_CREDENTIALS" not in extra:
        # None turns a limit off.
        assert build(dict.fromkeys(extra)) is not None
