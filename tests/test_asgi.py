"""``rtdelivery_application``: which requests go through Django (and so the project's
middleware) and which are answered on the fast path; the same answers either way.

In-process: requests go through channels' communicators to the ASGI applications, on
the test's event loop (in-memory layer and history).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest
from django.core.asgi import get_asgi_application
from django.test import Client

from rtdelivery import apublish
from rtdelivery.asgi import rtdelivery_application
from rtdelivery.testing import areset
from tests import project_middleware
from tests.project_middleware import HEADER, SEEN
from tests.transports.conftest import WAIT, Response, SSEClient
from tests.transports.conftest import request as asgi_request

TOKEN = "asgi-test-publish-token"
HOST = [(b"host", b"testserver")]
ALLOWED = "http://other.example"
DISALLOWED = "http://evil.example"
#: How long a request must stay unanswered to count as held (a negative check: bounded).
HELD = 0.3
#: The project middleware's mark, as the communicators give header names (lowercase).
MARK = HEADER.lower()


@pytest.fixture
async def project(settings: Any) -> AsyncIterator[None]:
    """A project with its own middleware (outermost) that records what Django serves."""
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.MIDDLEWARE = [
        f"{project_middleware.__name__}.RecordRequestsMiddleware",
        *settings.MIDDLEWARE,
    ]
    settings.RTDELIVERY = {
        "HISTORY_BACKEND": "memory",
        "TAIL_CHECK_INTERVAL": 0,
        "PUBLISH_TOKENS": [TOKEN],
        "TOPICS": {"a.*": {"subscribe": "anyone", "publish": "anyone"}},
    }
    SEEN.clear()
    yield
    SEEN.clear()
    await areset()


@pytest.fixture
def topic() -> str:
    return f"a.{uuid4().hex[:10]}"


@pytest.fixture
def wrapped(project: None) -> Any:
    """The one-line setup: ``rtdelivery_application(get_asgi_application())``."""
    return rtdelivery_application(get_asgi_application())


@pytest.fixture
def plain(project: None) -> Any:
    """Django alone: rtdelivery's views, held ones included, through Django's handler."""
    return get_asgi_application()


async def get(app: Any, path: str, headers: list[tuple[bytes, bytes]] = ()) -> Response:  # type: ignore[assignment]
    return await asgi_request(app, "GET", path, headers=HOST + list(headers))


async def start_cursor(app: Any, topic: str) -> str:
    response = await get(app, f"/rt/poll?topic={topic}")
    assert response.status == 200, response.body
    return str(response.json()["cursor"])


async def open_sse(app: Any, path: str, headers: list[tuple[bytes, bytes]] = ()) -> SSEClient:  # type: ignore[assignment]
    return await SSEClient(app, path, HOST + list(headers)).open()


def stream_header(stream: SSEClient, name: str) -> str | None:
    """A header of an SSE response (names compared lowercased: Django keeps their case)."""
    found = {k.lower(): v for k, v in stream.headers.items()}.get(name.lower().encode())
    return None if found is None else found.decode("latin-1")


def without_middleware_headers(response: Response) -> dict[bytes, bytes]:
    """Headers that are rtdelivery's own (not added by Django or the project's middleware)."""
    return {
        k: v
        for k, v in response.headers.items()
        if k not in {MARK.encode(), b"vary", b"x-frame-options"}
    }


# -- the fast path ---------------------------------------------------------------------


async def test_short_views_go_through_django_and_held_views_do_not(
    wrapped: Any, topic: str
) -> None:
    """Under the wrapper the project's middleware sees ``poll``, ``history``, ``publish``
    and unknown paths under the prefix, and never ``longpoll`` or ``sse``."""
    cursor = await start_cursor(wrapped, topic)
    poll = await get(wrapped, f"/rt/poll?topic={topic}&cursor={cursor}")
    assert poll.header(MARK) == "1"
    history = await get(wrapped, f"/rt/history?topic={topic}")
    assert history.header(MARK) == "1"
    assert (await get(wrapped, "/rt/nope")).header(MARK) == "1"

    held = asyncio.ensure_future(
        get(wrapped, f"/rt/longpoll?topic={topic}&cursor={cursor}&timeout=5")
    )
    done, _ = await asyncio.wait({held}, timeout=HELD)
    assert not done, "the long poll answered with no event"
    published = await asgi_request(
        wrapped,
        "POST",
        "/rt/publish",
        body=json.dumps({"topic": topic, "data": 1}).encode(),
        headers=[
            *HOST,
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer " + TOKEN.encode()),
        ],
    )
    assert published.status == 201, published.body
    assert published.header(MARK) == "1"
    answer = await asyncio.wait_for(held, WAIT)
    assert [e["data"] for e in answer.json()["events"]] == [1]
    assert answer.header(MARK) is None

    stream = await open_sse(wrapped, f"/rt/sse?topic={topic}&cursor={cursor}")
    try:
        assert stream.status == 200
        assert stream_header(stream, MARK) is None
        opened = await stream.next_event()
        assert opened["event"] == "rt.open"
        assert (await stream.next_event())["json"]["data"] == 1
    finally:
        await stream.close()

    assert SEEN == ["/rt/poll", "/rt/poll", "/rt/history", "/rt/nope", "/rt/publish"], SEEN


async def test_without_the_wrapper_held_views_still_work_through_django(
    plain: Any, topic: str
) -> None:
    """Plain ``get_asgi_application()``: ``longpoll`` and ``sse`` are ordinary views (the
    middleware sees them) and still answer: a held long poll is answered by a publish."""
    cursor = await start_cursor(plain, topic)
    held = asyncio.ensure_future(
        get(plain, f"/rt/longpoll?topic={topic}&cursor={cursor}&timeout=5")
    )
    done, _ = await asyncio.wait({held}, timeout=HELD)
    assert not done, "the long poll answered with no event"
    event = await apublish(topic, {"n": 1})
    answer = await asyncio.wait_for(held, WAIT)
    assert answer.status == 200, answer.body
    assert [e["id"] for e in answer.json()["events"]] == [event.id]
    assert answer.header(MARK) == "1"

    stream = await open_sse(plain, f"/rt/sse?topic={topic}&cursor={cursor}")
    try:
        assert stream.status == 200
        assert stream_header(stream, MARK) == "1"
        assert (await stream.next_event())["event"] == "rt.open"
        assert (await stream.next_event())["json"]["id"] == event.id
        second = await apublish(topic, {"n": 2})
        assert (await stream.next_event())["json"]["id"] == second.id
    finally:
        await stream.close()
    assert SEEN == ["/rt/poll", "/rt/longpoll", "/rt/sse"], SEEN


async def test_same_answers_with_and_without_the_wrapper(
    wrapped: Any, plain: Any, topic: str
) -> None:
    cursor = await start_cursor(wrapped, topic)
    for i in range(3):
        await apublish(topic, {"i": i})
    for path in (
        f"/rt/poll?topic={topic}&cursor={cursor}",
        f"/rt/poll?topic={topic}&cursor={cursor}&limit=2",
        f"/rt/history?topic={topic}&limit=2",
        # Held views with events already after the cursor: answered at once.
        f"/rt/longpoll?topic={topic}&cursor={cursor}",
        f"/rt/longpoll?topic={topic}&cursor=tampered",
        "/rt/longpoll?topic=bad%20topic",
        "/rt/sse?topic=bad%20topic",
    ):
        one, other = await get(wrapped, path), await get(plain, path)
        assert (one.status, one.body) == (other.status, other.body), path
        assert without_middleware_headers(one) == without_middleware_headers(other), path

    frames = []
    for app in (wrapped, plain):
        stream = await open_sse(app, f"/rt/sse?topic={topic}&cursor={cursor}")
        try:
            frames.append([await stream.next_event() for _ in range(4)])  # rt.open + 3
        finally:
            await stream.close()
    assert frames[0] == frames[1]
    assert [f["json"]["data"] for f in frames[0][1:]] == [{"i": 0}, {"i": 1}, {"i": 2}]


# -- django-cors-headers: the project's middleware on rtdelivery's views ------------------


@pytest.fixture
def cors(settings: Any, project: None) -> None:
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "corsheaders"]
    settings.MIDDLEWARE = ["corsheaders.middleware.CorsMiddleware", *settings.MIDDLEWARE]
    settings.CORS_ALLOWED_ORIGINS = [ALLOWED]


def origin(value: str) -> list[tuple[bytes, bytes]]:
    return [(b"origin", value.encode())]


async def test_cors_on_a_cross_origin_poll_through_the_asgi_application(
    cors: None, topic: str
) -> None:
    app = rtdelivery_application(get_asgi_application())
    allowed = await get(app, f"/rt/poll?topic={topic}", origin(ALLOWED))
    assert allowed.status == 200, allowed.body
    assert allowed.header("access-control-allow-origin") == ALLOWED
    history = await get(app, f"/rt/history?topic={topic}", origin(ALLOWED))
    assert history.header("access-control-allow-origin") == ALLOWED
    refused = await get(app, f"/rt/poll?topic={topic}", origin(DISALLOWED))
    assert refused.status == 200, refused.body
    assert refused.header("access-control-allow-origin") is None
    # Errors pass through the middleware too.
    bad = await get(app, "/rt/poll?topic=bad%20topic", origin(ALLOWED))
    assert bad.status == 400
    assert bad.json()["error"]["code"] == "invalid_topic"
    assert bad.header("access-control-allow-origin") == ALLOWED


async def test_cors_preflight_for_publish_is_answered_by_the_middleware(
    cors: None, topic: str
) -> None:
    app = rtdelivery_application(get_asgi_application())
    preflight = [
        *HOST,
        (b"origin", ALLOWED.encode()),
        (b"access-control-request-method", b"POST"),
        (b"access-control-request-headers", b"authorization, content-type"),
    ]
    answer = await asgi_request(app, "OPTIONS", "/rt/publish", headers=preflight)
    # Without the middleware the view answers OPTIONS with 405: corsheaders answered it.
    assert answer.status == 200, answer.body
    assert answer.header("access-control-allow-origin") == ALLOWED
    assert "POST" in (answer.header("access-control-allow-methods") or "")
    assert "authorization" in (answer.header("access-control-allow-headers") or "")
    # The cross-origin publish itself (a server token: no cookies, no CSRF).
    published = await asgi_request(
        app,
        "POST",
        "/rt/publish",
        body=json.dumps({"topic": topic, "data": "x"}).encode(),
        headers=[
            *HOST,
            (b"origin", ALLOWED.encode()),
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer " + TOKEN.encode()),
        ],
    )
    assert published.status == 201, published.body
    assert published.header("access-control-allow-origin") == ALLOWED
    disallowed = [(k, DISALLOWED.encode() if k == b"origin" else v) for k, v in preflight]
    other = await asgi_request(app, "OPTIONS", "/rt/publish", headers=disallowed)
    assert other.header("access-control-allow-origin") is None


def test_cors_through_the_test_client(cors: None, topic: str) -> None:
    client = Client()
    allowed = client.get(f"/rt/poll?topic={topic}", headers={"Origin": ALLOWED})
    assert allowed.status_code == 200, allowed.content
    assert allowed["Access-Control-Allow-Origin"] == ALLOWED
    assert allowed[HEADER] == "1"
    refused = client.get(f"/rt/poll?topic={topic}", headers={"Origin": DISALLOWED})
    assert "Access-Control-Allow-Origin" not in refused
    preflight = client.options(
        "/rt/publish",
        headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert preflight["Access-Control-Allow-Origin"] == ALLOWED


async def test_cors_is_applied_to_held_views_on_the_fast_path(cors: None, topic: str) -> None:
    """``longpoll`` and ``sse`` on ``rtdelivery_application``'s fast path skip the
    project's middleware, so rtdelivery answers CORS itself from django-cors-headers'
    settings (rtdelivery.cors): the same headers as the views behind the middleware."""
    wrapped = rtdelivery_application(get_asgi_application())
    plain = get_asgi_application()
    cursor = await start_cursor(wrapped, topic)
    await apublish(topic, 1)
    path = f"/rt/longpoll?topic={topic}&cursor={cursor}"
    fast = await get(wrapped, path, origin(ALLOWED))
    slow = await get(plain, path, origin(ALLOWED))
    assert fast.body == slow.body
    assert fast.header("access-control-allow-origin") == ALLOWED
    assert slow.header("access-control-allow-origin") == ALLOWED
    assert fast.header("vary") == "origin"
    for app in (wrapped, plain):
        stream = await open_sse(app, f"/rt/sse?topic={topic}", origin(ALLOWED))
        try:
            assert stream_header(stream, "access-control-allow-origin") == ALLOWED
        finally:
            await stream.close()
