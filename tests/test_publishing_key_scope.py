"""A client's idempotency key is its own: scoped by its publisher, not only by the topic.

Over ``POST publish`` and the WebSocket ``publish`` op a signed-in user's key lives under
``u:<pk>:``, an anonymous client's under ``s:<session key>:`` (with a session) or
``a:<address>:``; so another publisher who sends the same key on the topic first cannot make
this one's publish a silent duplicate. A server's publish token and the Python API keep the
bare key (one namespace: the server's).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from django.core.asgi import get_asgi_application

import rtdelivery.asgi
from rtdelivery import apublish
from rtdelivery.history import get_history
from rtdelivery.testing import areset
from tests.transports.conftest import Identity, post_json, ws_close, ws_connect, ws_request

TOPICS = {"t.*": {"subscribe": "anyone", "publish": "anyone"}}
TOKEN = "scope-test-publish-token"
KEY = "order-42"


@pytest.fixture(autouse=True)
async def _close_hub_after_test(settings: Any) -> AsyncIterator[None]:
    yield
    await areset()


@pytest.fixture
def application(settings: Any) -> Any:
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.RTDELIVERY = {
        "HISTORY_BACKEND": "memory",
        "TAIL_CHECK_INTERVAL": 0,
        "TOPICS": TOPICS,
        "PUBLISH_TOKENS": [TOKEN],
    }
    return rtdelivery.asgi.rtdelivery_application(get_asgi_application())


@pytest.fixture
def users(transactional_db: None) -> dict[str, Identity]:
    from django.contrib.auth import get_user_model

    User = get_user_model()
    return {
        "alice": Identity.make("alice", User.objects.create_user("alice", password="x")),
        "mallory": Identity.make("mallory", User.objects.create_user("mallory", password="x")),
    }


async def stored(topic: str) -> list[Any]:
    return [e.data for e in (await get_history().latest(topic, 10)).events]


async def test_http_two_users_with_one_key_both_publish(
    application: Any, users: dict[str, Identity]
) -> None:
    squat = await post_json(
        application, {"topic": "t.a", "data": "squat", "key": KEY}, users["mallory"]
    )
    assert (squat.status, squat.json()["seq"]) == (201, 1)
    mine = await post_json(
        application, {"topic": "t.a", "data": "mine", "key": KEY}, users["alice"]
    )
    assert (mine.status, mine.json()["seq"]) == (201, 2)
    assert "duplicate" not in mine.json()
    again = await post_json(
        application, {"topic": "t.a", "data": "again", "key": KEY}, users["alice"]
    )
    assert again.status == 200
    assert again.json() == {**mine.json(), "duplicate": True}
    assert await stored("t.a") == ["squat", "mine"]


async def test_http_anonymous_and_user_keys_are_apart(
    application: Any, users: dict[str, Identity]
) -> None:
    anon = Identity.make("anonymous")  # no session: its address
    first = await post_json(application, {"topic": "t.b", "data": 1, "key": KEY}, anon)
    assert first.status == 201
    repeat = await post_json(application, {"topic": "t.b", "data": 2, "key": KEY}, anon)
    assert (repeat.status, repeat.json()["seq"]) == (200, 1)
    user = await post_json(application, {"topic": "t.b", "data": 3, "key": KEY}, users["alice"])
    assert (user.status, user.json()["seq"]) == (201, 2)
    assert await stored("t.b") == [1, 3]


async def test_publish_token_and_python_api_share_the_bare_key(application: Any) -> None:
    event = await apublish("t.c", "server", key=KEY)
    token = [(b"authorization", f"Bearer {TOKEN}".encode())]
    answer = await post_json(
        application, {"topic": "t.c", "data": "token", "key": KEY}, None, extra_headers=token
    )
    assert answer.status == 200
    assert answer.json() == {"topic": "t.c", "seq": event.seq, "id": event.id, "duplicate": True}
    anon = Identity.make("anonymous")
    client = await post_json(application, {"topic": "t.c", "data": "client", "key": KEY}, anon)
    assert (client.status, client.json()["seq"]) == (201, 2)
    assert await stored("t.c") == ["server", "client"]


async def test_websocket_two_users_with_one_key_both_publish(
    application: Any, users: dict[str, Identity]
) -> None:
    mallory = await ws_connect(application, users["mallory"])
    alice = await ws_connect(application, users["alice"])
    frame = {"op": "publish", "topic": "t.d", "key": KEY}
    squat = await ws_request(mallory, {**frame, "data": "squat", "ref": 1})
    assert (squat["op"], squat["seq"]) == ("ack", 1)
    mine = await ws_request(alice, {**frame, "data": "mine", "ref": 1})
    assert (mine["op"], mine["seq"]) == ("ack", 2)
    assert "duplicate" not in mine
    again = await ws_request(alice, {**frame, "data": "again", "ref": 2})
    assert again == {**mine, "duplicate": True, "ref": 2}
    # The same user over HTTP: the same namespace.
    http = await post_json(
        application, {"topic": "t.d", "data": "http", "key": KEY}, users["alice"]
    )
    assert (http.status, http.json()["seq"]) == (200, 2)
    await ws_close(mallory)
    await ws_close(alice)
    assert await stored("t.d") == ["squat", "mine"]
