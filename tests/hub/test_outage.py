"""Redis unavailable: every Redis-backed operation raises ``Unavailable`` (never a raw
Redis or socket error, never the server's address), the outage is logged once when it
starts and once when it ends, and everything works again without a restart.

Each test runs history, presence and the channel layer on a private redis-server that it
stops and starts (never the shared one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction

from rtdelivery import outage
from rtdelivery.connections import aclose_redis
from rtdelivery.core.errors import HistoryUnavailable, PresenceUnavailable, Unavailable
from rtdelivery.core.events import Event
from rtdelivery.history import get_history, reset_history
from rtdelivery.hub import aclose_hub, get_hub
from rtdelivery.presence import aclose_presence, get_presence, reset_presence
from rtdelivery.publishing import apublish, close_publisher, publish, publish_on_commit
from rtdelivery.subscriber import Item, Subscriber
from tests.conftest import find_free_port, layer_config, reset_channel_layers
from tests.history.conftest import RedisServer
from tests.hub.conftest import WAIT, collect_until, group_members, wait_until

TOPICS = {"room.*": {"subscribe": "anyone", "publish": "anyone", "presence": True}}
MESSAGE = "The realtime backend is unavailable; retry later."


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(find_free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["redis", "pubsub"])
async def configure(
    request: pytest.FixtureRequest, settings: Any, server: RedisServer
) -> AsyncIterator[Callable[..., None]]:
    """configure(**extra): history, presence and the ``param`` layer on ``server``.

    Afterwards everything is closed while ``server`` still runs (so closing is not
    an outage of its own) and the test's settings still apply.
    """

    def apply(**extra: Any) -> None:
        reset_channel_layers()
        settings.CHANNEL_LAYERS = {
            "default": layer_config(request.param, server.url, "rtdtest:outage:")
        }
        settings.RTDELIVERY = {
            "HISTORY_BACKEND": "redis",
            "REDIS_URL": server.url,
            "KEY_PREFIX": "rtdtest:outage:",
            "TOPICS": TOPICS,
            **extra,
        }
        reset_channel_layers()

    outage.reset()  # earlier tests' outages and log rate limit
    yield apply
    await aclose_presence()
    await aclose_hub()
    await aclose_redis()
    await asyncio.to_thread(close_publisher)
    reset_presence()
    reset_history()
    reset_channel_layers()
    outage.reset()


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "rtdelivery.outage"]


def events(items: list[Item]) -> list[Event]:
    return [i for i in items if isinstance(i, Event)]


async def assert_unavailable(call: Callable[[], Any], port: int) -> None:
    with pytest.raises(Unavailable) as info:
        await call()
    error = info.value
    assert type(error) is Unavailable  # the one class, whatever the operation
    assert (error.code, error.status, error.message) == ("unavailable", 503, MESSAGE)
    assert str(error) == MESSAGE  # nothing about the server, its address or the error
    assert str(port) not in error.message
    assert 1 <= error.retry_after <= 5


def test_former_names_are_the_one_class() -> None:
    assert HistoryUnavailable is Unavailable
    assert PresenceUnavailable is Unavailable
    assert Unavailable().as_dict() == {"code": "unavailable", "message": MESSAGE}


async def test_every_operation_raises_unavailable_logs_once_and_recovers(
    configure: Callable[..., None], server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Every background loop runs often during the outage: tail check, group refresh,
    # presence refresh (PRESENCE_TTL 1 s: every 1/3 s) and the hub's receive loop.
    configure(TAIL_CHECK_INTERVAL=0.05, GROUP_REFRESH_INTERVAL=0.05, PRESENCE_TTL=1)
    caplog.set_level(logging.DEBUG)
    hub, history, presence = get_hub(), get_history(), get_presence()
    watcher = Subscriber(maxsize=1000)
    await hub.subscribe(watcher, "room.a")
    await presence.join("room.a", "conn.1", None)  # left during the outage
    await presence.join("room.a", "conn.3", None)  # refreshed during the outage
    before = await apublish("room.a", "before")
    await collect_until(watcher, before.seq)

    server.stop()
    port = server.port
    operations: dict[str, Callable[[], Any]] = {
        "history append": lambda: history.append("room.a", "message", "1", 0),
        "history read head": lambda: history.read("room.a", None),
        "history read since": lambda: history.read("room.a", before.position),
        "history latest": lambda: history.latest("room.a", 10),
        "history heads": lambda: history.heads(["room.a"]),
        "apublish": lambda: apublish("room.a", "lost"),
        "sync publish": lambda: asyncio.to_thread(publish, "room.a", "lost"),
        "presence join": lambda: presence.join("room.a", "conn.2", None),
        "presence leave": lambda: presence.leave("room.a", "conn.1"),
        "presence snapshot": lambda: presence.snapshot("room.a"),
        "subscribe, new topic (group_add)": lambda: hub.subscribe(Subscriber(10), "room.b"),
        "subscribe, joined topic (history)": lambda: hub.subscribe(Subscriber(10), "room.a"),
    }
    for _round in range(3):
        for call in operations.values():
            await assert_unavailable(call, port)
    assert hub.topics == ["room.a"]  # the failed subscribes left nothing behind
    # The background loops keep failing meanwhile, quietly.
    failed = outage.failures()
    await wait_until(lambda: outage.failures() > failed + 10, what="background loops retrying")

    (start,) = outage_lines(caplog)  # one line for all of that
    assert start.levelname == "WARNING"
    # What failed and how is for the server's log (the first failure may be any of them).
    assert "clients get 'unavailable' (503)" in start.getMessage()
    assert "First failure: " in start.getMessage()
    assert "ConnectionError" in start.getMessage()
    tracebacks = [r for r in caplog.records if r.exc_info and r.name.startswith("rtdelivery")]
    assert tracebacks == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    server.start()  # back, empty
    after = await apublish("room.a", "after")  # no restart of anything
    lines = outage_lines(caplog)
    assert [r.levelname for r in lines] == ["WARNING", "INFO"]
    assert "available again" in lines[1].getMessage()
    assert after.seq == 1  # Redis came back empty: a new epoch
    assert after.epoch != before.epoch
    # The watcher subscribed before the outage gets the new epoch's events.
    assert [e.data for e in events(await collect_until(watcher, after.seq))] == ["after"]
    await presence.join("room.a", "conn.2", None)

    async def count() -> bool:
        return (await presence.snapshot("room.a"))["count"] == 2

    # conn.3 is put back by its refresh; conn.1's failed leave still forgot it locally.
    await wait_until(count, what="conn.2 and conn.3 present")
    sub = Subscriber(maxsize=10)
    await hub.subscribe(sub, "room.b")
    second = await apublish("room.b", "live")
    assert [e.data for e in events(await collect_until(sub, second.seq))] == ["live"]
    assert len(outage_lines(caplog)) == 2


async def test_the_hub_rejoins_its_groups_when_redis_is_back(
    configure: Callable[..., None],
    server: RedisServer,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No tail check, no periodic refresh: only the hub's own recovery brings the
    memberships back after Redis restarts empty."""
    configure(TAIL_CHECK_INTERVAL=0, GROUP_REFRESH_INTERVAL=3600)
    caplog.set_level(logging.INFO, logger="rtdelivery.outage")
    layer_backend = request.node.callspec.params["configure"]
    hub = get_hub()
    watcher = Subscriber(maxsize=1000)
    await hub.subscribe(watcher, "room.r")

    def members() -> set[str]:
        return group_members(layer_backend, hub.layer, "room.r", server.url)

    await wait_until(lambda: members() == {hub.channel}, what="joined")
    server.stop()
    await assert_unavailable(lambda: apublish("room.r", "lost"), server.port)
    server.start()  # empty: the layer's memberships are gone

    first = await apublish("room.r", "first")
    await wait_until(lambda: members() == {hub.channel}, within=WAIT, what="joined again")
    assert [e.data for e in events(await collect_until(watcher, first.seq))] == ["first"]
    # And live on the layer again: a new event arrives without any tail check.
    second = await apublish("room.r", "second")
    assert [e.data for e in events(await collect_until(watcher, second.seq))] == ["second"]
    assert [r.levelname for r in outage_lines(caplog)] == ["WARNING", "INFO"]


def test_flapping_outages_are_rate_limited(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    outage.reset()
    caplog.set_level(logging.INFO, logger="rtdelivery.outage")
    error = ConnectionError("Error 111 connecting to 127.0.0.1:6399. Connection refused.")
    for _ in range(100):
        outage.record_failure(error, "history read")
    assert outage.is_down()
    assert outage.failures() == 100
    outage.record_success()
    outage.record_success()
    assert not outage.is_down()
    # Outages starting within a minute of the last WARNING: counted, not logged.
    for _ in range(3):
        outage.record_failure(error, "history read")
        outage.record_success()
    outage.record_failure(error, "presence update")  # this one lasts
    assert [r.levelname for r in outage_lines(caplog)] == ["WARNING", "INFO"]

    monkeypatch.setattr(outage, "LOG_INTERVAL", 0.0)  # "a minute later"
    outage.record_failure(error, "presence update")
    outage.record_failure(error, "history append")
    outage.record_success()
    lines = outage_lines(caplog)
    assert [r.levelname for r in lines] == ["WARNING", "INFO", "WARNING", "WARNING", "INFO"]
    start, reminder, end = (r.getMessage() for r in lines[2:])
    assert "unavailable; clients get 'unavailable' (503)" in start
    assert "(3 shorter outage(s) since the last report not logged)" in start
    assert "First failure: presence update: ConnectionError: Error 111" in start
    assert "still unavailable after 0s, 3 failed operations" in reminder
    assert "Last failure: history append" in reminder
    assert "available again after" in end
    assert "(3 failed operations)" in end
    assert all(r.exc_info is None for r in lines)


@pytest.mark.django_db(transaction=True)
def test_publish_on_commit_during_an_outage_logs_the_lost_event(
    settings: Any, server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    outage.reset()
    settings.RTDELIVERY = {
        "HISTORY_BACKEND": "redis",
        "REDIS_URL": server.url,
        "KEY_PREFIX": "rtdtest:outage:",
        "TOPICS": TOPICS,
    }
    settings.CHANNEL_LAYERS = {"default": layer_config("memory")}
    reset_channel_layers()
    caplog.set_level(logging.INFO)
    try:
        publish("room.c", "before")  # the publisher thread, connected
        server.stop()
        with pytest.raises(Unavailable):
            publish("room.c", "refused")
        with transaction.atomic():
            User.objects.create(username="ada")
            publish_on_commit("room.c", "lost")  # committed: nobody to raise to
        (lost,) = [r for r in caplog.records if r.name == "rtdelivery.publish"]
        assert lost.getMessage() == "Event on room.c not published after commit: Redis unavailable"
        assert [r.exc_info for r in caplog.records if r.levelno >= logging.WARNING] == [None] * 2
        server.start()
        assert publish("room.c", "after").seq == 1  # Redis came back empty
        assert [r.levelname for r in outage_lines(caplog)] == ["WARNING", "INFO"]
    finally:
        close_publisher()
        reset_history()
        reset_channel_layers()
        outage.reset()
