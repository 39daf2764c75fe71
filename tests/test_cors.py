"""Cross-origin clients (rtdelivery.cors): CORS headers and preflights on every HTTP
endpoint, the fast path's included, and the WebSocket Origin check, from one list:
``RTDELIVERY["ALLOWED_ORIGINS"]``, else django-cors-headers' settings.

In-process, through the project's ASGI application (channels' communicators).
"""

# ruff: noqa: F811 - the transports' fixtures (rt, application) are imported and used by name

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import uuid4

import pytest
from channels.testing import WebsocketCommunicator

from tests.transports.conftest import (  # noqa: F401 - fixtures
    WAIT,
    SSEClient,
    _close_hub_after_test,
    application,
    request,
    rt,
)

SPA = "http://spa.example:5173"
EVIL = "http://evil.example"
HOST = [(b"host", b"testserver")]
#: Every HTTP endpoint and the method it serves.
ENDPOINTS = [
    ("poll", "GET"),
    ("longpoll", "GET"),
    ("sse", "GET"),
    ("history", "GET"),
    ("presence", "GET"),
    ("publish", "POST"),
]
TOPICS = {"a.*": {"subscribe": "anyone", "publish": "anyone", "presence": True}}


@pytest.fixture
def topic() -> str:
    return f"a.{uuid4().hex[:10]}"


@pytest.fixture
def listed(rt: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """ALLOWED_ORIGINS lists the SPA (configure(**extra) adds settings)."""

    def configure(**extra: Any) -> dict[str, Any]:
        return rt(ALLOWED_ORIGINS=[SPA], TOPICS=TOPICS, **extra)

    configure()
    return configure


@pytest.fixture
def corsheaders(rt: Callable[..., dict[str, Any]], settings: Any) -> Any:
    """django-cors-headers installed (its middleware not: rtdelivery answers alone)."""
    rt(TOPICS=TOPICS)
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "corsheaders"]
    settings.CORS_ALLOWED_ORIGINS = [SPA]
    return settings


def preflight(origin: str, method: str) -> list[tuple[bytes, bytes]]:
    return [
        *HOST,
        (b"origin", origin.encode()),
        (b"access-control-request-method", method.encode()),
        (b"access-control-request-headers", b"authorization, content-type"),
    ]


async def test_preflight_is_answered_on_every_endpoint(listed: Any, application: Any) -> None:
    for endpoint, method in ENDPOINTS:
        answer = await request(
            application, "OPTIONS", f"/rt/{endpoint}", headers=preflight(SPA, method)
        )
        assert answer.status == 200, (endpoint, answer.body)
        assert answer.header("access-control-allow-origin") == SPA, endpoint
        assert method in (answer.header("access-control-allow-methods") or ""), endpoint
        assert "authorization" in (answer.header("access-control-allow-headers") or ""), endpoint
        assert answer.header("vary") == "origin", endpoint
        assert answer.header("access-control-allow-credentials") is None, endpoint
        # Another site's preflight is answered without the headers: the browser refuses.
        other = await request(
            application, "OPTIONS", f"/rt/{endpoint}", headers=preflight(EVIL, method)
        )
        assert other.status == 200, endpoint
        assert other.header("access-control-allow-origin") is None, endpoint


async def test_answers_carry_cors_headers_errors_and_streams_too(
    listed: Any, application: Any, topic: str
) -> None:
    origin = [(b"origin", SPA.encode())]
    poll = await request(application, "GET", f"/rt/poll?topic={topic}", headers=HOST + origin)
    assert poll.status == 200
    assert poll.header("access-control-allow-origin") == SPA
    assert "retry-after" in (poll.header("access-control-expose-headers") or "")
    cursor = poll.json()["cursor"]
    # The fast path: a long poll (answered at once: timeout=0) and an SSE stream.
    held = await request(
        application,
        "GET",
        f"/rt/longpoll?topic={topic}&cursor={cursor}&timeout=0",
        headers=HOST + origin,
    )
    assert held.status == 200, held.body
    assert held.header("access-control-allow-origin") == SPA
    stream = await SSEClient(application, f"/rt/sse?topic={topic}", HOST + origin).open()
    try:
        assert stream.status == 200
        assert stream.headers.get(b"access-control-allow-origin") == SPA.encode()
        assert stream.headers.get(b"vary") == b"origin"
    finally:
        await stream.close()
    # Errors, on views and on the fast path, and a malformed query string.
    for path in (
        "/rt/poll?topic=bad%20topic",
        "/rt/sse?topic=bad%20topic",
        "/rt/longpoll?topic=\xff",
    ):
        bad = await request(application, "GET", path, headers=HOST + origin)
        assert bad.status == 400, (path, bad.body)
        assert bad.header("access-control-allow-origin") == SPA, path
    # A method the endpoint does not serve: 405, still readable cross-origin.
    wrong = await request(application, "POST", f"/rt/sse?topic={topic}", headers=HOST + origin)
    assert wrong.status == 405
    assert wrong.header("access-control-allow-origin") == SPA
    # Not listed: no Allow-Origin (the browser hides the answer), but Vary all the same.
    other = await request(
        application, "GET", f"/rt/poll?topic={topic}", headers=[*HOST, (b"origin", EVIL.encode())]
    )
    assert other.header("access-control-allow-origin") is None
    assert other.header("vary") == "origin"


async def test_credentials_only_when_configured(listed: Any, application: Any, topic: str) -> None:
    listed(CORS_ALLOW_CREDENTIALS=True)
    answer = await request(
        application,
        "GET",
        f"/rt/longpoll?topic={topic}&timeout=0",
        headers=[*HOST, (b"origin", SPA.encode())],
    )
    assert answer.header("access-control-allow-origin") == SPA
    assert answer.header("access-control-allow-credentials") == "true"


async def test_star_allows_every_origin_without_credentials(
    rt: Callable[..., dict[str, Any]], application: Any, topic: str
) -> None:
    rt(ALLOWED_ORIGINS=["*"], TOPICS=TOPICS)
    answer = await request(
        application, "GET", f"/rt/poll?topic={topic}", headers=[*HOST, (b"origin", EVIL.encode())]
    )
    assert answer.header("access-control-allow-origin") == "*"
    assert answer.header("access-control-allow-credentials") is None


def test_star_with_credentials_is_a_configuration_error(
    rt: Callable[..., dict[str, Any]],
) -> None:
    # Any site could read what a logged-in user may read: refused, not echoed.
    from django.core.exceptions import ImproperlyConfigured

    from rtdelivery.conf import get_settings

    rt(ALLOWED_ORIGINS=["*"], TOPICS=TOPICS, CORS_ALLOW_CREDENTIALS=True)
    with pytest.raises(ImproperlyConfigured, match="contains '\\*' while CORS_ALLOW_CREDENTIALS"):
        get_settings()


async def test_star_websocket_from_another_site_is_anonymous_with_a_cookie(
    rt: Callable[..., dict[str, Any]], application: Any, transactional_db: None
) -> None:
    """Origins let in by "*" (no credentials) cannot ride on the user's session cookie:
    cross-site WebSocket hijacking. The same cookie from the site itself is the user."""
    from asgiref.sync import sync_to_async
    from django.contrib.auth import get_user_model

    from tests.transports.conftest import session_cookie

    rt(ALLOWED_ORIGINS=["*"], TOPICS={"user.*": {"subscribe": "owner"}})
    user = await sync_to_async(get_user_model().objects.create_user)("victim", password="x")
    cookie = await sync_to_async(session_cookie)(user)
    for origin, allowed in ((EVIL, False), ("http://testserver", True)):
        headers = [*HOST, (b"origin", origin.encode()), (b"cookie", f"sessionid={cookie}".encode())]
        comm = WebsocketCommunicator(application, "/rt/ws", headers=headers)
        connected, _ = await comm.connect(WAIT)
        assert connected
        await comm.send_json_to({"op": "subscribe", "topic": f"user.{user.pk}", "ref": 1})
        frame = await comm.receive_json_from(WAIT)
        assert frame["op"] == ("subscribed" if allowed else "error"), (origin, frame)
        await comm.disconnect()


async def test_nothing_configured_means_same_origin_only(
    rt: Callable[..., dict[str, Any]], application: Any, topic: str
) -> None:
    rt(TOPICS=TOPICS)
    answer = await request(
        application, "GET", f"/rt/poll?topic={topic}", headers=[*HOST, (b"origin", SPA.encode())]
    )
    assert answer.status == 200
    assert answer.header("access-control-allow-origin") is None
    assert answer.header("vary") is None
    refused = await request(application, "OPTIONS", "/rt/sse", headers=preflight(SPA, "GET"))
    assert refused.status == 405


async def test_django_cors_headers_settings_are_the_list(
    corsheaders: Any, application: Any, topic: str
) -> None:
    origin = [(b"origin", SPA.encode())]
    for path in (f"/rt/poll?topic={topic}", f"/rt/longpoll?topic={topic}&timeout=0"):
        answer = await request(application, "GET", path, headers=HOST + origin)
        assert answer.header("access-control-allow-origin") == SPA, path
    pre = await request(application, "OPTIONS", "/rt/longpoll", headers=preflight(SPA, "GET"))
    assert pre.status == 200
    assert "authorization" in (pre.header("access-control-allow-headers") or "")
    # Its regexes, and its own CORS_URLS_REGEX (rtdelivery's paths not included: none).
    corsheaders.CORS_ALLOWED_ORIGINS = []
    corsheaders.CORS_ALLOWED_ORIGIN_REGEXES = [r"^http://\w+\.example(:\d+)?$"]
    answer = await request(
        application, "GET", f"/rt/longpoll?topic={topic}&timeout=0", headers=HOST + origin
    )
    assert answer.header("access-control-allow-origin") == SPA
    corsheaders.CORS_URLS_REGEX = r"^/api/"
    answer = await request(
        application, "GET", f"/rt/longpoll?topic={topic}&timeout=0", headers=HOST + origin
    )
    assert answer.header("access-control-allow-origin") is None
    corsheaders.CORS_URLS_REGEX = r"^.*$"
    corsheaders.CORS_ALLOW_ALL_ORIGINS = True
    answer = await request(
        application, "GET", f"/rt/longpoll?topic={topic}&timeout=0", headers=HOST + origin
    )
    assert answer.header("access-control-allow-origin") == "*"


async def test_allowed_origins_wins_over_django_cors_headers(
    corsheaders: Any, rt: Callable[..., dict[str, Any]], application: Any, topic: str
) -> None:
    rt(ALLOWED_ORIGINS=[EVIL], TOPICS=TOPICS)
    answer = await request(
        application,
        "GET",
        f"/rt/longpoll?topic={topic}&timeout=0",
        headers=[*HOST, (b"origin", SPA.encode())],
    )
    assert answer.header("access-control-allow-origin") is None


async def ws_answer(app: Any, origin: str | None) -> tuple[bool, Any]:
    headers = list(HOST)
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    comm = WebsocketCommunicator(app, "/rt/ws", headers=headers)
    connected, code = await comm.connect(WAIT)
    if connected:
        await comm.disconnect(timeout=WAIT)
    return connected, code


async def test_websocket_origin_check_uses_the_same_list(
    corsheaders: Any, rt: Callable[..., dict[str, Any]], application: Any
) -> None:
    # django-cors-headers' list, plus the site's own hosts (ALLOWED_HOSTS).
    assert (await ws_answer(application, SPA))[0]
    assert (await ws_answer(application, "http://testserver"))[0]
    assert (await ws_answer(application, EVIL)) == (False, 1008)
    assert (await ws_answer(application, None)) == (False, 1008)
    corsheaders.CORS_ALLOW_ALL_ORIGINS = True
    assert (await ws_answer(application, EVIL))[0]
    # ALLOWED_ORIGINS: exactly that list.
    corsheaders.CORS_ALLOW_ALL_ORIGINS = False
    rt(ALLOWED_ORIGINS=[SPA], TOPICS=TOPICS)
    assert (await ws_answer(application, SPA))[0]
    assert (await ws_answer(application, EVIL)) == (False, 1008)
