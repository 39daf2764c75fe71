"""In-process fixtures for the transport tests: the ASGI application, identities, helpers.

Everything runs on the test's event loop through channels' communicators (no server
process). Every test ends by closing the loop's hub and Redis client and forgetting the
history, so no task or connection outlives the loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from channels.testing import ApplicationCommunicator, HttpCommunicator, WebsocketCommunicator
from django.conf import settings as django_settings
from django.core.asgi import get_asgi_application
from django.http import HttpRequest
from django.middleware.csrf import get_token
from django.test import Client

import rtdelivery.asgi
from rtdelivery.testing import (
    areset,
    wait_until,  # noqa: F401  (re-exported for the tests)
)

#: Upper bound for any single wait (seconds); a healthy run needs far less.
WAIT = 5.0
ORIGIN = "http://testserver"
PREFIX = "/rt/"

Headers = list[tuple[bytes, bytes]]


@pytest.fixture(autouse=True)
async def _close_hub_after_test(settings: Any) -> AsyncIterator[None]:
    # Depending on `settings` makes this teardown run while the test's settings apply.
    yield
    await areset()


@pytest.fixture
def rt(settings: Any) -> Callable[..., dict[str, Any]]:
    """configure(**extra): RTDELIVERY (memory history, no tail check) plus ``extra``."""
    settings.ALLOWED_HOSTS = ["testserver"]

    def configure(**extra: Any) -> dict[str, Any]:
        config: dict[str, Any] = {"HISTORY_BACKEND": "memory", "TAIL_CHECK_INTERVAL": 0}
        config.update(extra)
        settings.RTDELIVERY = config
        return config

    configure()
    return configure


@pytest.fixture
def application(rt: Callable[..., dict[str, Any]]) -> Any:
    """The project's ASGI application with rtdelivery mounted at /rt/."""
    return rtdelivery.asgi.rtdelivery_application(get_asgi_application())


# -- identities ----------------------------------------------------------------------


def csrf_pair() -> tuple[str, str]:
    """A CSRF cookie value and a matching (masked) token for the X-CSRFToken header."""
    request = HttpRequest()
    token = get_token(request)
    return request.META["CSRF_COOKIE"], token


def session_cookie(user: Any) -> str:
    """The session id of a fresh session logged in as ``user``."""
    client = Client()
    client.force_login(user)
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


@dataclass
class Identity:
    """Who makes a request: cookies (session + CSRF) and the CSRF token to echo."""

    name: str
    user: Any = None
    cookies: dict[str, str] = field(default_factory=dict)
    csrf_token: str = ""

    @classmethod
    def make(cls, name: str, user: Any = None) -> Identity:
        secret, token = csrf_pair()
        cookies = {django_settings.CSRF_COOKIE_NAME: secret}
        if user is not None:
            cookies[django_settings.SESSION_COOKIE_NAME] = session_cookie(user)
        return cls(name, user, cookies, token)

    @property
    def pk(self) -> str | None:
        return None if self.user is None else str(self.user.pk)

    def headers(self, *, csrf: bool = False, origin: str | None = ORIGIN) -> Headers:
        """Host, cookie and (optionally) Origin headers; with ``csrf`` the CSRF token too."""
        headers: Headers = [(b"host", b"testserver")]
        if self.cookies:
            cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            headers.append((b"cookie", cookie.encode()))
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        if csrf:
            headers.append((b"x-csrftoken", self.csrf_token.encode()))
        return headers


@pytest.fixture
def people(transactional_db: None) -> dict[str, Identity]:
    """anonymous, owner, other (a second user) and staff, each with its cookies.

    ``transactional_db``: sessions and users are read from another thread (channels'
    ``database_sync_to_async``), which only sees committed rows.
    """
    from django.contrib.auth import get_user_model

    User = get_user_model()
    owner = User.objects.create_user("owner", password="x")
    other = User.objects.create_user("other", password="x")
    staff = User.objects.create_user("staff", password="x", is_staff=True)
    return {
        "anonymous": Identity.make("anonymous"),
        "other": Identity.make("other", other),
        "owner": Identity.make("owner", owner),
        "staff": Identity.make("staff", staff),
    }


# -- HTTP ------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    raw_headers: Headers

    def json(self) -> Any:
        assert self.headers.get(b"content-type", b"").startswith(b"application/json"), self
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        value = self.headers.get(name.encode())
        return None if value is None else value.decode("latin-1")

    def error_code(self) -> str:
        payload = self.json()
        assert set(payload) == {"error"}, payload
        assert set(payload["error"]) - {"topic"} == {"code", "message"}, payload
        assert payload["error"]["message"], payload
        return str(payload["error"]["code"])


def url(endpoint: str, params: Iterable[tuple[str, Any]] | dict[str, Any] = ()) -> str:
    items = list(params.items()) if isinstance(params, dict) else list(params)
    query = urlencode([(k, str(v)) for k, v in items])
    return PREFIX + endpoint + ("?" + query if query else "")


async def request(
    app: Any,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: Headers | None = None,
    within: float = WAIT,
) -> Response:
    """One HTTP request through the ASGI app; the whole response."""
    communicator = HttpCommunicator(app, method, path, body=body, headers=headers or [])
    try:
        answer = await communicator.get_response(timeout=within)
    finally:
        await communicator.wait(within)
    raw = list(answer["headers"])
    # Header names compared lowercased: Django keeps the case a view gave them.
    return Response(answer["status"], {k.lower(): v for k, v in raw}, answer["body"], raw)


async def get(
    app: Any, endpoint: str, params: Any = (), who: Identity | None = None, **kw: Any
) -> Response:
    headers = who.headers() if who else [(b"host", b"testserver")]
    headers += kw.pop("headers", [])
    return await request(app, "GET", url(endpoint, params), headers=headers, **kw)


async def post_json(
    app: Any,
    payload: Any,
    who: Identity | None = None,
    *,
    csrf: bool = True,
    extra_headers: Headers = (),  # type: ignore[assignment]
    content_type: bytes = b"application/json",
    raw: bytes | None = None,
) -> Response:
    """``POST publish`` as ``who`` (session + CSRF unless ``csrf=False``)."""
    headers = who.headers(csrf=csrf) if who else [(b"host", b"testserver")]
    headers.append((b"content-type", content_type))
    headers += list(extra_headers)
    body = raw if raw is not None else json.dumps(payload).encode()
    return await request(app, "POST", url("publish"), body=body, headers=headers)


# -- SSE -------------------------------------------------------------------------------


class SSEClient:
    """An open SSE response read frame by frame (``None`` event name = comment)."""

    def __init__(self, app: Any, path: str, headers: Headers) -> None:
        self.comm = ApplicationCommunicator(
            app,
            {
                "type": "http",
                "http_version": "1.1",
                "method": "GET",
                "path": path.split("?", 1)[0],
                "query_string": path.split("?", 1)[1].encode() if "?" in path else b"",
                "headers": headers,
            },
        )
        self.buffer = ""
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        self.ended = False

    async def open(self) -> SSEClient:
        await self.comm.send_input({"type": "http.request", "body": b""})
        start = await self.comm.receive_output(WAIT)
        assert start["type"] == "http.response.start", start
        self.status = start["status"]
        self.headers = dict(start.get("headers", []))
        if self.status != 200:
            while True:
                chunk = await self.comm.receive_output(WAIT)
                self.body += chunk.get("body", b"")
                if not chunk.get("more_body"):
                    break
            self.ended = True
        return self

    async def frame(self, within: float = WAIT) -> dict[str, Any]:
        """The next frame: {"comment"} or {"id", "event", "data", "retry"} fields."""
        while "\n\n" not in self.buffer:
            assert not self.ended, f"stream ended; buffer {self.buffer!r}"
            chunk = await self.comm.receive_output(within)
            assert chunk["type"] == "http.response.body", chunk
            self.buffer += chunk.get("body", b"").decode()
            if not chunk.get("more_body", False):
                self.ended = True
        block, self.buffer = self.buffer.split("\n\n", 1)
        frame: dict[str, Any] = {}
        data = []
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                frame["comment"] = value
            elif name == "data":
                data.append(value)
            else:
                frame[name] = value
        if data:
            frame["data"] = "\n".join(data)
        return frame

    async def next_event(self, within: float = WAIT) -> dict[str, Any]:
        """The next frame with data (comments and a bare ``retry:`` are skipped), its data
        parsed as JSON."""
        while True:
            frame = await self.frame(within)
            if "data" in frame:
                frame["json"] = json.loads(frame["data"])
                return frame

    async def close(self) -> None:
        await self.comm.send_input({"type": "http.disconnect"})
        await self.comm.wait(WAIT)


async def open_sse(
    app: Any,
    params: Any,
    who: Identity | None = None,
    headers: Headers = (),  # type: ignore[assignment]
) -> SSEClient:
    base = who.headers() if who else [(b"host", b"testserver")]
    return await SSEClient(app, url("sse", params), base + list(headers)).open()


# -- WebSocket -------------------------------------------------------------------------


async def ws_connect(
    app: Any, who: Identity | None = None, *, origin: str | None = ORIGIN
) -> WebsocketCommunicator:
    """An accepted WebSocket to /rt/ws as ``who``."""
    headers = who.headers(origin=origin) if who else [(b"host", b"testserver")]
    if who is None and origin is not None:
        headers.append((b"origin", origin.encode()))
    comm = WebsocketCommunicator(app, PREFIX + "ws", headers=headers)
    connected, code = await comm.connect(WAIT)
    assert connected, f"WebSocket refused with {code}"
    return comm


async def ws_recv(comm: WebsocketCommunicator, within: float = WAIT) -> dict[str, Any]:
    frame = await comm.receive_json_from(within)
    assert isinstance(frame, dict), frame
    return frame


async def ws_request(
    comm: WebsocketCommunicator, frame: dict[str, Any], within: float = WAIT
) -> dict[str, Any]:
    await comm.send_json_to(frame)
    return await ws_recv(comm, within)


async def ws_close(comm: WebsocketCommunicator) -> None:
    await comm.disconnect(timeout=WAIT)


async def ws_closed_with(comm: WebsocketCommunicator, within: float = WAIT) -> int:
    """Read until the server closes; the close code. Frames before it are skipped."""
    deadline = time.monotonic() + within
    while True:
        message = await comm.receive_output(max(0.01, deadline - time.monotonic()))
        if message["type"] == "websocket.close":
            await comm.wait(WAIT)
            return int(message.get("code", 1000))


# -- slow clients ----------------------------------------------------------------------


class Gate:
    """Wraps an ASGI app so its ``send`` blocks while the gate is shut: a client that
    stops reading (TCP backpressure). The communicators' own queues never block."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._open = asyncio.Event()
        self._open.set()
        self.blocked = 0

    def shut(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def gated(message: dict[str, Any]) -> None:
            if not self._open.is_set():
                self.blocked += 1
                await self._open.wait()
            await send(message)

        await self.app(scope, receive, gated)


# -- waiting ---------------------------------------------------------------------------
