"""rtdelivery's views through Django's test clients (no server): the project's middleware,
``request.user`` from its ``AuthenticationMiddleware`` and Django's own CSRF check.

``Client`` builds WSGI requests, so these views run the way they run under gunicorn (their
handlers on the background loop); ``AsyncClient`` builds ASGI requests (the test's loop).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import uuid4

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.http import HttpRequest
from django.middleware.csrf import get_token
from django.test import AsyncClient, Client
from django.urls import reverse

from rtdelivery.testing import areset, reset

TOKEN = "views-test-token"
TOPICS = {
    "v.open.*": {"subscribe": "anyone", "publish": "authenticated"},
    "v.members.*": {"subscribe": "authenticated", "publish": "authenticated"},
}


@pytest.fixture
def rt(settings: Any) -> Iterator[None]:
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.RTDELIVERY = {
        "HISTORY_BACKEND": "memory",
        "TAIL_CHECK_INTERVAL": 0,
        "PUBLISH_TOKENS": [TOKEN],
        "TOPICS": TOPICS,
    }
    yield
    reset()  # the background loop WSGI requests ran on, and the memory history


@pytest.fixture
async def async_rt(rt: None) -> AsyncIterator[None]:
    yield
    await areset()  # the test loop's hub, presence and Redis client


@pytest.fixture
def topic() -> str:
    return f"v.open.{uuid4().hex[:10]}"


@pytest.fixture
def user(db: None) -> Any:
    return get_user_model().objects.create_user("alice", password="x")


def csrf_pair() -> tuple[str, str]:
    """A CSRF cookie value and a matching (masked) token for ``X-CSRFToken``."""
    request = HttpRequest()
    token = get_token(request)
    return request.META["CSRF_COOKIE"], token


def with_csrf_cookie(client: Client | AsyncClient) -> str:
    """Give ``client`` a CSRF cookie; returns the token to send in ``X-CSRFToken``."""
    secret, token = csrf_pair()
    client.cookies[django_settings.CSRF_COOKIE_NAME] = secret
    return token


def url(name: str, **params: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return reverse(f"rtdelivery:{name}") + (f"?{query}" if query else "")


def body(response: Any) -> Any:
    assert response["Content-Type"].startswith("application/json"), response.headers
    return json.loads(response.content)


def error_code(response: Any, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.content)
    payload = body(response)
    assert set(payload) == {"error"}, payload
    assert payload["error"]["message"], payload
    return str(payload["error"]["code"])


def publish_body(topic: str, data: Any) -> str:
    return json.dumps({"topic": topic, "type": "note", "data": data})


def test_urls_are_named_under_the_projects_prefix() -> None:
    assert reverse("rtdelivery:poll") == "/rt/poll"
    assert reverse("rtdelivery:publish") == "/rt/publish"


def test_poll_publish_history_with_session_and_csrf(rt: None, user: Any, topic: str) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    first = client.get(url("poll", topic=topic))
    assert first.status_code == 200, first.content
    start = body(first)
    assert (start["events"], start["recovered"]) == ([], True), start

    # A logged-in session without the CSRF token: Django's check refuses it, as JSON.
    refused = client.post(url("publish"), publish_body(topic, 1), content_type="application/json")
    assert error_code(refused, 403) == "csrf_failed"
    assert "CSRF" in body(refused)["error"]["message"]

    token = with_csrf_cookie(client)
    wrong = client.post(
        url("publish"),
        publish_body(topic, 1),
        content_type="application/json",
        HTTP_X_CSRFTOKEN="x" * len(token),
    )
    assert error_code(wrong, 403) == "csrf_failed"
    accepted = client.post(
        url("publish"),
        publish_body(topic, {"text": "hi"}),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert accepted.status_code == 201, accepted.content
    ack = body(accepted)
    assert (ack["topic"], ack["seq"]) == (topic, 1), ack

    polled = body(client.get(url("poll", topic=topic, cursor=start["cursor"])))
    assert [(e["id"], e["type"], e["data"]) for e in polled["events"]] == [
        (ack["id"], "note", {"text": "hi"})
    ]
    history = body(client.get(url("history", topic=topic)))
    assert [e["id"] for e in history["events"]] == [ack["id"]], history


def test_policy_sees_the_user_from_authentication_middleware(rt: None, user: Any) -> None:
    members = f"v.members.{uuid4().hex[:8]}"
    anonymous = Client(enforce_csrf_checks=True)
    assert error_code(anonymous.get(url("poll", topic=members)), 403) == "forbidden"
    token = with_csrf_cookie(anonymous)
    # CSRF passes; then the policy says no to an anonymous publisher.
    denied = anonymous.post(
        url("publish"),
        publish_body(members, 1),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert error_code(denied, 403) == "forbidden"

    member = Client(enforce_csrf_checks=True)
    member.force_login(user)
    assert member.get(url("poll", topic=members)).status_code == 200
    assert member.get(url("history", topic=members)).status_code == 200


def test_bearer_token_publish_needs_no_csrf(rt: None, topic: str) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        url("publish"),
        publish_body(topic, "server"),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
    )
    assert response.status_code == 201, response.content
    bad = client.post(
        url("publish"),
        publish_body(topic, "server"),
        content_type="application/json",
        HTTP_AUTHORIZATION="Bearer not-the-token",
    )
    assert error_code(bad, 403) == "bad_token"


def test_held_views_answer_through_the_test_client(rt: None, db: None, topic: str) -> None:
    # db: closing a streaming response sends request_finished, which checks connections.
    client = Client()
    start = body(client.get(url("poll", topic=topic)))
    ack = body(
        client.post(
            url("publish"),
            publish_body(topic, 7),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {TOKEN}",
        )
    )
    # An event is already after the cursor: the long poll answers at once.
    held = client.get(url("longpoll", topic=topic, cursor=start["cursor"], timeout=5))
    assert [e["id"] for e in body(held)["events"]] == [ack["id"]]

    stream = client.get(url("sse", topic=topic, cursor=start["cursor"]))
    try:
        assert stream.status_code == 200
        assert stream["Content-Type"].startswith("text/event-stream")
        received = b""
        chunks = iter(stream.streaming_content)
        while ack["id"].encode() not in received:
            received += next(chunks)  # the replayed event follows rt.open at once
    finally:
        stream.close()
    text = received.decode()
    assert text.index("event: rt.open") < text.index(f"id: {ack['id']}"), text


def test_errors_are_json(rt: None, topic: str) -> None:
    client = Client()
    assert error_code(client.get(url("poll", topic="bad topic!")), 400) == "invalid_topic"
    assert error_code(client.get(url("history", topic=topic, limit=0)), 400) == "bad_request"
    wrong_method = client.post(url("poll", topic=topic))
    assert error_code(wrong_method, 405) == "method_not_allowed"
    assert wrong_method["Allow"] == "GET"
    assert error_code(client.get("/rt/nope"), 404) == "not_found"
    assert error_code(client.get(url("ws")), 426) == "upgrade_required"
    not_json = client.post(
        url("publish"), "x", content_type="text/plain", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
    )
    assert error_code(not_json, 400) == "invalid_json"


async def test_async_client_with_session_and_csrf(
    async_rt: None, transactional_db: None, topic: str
) -> None:
    # transactional_db: the session's user is read on another thread (another connection).
    user = await get_user_model().objects.acreate_user("bob", password="x")
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(user)
    start = body(await client.get(url("poll", topic=topic)))
    refused = await client.post(
        url("publish"), publish_body(topic, 1), content_type="application/json"
    )
    assert error_code(refused, 403) == "csrf_failed"
    token = with_csrf_cookie(client)
    accepted = await client.post(
        url("publish"),
        publish_body(topic, 2),
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert accepted.status_code == 201, accepted.content
    polled = body(await client.get(url("poll", topic=topic, cursor=start["cursor"])))
    assert [e["data"] for e in polled["events"]] == [2]
