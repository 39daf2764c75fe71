"""Publish idempotency keys through every way to publish: apublish, publish,
publish_on_commit, ``POST publish`` and the WebSocket ``publish`` op.

A repeated (topic, key) within IDEMPOTENCY_TTL stores and sends nothing and answers the
first publish's topic, seq and id with ``duplicate`` (HTTP 200 instead of 201).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from django.core.asgi import get_asgi_application
from django.db import transaction

import rtdelivery.asgi
from rtdelivery import apublish, publish, publish_on_commit, publishing
from rtdelivery.core.cursors import Position
from rtdelivery.core.errors import BadRequest
from rtdelivery.history import get_history, reset_history
from rtdelivery.hub import get_hub
from rtdelivery.subscriber import Subscriber
from rtdelivery.testing import areset
from tests.transports.conftest import (
    WAIT,
    Identity,
    post_json,
    ws_close,
    ws_connect,
    ws_recv,
    ws_request,
)

TOPICS = {"t.*": {"subscribe": "anyone", "publish": "anyone"}}

BAD_KEYS = [
    pytest.param("", id="empty"),
    pytest.param("k" * 129, id="too-long"),
    pytest.param("has space", id="space"),
    pytest.param("slash/no", id="slash"),
    pytest.param("{brace}", id="brace"),
    pytest.param("é", id="non-ascii"),
    pytest.param(5, id="int"),
    pytest.param(None, id="null"),
    pytest.param(["k"], id="list"),
]


@pytest.fixture(autouse=True)
async def _close_hub_after_test(settings: Any) -> AsyncIterator[None]:
    # Depending on `settings` makes this teardown run while the test's settings apply.
    yield
    await areset()


@pytest.fixture(params=["memory", "redis"])
def conf(request: pytest.FixtureRequest, settings: Any) -> str:
    """The open test topics, on in-memory or Redis history (as tests/transports do)."""
    settings.ALLOWED_HOSTS = ["testserver"]
    config: dict[str, Any] = {"HISTORY_BACKEND": "memory", "TAIL_CHECK_INTERVAL": 0}
    if request.param == "redis":
        config.update(request.getfixturevalue("redis_settings"))
    settings.RTDELIVERY = {**config, "TOPICS": TOPICS}
    return str(request.param)


@pytest.fixture
def application(conf: str) -> Any:
    """The project's ASGI application with rtdelivery mounted at /rt/."""
    return rtdelivery.asgi.rtdelivery_application(get_asgi_application())


# -- Python API ----------------------------------------------------------------------------


async def test_apublish_with_a_repeated_key_returns_the_first_event(conf: str) -> None:
    hub = get_hub()
    sub = Subscriber(maxsize=10)
    await hub.subscribe(sub, "t.a")
    first = await apublish("t.a", {"n": 1}, type="chat", key="3f1c2a9e-uuid")
    again = await apublish("t.a", {"n": 2}, key="3f1c2a9e-uuid")
    assert (first.duplicate, again.duplicate) == (False, True)
    assert (again.topic, again.seq, again.id, again.type) == ("t.a", 1, first.id, "chat")
    other = await apublish("t.a", {"n": 3}, key="another")
    assert (other.seq, other.duplicate) == (2, False)
    # Subscribers got each stored event once: the duplicate was not broadcast.
    got: list[Any] = []
    while len(got) < 2:
        got += await asyncio.wait_for(sub.get(), WAIT)
    assert [(e.seq, e.data) for e in got] == [(1, {"n": 1}), (2, {"n": 3})]
    assert len(sub) == 0
    stored = await get_history().read("t.a", Position(first.epoch, 0))
    assert [e.data for e in stored.events] == [{"n": 1}, {"n": 3}]
    await hub.unsubscribe_all(sub)


@pytest.mark.parametrize("key", [k for k in BAD_KEYS if k.id != "null"])  # None: no key
async def test_apublish_refuses_a_bad_key_before_storing(conf: str, key: Any) -> None:
    with pytest.raises(BadRequest) as info:
        await apublish("t.a", 1, key=key)
    assert info.value.code == "invalid_key"
    assert "'key'" in info.value.message
    assert await get_history().heads(["t.a"]) == {"t.a": None}


def test_longest_key_and_every_allowed_character() -> None:
    assert publishing.validate_key("k" * 128) == "k" * 128
    allowed = "AZaz09_.:-"
    assert publishing.validate_key(allowed) == allowed


@pytest.mark.django_db(transaction=True)
def test_publish_and_publish_on_commit_with_a_key(conf: str) -> None:
    try:
        first = publish("t.sync", {"n": 1}, key="k1")
        again = publish("t.sync", {"n": 2}, key="k1")
        assert (first.duplicate, again.duplicate, again.seq, again.id) == (
            False,
            True,
            1,
            first.id,
        )
        with transaction.atomic():
            publish_on_commit("t.sync", {"n": 3}, key="k2")
            publish_on_commit("t.sync", {"n": 4}, key="k2")  # the same key: stored once
            publish_on_commit("t.sync", {"n": 5}, key="k1")  # already used by publish()
        with pytest.raises(BadRequest), transaction.atomic():
            publish_on_commit("t.sync", 1, key="bad key")

        async def read() -> list[Any]:
            try:
                result = await get_history().read("t.sync", Position(first.epoch, 0))
                return [(e.seq, e.data) for e in result.events]
            finally:
                await areset()

        assert asyncio.run(read()) == [(1, {"n": 1}), (2, {"n": 3})]
    finally:
        publishing.close_publisher()
        reset_history()


# -- POST publish ----------------------------------------------------------------------------


async def test_http_publish_with_a_repeated_key_answers_200_duplicate(
    conf: str, application: Any
) -> None:
    anon = Identity.make("anonymous")
    payload = {"topic": "t.a", "data": {"n": 1}, "key": "b7e4c1d2-0f6a-4c2e-9a51-2d3c4e5f6a7b"}
    created = await post_json(application, payload, anon)
    assert created.status == 201
    body = created.json()
    assert set(body) == {"topic", "seq", "id"}
    repeated = await post_json(application, {**payload, "data": {"n": 2}}, anon)
    assert repeated.status == 200
    assert repeated.json() == {**body, "duplicate": True}
    # Another topic, the same key: a publish of its own.
    other = await post_json(application, {**payload, "topic": "t.b"}, anon)
    assert (other.status, other.json()["seq"]) == (201, 1)
    stored = await get_history().latest("t.a", 10)
    assert [e.data for e in stored.events] == [{"n": 1}]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_http_publish_refuses_a_bad_key(conf: str, application: Any, key: Any) -> None:
    anon = Identity.make("anonymous")
    response = await post_json(application, {"topic": "t.a", "data": 1, "key": key}, anon)
    assert response.status == 400
    assert response.error_code() == "invalid_key"
    assert "'key'" in response.json()["error"]["message"]
    assert await get_history().heads(["t.a"]) == {"t.a": None}


async def test_http_publish_still_refuses_other_keys(conf: str, application: Any) -> None:
    anon = Identity.make("anonymous")
    response = await post_json(application, {"topic": "t.a", "data": 1, "ref": 1}, anon)
    assert (response.status, response.error_code()) == (400, "invalid_event")
    assert "key" in response.json()["error"]["message"]


# -- WebSocket publish -----------------------------------------------------------------------


async def test_websocket_publish_with_a_repeated_key_acks_duplicate(
    conf: str, application: Any
) -> None:
    comm = await ws_connect(application)
    frame = {"op": "publish", "topic": "t.a", "data": 1, "key": "ws-key-1"}
    ack = await ws_request(comm, {**frame, "ref": 1})
    assert ack["op"] == "ack"
    assert "duplicate" not in ack
    again = await ws_request(comm, {**frame, "data": 2, "ref": 2})
    assert again == {**ack, "duplicate": True, "ref": 2}
    bad = await ws_request(comm, {**frame, "key": "no spaces", "ref": 3})
    assert (bad["op"], bad["code"], bad["ref"]) == ("error", "invalid_key", 3)
    assert "'key'" in bad["message"]
    assert await ws_request(comm, {"op": "ping"}) == {"op": "pong"}
    await ws_close(comm)
    stored = await get_history().latest("t.a", 10)
    assert [e.data for e in stored.events] == [1]


async def test_websocket_publisher_subscribed_gets_the_event_once(
    conf: str, application: Any
) -> None:
    comm = await ws_connect(application)
    subscribed = await ws_request(comm, {"op": "subscribe", "topic": "t.a"})
    assert subscribed["op"] == "subscribed"
    frame = {"op": "publish", "topic": "t.a", "data": 1, "key": "once"}
    await comm.send_json_to(frame)
    first = [await ws_recv(comm), await ws_recv(comm)]
    assert sorted(f["op"] for f in first) == ["ack", "event"]
    again = await ws_request(comm, frame)
    assert (again["op"], again["duplicate"]) == ("ack", True)
    # No second event frame: the next frame is the answer to the ping.
    assert await ws_request(comm, {"op": "ping"}) == {"op": "pong"}
    await ws_close(comm)
