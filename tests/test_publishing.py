"""The publish API: apublish, sync publish (with and without a hub) and publish_on_commit.

Delivery invariant 5 (DESIGN.md): an event published on commit never announces data
that was rolled back. Bad input is refused before anything is stored.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar
from uuid import uuid4

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import transaction

from rtdelivery import apublish, publish, publish_on_commit, publishing
from rtdelivery.conf import get_settings
from rtdelivery.connections import aclose_redis
from rtdelivery.core.cursors import Cursor, Position
from rtdelivery.core.errors import EventTooLarge, InvalidEvent, InvalidTopic
from rtdelivery.core.events import Event
from rtdelivery.history import get_history, reset_history
from rtdelivery.hub import aclose_hub, get_hub
from rtdelivery.subscriber import Subscriber
from tests.conftest import layer_config, reset_channel_layers, sync_redis

T = TypeVar("T")
WAIT = 10.0


@pytest.fixture(autouse=True)
def _clean_publisher(settings: Any, key_prefix: str) -> Iterator[None]:
    # Depends on settings and key_prefix so this runs before they are restored/deleted.
    yield
    publishing.close_publisher()
    reset_history()


@pytest.fixture
async def closing_hub(settings: Any, key_prefix: str) -> AsyncIterator[None]:
    """For async tests: close the loop's hub and Redis client afterwards."""
    yield
    await aclose_hub()
    await aclose_redis()


@pytest.fixture(params=["memory", "redis"])
def history_backend(request: pytest.FixtureRequest, settings: Any) -> str:
    """Runs the test with in-memory history and with Redis history."""
    if request.param == "redis":
        request.getfixturevalue("redis_settings")
    return str(request.param)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from a sync test in a throwaway loop, closing its Redis client."""

    async def main() -> T:
        try:
            return await coro
        finally:
            await aclose_redis()

    return asyncio.run(main())


def head(topic: str) -> Position | None:
    return run(get_history().heads([topic]))[topic]


def stored(topic: str) -> list[Event]:
    async def read() -> list[Event]:
        return (await get_history().latest(topic, 1000)).events

    return run(read())


# -- apublish -----------------------------------------------------------------------------


async def test_apublish_returns_the_stored_event_with_a_cursor_id(
    history_backend: str, closing_hub: None
) -> None:
    before = int(time.time() * 1000)
    first = await apublish("orders.new", {"id": 1, "name": "café"}, type="order.created")
    second = await apublish("orders.new", [1, 2])
    assert (first.topic, first.seq, first.type) == ("orders.new", 1, "order.created")
    assert first.data == {"id": 1, "name": "café"}
    assert (second.seq, second.type, second.epoch) == (2, "message", first.epoch)
    assert before <= first.time <= int(time.time() * 1000)
    key = get_settings().cursor_key
    assert Cursor.decode(first.id, key) == Cursor({"orders.new": Position(first.epoch, 1)})
    assert Cursor.decode(second.id, key) == Cursor({"orders.new": second.position})
    latest = await get_history().latest("orders.new", 10)
    assert [(e.seq, e.id, e.data) for e in latest.events] == [
        (1, first.id, first.data),
        (2, second.id, [1, 2]),
    ]


# -- validation before storing -------------------------------------------------------------

BAD_INPUT = [
    pytest.param({"topic": "bad topic!"}, InvalidTopic, id="topic-alphabet"),
    pytest.param({"topic": ""}, InvalidTopic, id="topic-empty"),
    pytest.param({"topic": "x" * 81}, InvalidTopic, id="topic-too-long"),
    pytest.param({"type": "has space"}, InvalidEvent, id="type-alphabet"),
    pytest.param({"type": ""}, InvalidEvent, id="type-empty"),
    pytest.param({"data": object()}, InvalidEvent, id="data-not-json"),
    pytest.param({"data": float("nan")}, InvalidEvent, id="data-nan"),
    pytest.param({"data": "x" * 200}, EventTooLarge, id="data-too-large"),
]


def bad_call(overrides: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    args = {"topic": "checked.topic", "data": {"ok": True}, "type": "message", **overrides}
    topic = args.pop("topic")
    return topic, args


@pytest.mark.parametrize(("overrides", "error"), BAD_INPUT)
async def test_apublish_refuses_bad_input_before_storing(
    settings: Any,
    overrides: dict[str, Any],
    error: type[Exception],
    closing_hub: None,
) -> None:
    settings.RTDELIVERY = {"HISTORY_BACKEND": "memory", "MAX_EVENT_BYTES": 100}
    topic, args = bad_call(overrides)
    with pytest.raises(error) as info:
        await apublish(topic, **args)
    assert info.value.message  # type: ignore[attr-defined]
    assert await get_history().heads(["checked.topic"]) == {"checked.topic": None}


@pytest.mark.django_db
@pytest.mark.parametrize(("overrides", "error"), BAD_INPUT)
def test_publish_refuses_bad_input_before_storing(
    settings: Any, redis_settings: dict[str, Any], overrides: dict[str, Any], error: type
) -> None:
    settings.RTDELIVERY = {**redis_settings, "MAX_EVENT_BYTES": 100}
    topic, args = bad_call(overrides)
    with pytest.raises(error):
        publish(topic, **args)
    with pytest.raises(error), transaction.atomic():
        publish_on_commit(topic, **args)
    assert head("checked.topic") is None
    assert publish("checked.topic", "x" * 90).seq == 1  # the limit is not off by much


# -- sync publish ------------------------------------------------------------------------------


def test_publish_from_sync_code_without_a_hub(history_backend: str) -> None:
    first = publish("sync.plain", {"n": 1})
    second = publish("sync.plain", {"n": 2}, type="tick")
    assert (first.seq, second.seq, second.type) == (1, 2, "tick")
    assert [(e.seq, e.data) for e in stored("sync.plain")] == [(1, {"n": 1}), (2, {"n": 2})]


def test_publish_from_a_plain_thread(history_backend: str) -> None:
    results: list[Event] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            results.append(publish("sync.threads", n))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert errors == []
    assert sorted(e.seq for e in results) == list(range(1, 9))
    assert sorted(e.data for e in stored("sync.threads")) == list(range(8))


async def test_publish_inside_a_running_loop_raises_with_a_hint(closing_hub: None) -> None:
    with pytest.raises(RuntimeError, match=r"await rtdelivery\.apublish"):
        publish("sync.wrong", 1)
    assert await get_history().heads(["sync.wrong"]) == {"sync.wrong": None}


@pytest.mark.parametrize("layer", ["memory", "redis", "pubsub"])
async def test_publish_from_a_worker_thread_reaches_the_running_hub(
    layer: str,
    request: pytest.FixtureRequest,
    redis_layer_settings: Callable[[str], dict[str, Any]],
    closing_hub: None,
) -> None:
    redis_layer_settings(layer)
    if layer != "memory":
        request.getfixturevalue("redis_settings")
    hub = get_hub()
    sub = Subscriber(maxsize=10)
    await hub.subscribe(sub, "sync.hub")
    events = [await sync_to_async(publish)("sync.hub", n) for n in range(3)]
    assert [e.seq for e in events] == [1, 2, 3]
    items: list[Any] = []
    for _ in range(3):  # each get() returns at least one item
        items += await asyncio.wait_for(sub.get(), WAIT)
        if len(items) >= 3:
            break
    assert [(i.seq, i.data) for i in items] == [(1, 0), (2, 1), (3, 2)]
    assert publishing._publisher._loop is None  # the hub's own loop did the work


@pytest.mark.parametrize("layer", ["redis", "pubsub"])
def test_sync_publish_reuses_one_loop_and_its_connections(
    layer: str,
    settings: Any,
    redis_url: str,
    key_prefix: str,
    redis_settings: dict[str, Any],
) -> None:
    name = f"rtdtest-{uuid4().hex[:10]}"
    config = layer_config(layer, redis_url, key_prefix)
    config["CONFIG"]["hosts"][0]["client_name"] = name
    reset_channel_layers()
    settings.CHANNEL_LAYERS = {"default": config}
    reset_channel_layers()
    settings.RTDELIVERY = {**redis_settings, "REDIS_OPTIONS": {"client_name": name}}

    def connections() -> int:
        with sync_redis(redis_url) as client:
            return sum(1 for c in client.client_list() if c.get("name") == name)

    def publisher_threads() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "rtdelivery-publisher")

    publish("sync.reuse", 0)  # opens what the publisher needs
    loop = publishing._publisher._loop
    assert loop is not None
    assert loop.is_running()
    opened = connections()
    # History and layer, both ours; with channels-redis's RedisChannelLayer on the same
    # Redis the group sends go through the history's connection (rtdelivery.direct_groups).
    assert opened >= (1 if layer == "redis" else 2)
    for n in range(50):
        publish("sync.reuse", n)
    assert publishing._publisher._loop is loop
    assert publisher_threads() == 1
    assert connections() == opened
    final = head("sync.reuse")
    assert final is not None
    assert final.seq == 51

    publishing.close_publisher()
    assert loop.is_closed()
    assert publisher_threads() == 0
    deadline = time.monotonic() + WAIT  # Redis notices a closed socket a moment later
    while connections() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert connections() == 0  # its connections went with it


# -- publish_on_commit --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_publish_on_commit_publishes_only_after_commit(history_backend: str) -> None:
    with transaction.atomic():
        user = User.objects.create(username="ada")
        publish_on_commit("users.new", {"id": user.pk})
        assert head("users.new") is None  # not before the commit
    assert [e.data for e in stored("users.new")] == [{"id": user.pk}]


class Abort(Exception):
    pass


def create_user_and_abort(name: str) -> None:
    with transaction.atomic():
        User.objects.create(username=name)
        publish_on_commit("users.new", {"name": name})
        raise Abort


@pytest.mark.django_db(transaction=True)
def test_publish_on_commit_publishes_nothing_on_rollback(history_backend: str) -> None:
    with pytest.raises(Abort):
        create_user_and_abort("bob")
    assert not User.objects.filter(username="bob").exists()
    assert head("users.new") is None

    with transaction.atomic():  # a savepoint rolled back inside a committed transaction
        User.objects.create(username="cy")
        publish_on_commit("users.new", {"name": "cy"})
        with pytest.raises(Abort):
            create_user_and_abort("dan")
    assert list(User.objects.values_list("username", flat=True)) == ["cy"]
    assert [e.data for e in stored("users.new")] == [{"name": "cy"}]


@pytest.mark.django_db(transaction=True)
def test_publish_on_commit_outside_a_transaction_publishes_at_once(history_backend: str) -> None:
    publish_on_commit("users.new", "now")
    assert [e.data for e in stored("users.new")] == ["now"]
