"""``RealtimeConsumer`` routed beside a project's own consumer (``EchoConsumer``).

Two ways to compose them: ``rtdelivery_application(..., websocket_urlpatterns=[...])``
(the one-line setup) and the ``ProtocolTypeRouter`` of docs/deployment.md, composed by
hand. Each is checked in-process with channels' ``WebsocketCommunicator``; the one-line
setup also on a real Uvicorn process with the ``websockets`` client.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.asgi import get_asgi_application
from django.test import Client
from django.urls import path
from websockets.exceptions import InvalidStatus

import rtdelivery.routing
from rtdelivery import apublish
from rtdelivery.asgi import rtdelivery_application
from rtdelivery.consumers import RealtimeConsumer
from rtdelivery.testing import areset
from rtdelivery.tokens import connection_token
from tests.conftest import delete_prefixed_keys, find_free_port
from tests.e2e.clients import http_client, http_publish, ws_connect
from tests.e2e.conftest import ROOT, Server, server_env, stop_server, wait_ready
from tests.project_consumers import EchoConsumer

WAIT = 5.0
SAME_SITE = b"http://testserver"
CROSS_SITE = b"http://evil.example"


def one_line_setup() -> Any:
    return rtdelivery_application(
        get_asgi_application(), websocket_urlpatterns=[path("echo/", EchoConsumer.as_asgi())]
    )


def hand_composed() -> Any:
    """docs/deployment.md, "Composing Channels' router yourself"."""
    django_app = get_asgi_application()
    return ProtocolTypeRouter(
        {
            "http": rtdelivery_application(django_app),
            "websocket": AllowedHostsOriginValidator(
                AuthMiddlewareStack(
                    URLRouter(
                        [
                            *rtdelivery.routing.websocket_urlpatterns,
                            path("echo/", EchoConsumer.as_asgi()),
                        ]
                    )
                )
            ),
        }
    )


COMPOSITIONS = {"one_line_setup": one_line_setup, "hand_composed": hand_composed}


@pytest.fixture
async def rt(settings: Any, transactional_db: None) -> AsyncIterator[None]:
    # transactional_db: Channels' consumers close old database connections (on another
    # thread) when a socket ends, and AuthMiddlewareStack reads the session there too.
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.RTDELIVERY = {
        "HISTORY_BACKEND": "memory",
        "TAIL_CHECK_INTERVAL": 0,
        "TOPICS": {"c.*": {"subscribe": "anyone", "publish": "anyone"}},
    }
    yield
    await areset()


@pytest.fixture(params=list(COMPOSITIONS))
def app(request: pytest.FixtureRequest, rt: None) -> Any:
    return COMPOSITIONS[request.param]()


@pytest.fixture
def topic() -> str:
    return f"c.{uuid4().hex[:10]}"


async def connect(
    app: Any, path: str, *, origin: bytes | None = SAME_SITE, cookie: str | None = None
) -> tuple[WebsocketCommunicator, bool, Any]:
    headers = [(b"host", b"testserver")]
    if origin is not None:
        headers.append((b"origin", origin))
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    comm = WebsocketCommunicator(app, path, headers=headers)
    connected, code = await comm.connect(WAIT)
    return comm, connected, code


async def test_project_consumer_beside_rtdelivery(app: Any, topic: str) -> None:
    echo, connected, code = await connect(app, "/echo/")
    assert connected, f"/echo/ refused with {code}"
    rt, connected, code = await connect(app, "/rt/ws")
    assert connected, f"/rt/ws refused with {code}"
    try:
        await echo.send_to(text_data="hello")
        assert await echo.receive_from(WAIT) == "hello"
        # Routed inside AuthMiddlewareStack: the scope has a (here anonymous) user.
        await echo.send_to(text_data="whoami")
        assert await echo.receive_from(WAIT) == "user:"

        await rt.send_json_to({"op": "subscribe", "topic": topic, "ref": 1})
        subscribed = await rt.receive_json_from(WAIT)
        assert (subscribed["op"], subscribed["ref"]) == ("subscribed", 1), subscribed
        event = await apublish(topic, {"text": "hi"})
        frame = await rt.receive_json_from(WAIT)
        assert (frame["op"], frame["id"], frame["data"]) == ("event", event.id, {"text": "hi"})
        # The two sockets don't mix.
        assert await echo.receive_nothing(0.05)
    finally:
        await echo.disconnect(timeout=WAIT)
        await rt.disconnect(timeout=WAIT)


@pytest.fixture
def session_cookie(rt: None) -> str:
    """The Cookie header of a session logged in as alice."""
    user = get_user_model().objects.create_user("alice", password="x")
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"


async def test_project_consumer_sees_the_session_user(app: Any, session_cookie: str) -> None:
    echo, connected, code = await connect(app, "/echo/", cookie=session_cookie)
    assert connected, f"/echo/ refused with {code}"
    try:
        await echo.send_to(text_data="whoami")
        assert await echo.receive_from(WAIT) == "user:alice"
    finally:
        await echo.disconnect(timeout=WAIT)


async def test_cross_site_origin_is_refused_on_both_routes(app: Any) -> None:
    for route in ("/echo/", "/rt/ws"):
        comm, connected, _code = await connect(app, route, origin=CROSS_SITE)
        assert not connected, f"{route} accepted a cross-site Origin"
        await comm.disconnect(timeout=WAIT)


async def test_unknown_websocket_path_is_refused_by_the_one_line_setup(rt: None) -> None:
    comm, connected, code = await connect(one_line_setup(), "/nope/")
    assert not connected
    assert code == 1008, code
    await comm.disconnect(timeout=WAIT)


async def test_unknown_websocket_path_in_a_hand_composed_router(rt: None) -> None:
    """Channels' own ``URLRouter`` has no fallback: an unknown path is an error in the
    application (servers answer the handshake with 500), not rtdelivery's business."""
    comm = WebsocketCommunicator(
        hand_composed(), "/nope/", headers=[(b"host", b"testserver"), (b"origin", SAME_SITE)]
    )
    with pytest.raises(ValueError, match="No route found"):
        # The communicator reports the application's error when its wait times out.
        await comm.connect(0.2)


def test_consumer_class_is_the_routed_one() -> None:
    (route,) = rtdelivery.routing.websocket_urlpatterns
    assert route.callback.consumer_class is RealtimeConsumer  # type: ignore[attr-defined]
    assert str(route.pattern) == "rt/ws"


# -- the one-line setup on a real Uvicorn process --------------------------------------


@pytest.fixture(scope="module")
def uvicorn_composed(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Uvicorn serving tests/e2e/asgi_composed.py (e2e settings: Redis layer and history)."""
    prefix = f"rtde2e:{uuid4().hex[:12]}:"
    env = server_env(redis_url, prefix)
    port = find_free_port()
    log_path = tmp_path_factory.mktemp("composed") / f"uvicorn-{port}.log"
    command = [
        sys.executable, "-m", "uvicorn", "tests.e2e.asgi_composed:application",
        "--host", "127.0.0.1", "--port", str(port), "--lifespan", "off",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Server("uvicorn", port, process, log_path, prefix, env)
    try:
        wait_ready(server)
        yield server
    finally:
        status = stop_server(server)
        print(f"--- uvicorn pid {server.pid} port {server.port} exit {status}")
        print(server.log_tail())
        delete_prefixed_keys(redis_url, prefix)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with http_client() as client:
        yield client


async def test_live_project_consumer_beside_rtdelivery(
    uvicorn_composed: Server, http: httpx.AsyncClient
) -> None:
    base = uvicorn_composed.base_url
    topic = f"e2e.c{uuid4().hex[:10]}"
    echo = await ws_connect(base, path="/echo/")
    rt = await ws_connect(base)
    try:
        await echo.send("hello")
        assert await asyncio.wait_for(echo.recv(), WAIT) == "hello"
        await rt.send(json.dumps({"op": "subscribe", "topic": topic, "ref": 1}))
        subscribed = json.loads(await asyncio.wait_for(rt.recv(), WAIT))
        assert subscribed["op"] == "subscribed", subscribed
        ack = await http_publish(
            http, base, uvicorn_composed.env["RTD_PUBLISH_TOKENS"], topic, "live"
        )
        frame = json.loads(await asyncio.wait_for(rt.recv(), WAIT))
        assert (frame["op"], frame["id"], frame["data"]) == ("event", ack["id"], "live")
    finally:
        await echo.close()
        await rt.close()


@pytest.mark.parametrize(
    ("route", "origin"),
    [("/nope/", "same"), ("/echo/", "http://evil.example"), ("/rt/ws", "http://evil.example")],
)
async def test_live_handshakes_refused(uvicorn_composed: Server, route: str, origin: str) -> None:
    log_before = len(uvicorn_composed.log())
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(uvicorn_composed.base_url, path=route, origin=origin)
    assert refused.value.response.status_code == 403
    # Refused, not crashed: no traceback in the server's log for this handshake.
    assert "Traceback" not in uvicorn_composed.log()[log_before:]


async def test_a_connection_token_is_honoured_in_a_hand_composed_router(
    rt: None, settings: Any
) -> None:
    """``AuthMiddlewareStack`` knows only the session; the consumer asks the
    authenticators itself, so a token works as with the one-line setup."""
    settings.RTDELIVERY = {
        **settings.RTDELIVERY,
        "TOPICS": {"members.*": {"subscribe": "authenticated", "publish": "authenticated"}},
    }
    user = await get_user_model().objects.acreate_user("bob", password="x")
    for token, expected in ((connection_token(user), "subscribed"), (None, "error")):
        path = "/rt/ws" if token is None else f"/rt/ws?access_token={token}"
        comm, connected, code = await connect(hand_composed(), path)
        assert connected, f"{path} refused with {code}"
        try:
            await comm.send_json_to({"op": "subscribe", "topic": "members.lounge", "ref": 1})
            frame = await comm.receive_json_from(WAIT)
            assert frame["op"] == expected, frame
            if expected == "error":
                assert frame["code"] == "forbidden", frame
        finally:
            await comm.disconnect(timeout=WAIT)
