"""Presence: the stores (memory, Redis), notices, expiry across processes, and the
WebSocket, HTTP and SSE surfaces."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from channels.testing import ApplicationCommunicator, HttpCommunicator, WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.core.asgi import get_asgi_application

import rtdelivery.asgi
from rtdelivery.conf import get_settings
from rtdelivery.presence import MemoryPresence, RedisPresence, get_presence
from tests.conftest import sync_redis
from tests.presence.conftest import WAIT, Watcher, headers_for, wait_until

EMPTY = {"users": [], "anonymous": 0, "count": 0}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def people(db: None, django_user_model: Any) -> dict[str, Any]:
    alice = django_user_model.objects.create_user(
        "alice", password="x", first_name="Alice", last_name="Liddell"
    )
    bob = django_user_model.objects.create_user("bob", password="x")
    return {"alice": alice, "bob": bob}


@pytest.fixture
def logged_in(transactional_db: None, django_user_model: Any) -> dict[str, Any]:
    """Users whose sessions are read from another thread (channels' database_sync_to_async
    only sees committed rows)."""
    alice = django_user_model.objects.create_user(
        "alice", password="x", first_name="Alice", last_name="Liddell"
    )
    staff = django_user_model.objects.create_user("sam", password="x", is_staff=True)
    # Sessions are created here, outside the event loop (the ORM is sync-only).
    return {
        "alice": alice,
        "staff": staff,
        "alice_headers": headers_for(alice),
        "staff_headers": headers_for(staff),
    }


def user_entry(user: Any, name: str, connections: int = 1) -> dict[str, Any]:
    return {"id": str(user.pk), "name": name, "connections": connections}


# -- the stores ------------------------------------------------------------------------


async def test_backend_follows_settings(backend: str) -> None:
    presence = get_presence()
    assert isinstance(presence, RedisPresence if backend == "redis" else MemoryPresence)
    assert get_presence() is presence


async def test_new_settings_give_a_new_store(configure: Callable[..., Any]) -> None:
    before = get_presence()
    configure(PRESENCE_TTL=5)
    assert get_presence() is not before


async def test_join_leave_snapshot_with_users(backend: str, people: dict[str, Any]) -> None:
    alice, bob = people["alice"], people["bob"]
    presence = get_presence()
    assert await presence.snapshot("room.a") == EMPTY

    await presence.join("room.a", "1.1", alice)
    await presence.join("room.a", "1.2", alice)  # the same user on a second connection
    await presence.join("room.a", "1.3", bob)
    await presence.join("room.a", "1.4", None)
    await presence.join("room.a", "1.5", AnonymousUser())
    await presence.join("room.b", "1.6", bob)

    assert await presence.snapshot("room.a") == {
        "users": sorted(
            [user_entry(alice, "Alice Liddell", 2), user_entry(bob, "bob")],
            key=lambda u: u["id"],
        ),
        "anonymous": 2,
        "count": 5,
    }
    assert await presence.snapshot("room.b") == {
        "users": [user_entry(bob, "bob")],
        "anonymous": 0,
        "count": 1,
    }

    await presence.leave("room.a", "1.1")
    await presence.leave("room.a", "1.1")  # twice: harmless
    await presence.leave("room.a", "1.4")
    snapshot = await presence.snapshot("room.a")
    assert snapshot["count"] == 3
    assert snapshot["anonymous"] == 1
    assert user_entry(alice, "Alice Liddell", 1) in snapshot["users"]

    for conn_id in ("1.2", "1.3", "1.5"):
        await presence.leave("room.a", conn_id)
    await presence.leave("room.b", "1.6")
    assert await presence.snapshot("room.a") == EMPTY
    assert await presence.snapshot("room.b") == EMPTY


async def test_join_and_leave_notices_reach_hub_subscribers(
    backend: str, people: dict[str, Any]
) -> None:
    alice = people["alice"]
    watcher = await Watcher().watch("room.n")
    other = await Watcher().watch("room.other")
    presence = get_presence()

    await presence.join("room.n", "9.1", alice)
    join = await watcher.notice()
    assert join["action"] == "join"
    assert join["topic"] == "room.n"
    assert join["connection"] == "9.1"
    assert join["user"] == {"id": str(alice.pk), "name": "Alice Liddell"}
    assert isinstance(join["time"], int)

    await presence.leave("room.n", "9.1")
    leave = await watcher.notice()
    assert (leave["action"], leave["connection"], leave["user"]) == (
        "leave",
        "9.1",
        {"id": str(alice.pk), "name": "Alice Liddell"},
    )

    # A second leave of the same connection announces nothing: the next notice is this join.
    await presence.leave("room.n", "9.1")
    await presence.join("room.n", "9.2", None)
    anonymous = await watcher.notice()
    assert (anonymous["action"], anonymous["connection"]) == ("join", "9.2")
    assert anonymous["user"] == {"id": None, "name": None}
    await presence.leave("room.n", "9.2")
    await watcher.notice()

    # Another topic's subscriber heard nothing; presence notices are not events.
    assert len(other.sub) == 0
    assert len(watcher.sub) == 0


# -- Redis: refresh and expiry -----------------------------------------------------------


def refresh_tasks() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if t.get_name() == "rtdelivery-presence-refresh" and not t.done()
    ]


async def test_one_refresh_task_per_loop(redis_settings: dict[str, Any], settings: Any) -> None:
    settings.RTDELIVERY = {**redis_settings, "TOPICS": {"room.*": {"presence": True}}}
    presence = get_presence()
    assert refresh_tasks() == []
    for n in range(30):
        await presence.join(f"room.{n % 3}", f"1.{n}", None)
    assert len(refresh_tasks()) == 1
    for n in range(30):
        await presence.leave(f"room.{n % 3}", f"1.{n}")
    # Nothing left to refresh: the task ends.
    await wait_until(lambda: not refresh_tasks(), what="the refresh task to end")


async def test_entries_outlive_ttl_while_refreshed_and_reappear_after_a_flush(
    redis_settings: dict[str, Any], redis_url: str, key_prefix: str, settings: Any
) -> None:
    settings.RTDELIVERY = {**redis_settings, "PRESENCE_TTL": 1}
    presence = get_presence()
    assert isinstance(presence, RedisPresence)
    await presence.join("room.r", "3.1", None)
    watcher = await Watcher().watch("room.r")

    # Two TTLs later it is still there: the loop's task refreshed it.
    deadline = time.monotonic() + 2.2
    while time.monotonic() < deadline:
        assert (await presence.snapshot("room.r"))["count"] == 1
        await asyncio.sleep(0.2)

    # Redis lost the keys (flushed, failed over): the next refresh puts the entry back
    # and announces it again.
    with sync_redis(redis_url) as client:
        assert client.delete(*presence.keys("room.r")) == 2
    assert (await presence.snapshot("room.r"))["count"] == 0
    await presence.refresh()
    assert (await presence.snapshot("room.r"))["count"] == 1
    again = await watcher.notice()
    assert (again["action"], again["connection"]) == ("join", "3.1")
    with sync_redis(redis_url) as client:
        for key in presence.keys("room.r"):
            assert key.startswith(key_prefix + "{room.r}")
            assert 0 < client.pttl(key) <= presence.key_ttl_ms


async def test_entries_of_a_loop_that_stopped_refreshing_expire(
    redis_settings: dict[str, Any], settings: Any
) -> None:
    """In-process stand-in for a crash: the refresh task stops, nobody leaves."""
    settings.RTDELIVERY = {**redis_settings, "PRESENCE_TTL": 1}
    presence = get_presence()
    watcher = await Watcher().watch("room.x")
    await presence.join("room.x", "4.1", None)
    assert (await watcher.notice())["action"] == "join"
    await presence.aclose()  # the "process" stops refreshing; its entry stays in Redis
    assert (await presence.snapshot("room.x"))["count"] == 1

    started = time.monotonic()
    await wait_until(lambda: _count(presence, "room.x", 0), within=WAIT, what="the entry to expire")
    assert time.monotonic() - started < 1.5 + 0.5
    leave = await watcher.notice()
    assert (leave["action"], leave["connection"]) == ("leave", "4.1")
    # Swept once: a second snapshot announces nothing more.
    await presence.snapshot("room.x")
    await asyncio.sleep(0.05)
    assert len(watcher.sub) == 0


async def _count(presence: Any, topic: str, count: int) -> bool:
    return bool((await presence.snapshot(topic))["count"] == count)


async def test_killed_process_entry_expires_and_leaves(
    redis_settings: dict[str, Any],
    redis_layer_settings: Callable[[str], dict[str, Any]],
    settings: Any,
) -> None:
    """A real second process joins through the library, then is SIGKILLed: its entry
    expires after PRESENCE_TTL and a leave is broadcast to this process's subscribers."""
    layer = redis_layer_settings("redis")
    rt_config = {**redis_settings, "PRESENCE_TTL": 1, "TOPICS": {"room.*": {"presence": True}}}
    settings.RTDELIVERY = rt_config
    watcher = await Watcher().watch("room.k")
    presence = get_presence()

    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "RT_PRESENCE_CONFIG": json.dumps({"RTDELIVERY": rt_config, "LAYER": layer}),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.presence.remote",
        "room.k",
        cwd=str(REPO),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        try:
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        except TimeoutError:
            line = ""
        assert line.startswith("joined "), line
        remote_id = line.split()[1]
        assert remote_id.startswith(f"{proc.pid}.")

        # Its join reached this process through the layer; the snapshot shows it.
        join = await watcher.notice()
        assert (join["action"], join["connection"]) == ("join", remote_id)
        assert join["user"] == {"id": "7", "name": "Remote Rita"}
        assert (await presence.snapshot("room.k"))["users"] == [
            {"id": "7", "name": "Remote Rita", "connections": 1}
        ]
        # Alive and refreshing: still there after more than a TTL.
        await asyncio.sleep(1.3)
        assert (await presence.snapshot("room.k"))["count"] == 1
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        _, stderr = await proc.communicate()
    assert proc.returncode == -signal.SIGKILL, stderr.decode()

    killed = time.monotonic()
    await wait_until(
        lambda: _count(presence, "room.k", 0), within=WAIT, what="the killed process's entry"
    )
    assert time.monotonic() - killed < WAIT
    leave = await watcher.notice()
    assert (leave["action"], leave["connection"]) == ("leave", remote_id)
    assert leave["user"] == {"id": "7", "name": "Remote Rita"}


# -- WebSocket ---------------------------------------------------------------------------


@pytest.fixture
def app(backend: str) -> Any:
    return rtdelivery.asgi.rtdelivery_application(get_asgi_application())


async def ws_open(app: Any, headers: Any = None) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(app, "/rt/ws", headers=headers or headers_for())
    connected, code = await comm.connect(WAIT)
    assert connected, f"WebSocket refused with {code}"
    return comm


async def ws_until(
    comm: WebsocketCommunicator, predicate: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The first frame matching ``predicate`` (earlier frames are skipped)."""
    deadline = time.monotonic() + WAIT
    while True:
        frame = await comm.receive_json_from(max(0.01, deadline - time.monotonic()))
        if predicate(frame):
            return dict(frame)


def presence_frame(action: str | None = None, connection: str | None = None) -> Any:
    def match(frame: dict[str, Any]) -> bool:
        return (
            frame.get("op") == "presence"
            and (action is None or frame.get("action") == action)
            and (connection is None or frame.get("connection") == connection)
        )

    return match


async def test_websocket_presence(app: Any, logged_in: dict[str, Any]) -> None:
    alice = logged_in["alice"]
    first = await ws_open(app)
    await first.send_json_to({"op": "subscribe", "topic": "room.ws", "ref": 1})
    subscribed = await ws_until(first, lambda f: f.get("op") == "subscribed")
    assert subscribed["ref"] == 1
    own = await ws_until(first, presence_frame("join"))
    assert own["user"] == {"id": None, "name": None}
    assert own["topic"] == "room.ws"

    await first.send_json_to({"op": "presence", "topic": "room.ws", "ref": "p1"})
    snapshot = await ws_until(first, lambda f: f.get("ref") == "p1")
    assert snapshot == {
        "op": "presence",
        "topic": "room.ws",
        "ref": "p1",
        "users": [],
        "anonymous": 1,
        "count": 1,
    }

    second = await ws_open(app, logged_in["alice_headers"])
    await second.send_json_to({"op": "subscribe", "topic": "room.ws"})
    await ws_until(second, lambda f: f.get("op") == "subscribed")
    joined = await ws_until(first, presence_frame("join"))
    assert joined["user"] == {"id": str(alice.pk), "name": "Alice Liddell"}
    second_id = joined["connection"]
    assert second_id != own["connection"]
    assert second_id.startswith(f"{os.getpid()}.")

    await first.send_json_to({"op": "presence", "topic": "room.ws", "ref": "p2"})
    snapshot = await ws_until(first, lambda f: f.get("ref") == "p2")
    assert snapshot["users"] == [user_entry(alice, "Alice Liddell")]
    assert (snapshot["anonymous"], snapshot["count"]) == (1, 2)

    # The second one disconnects: a leave.
    await second.disconnect(timeout=WAIT)
    left = await ws_until(first, presence_frame("leave"))
    assert (left["connection"], left["user"]["id"]) == (second_id, str(alice.pk))

    # Unsubscribing leaves too (the frame goes to the other watchers, none left here).
    await first.send_json_to({"op": "unsubscribe", "topic": "room.ws"})
    await ws_until(first, lambda f: f.get("op") == "unsubscribed")
    assert await get_presence().snapshot("room.ws") == EMPTY
    await first.disconnect(timeout=WAIT)


async def test_websocket_presence_disabled_and_policy(app: Any) -> None:
    comm = await ws_open(app)
    await comm.send_json_to({"op": "presence", "topic": "plain.x", "ref": "a"})
    error = await ws_until(comm, lambda f: f.get("ref") == "a")
    assert (error["op"], error["code"]) == ("error", "presence_disabled")

    # Subscribing to a topic without presence joins nothing.
    await comm.send_json_to({"op": "subscribe", "topic": "plain.x"})
    await ws_until(comm, lambda f: f.get("op") == "subscribed")
    assert await get_presence().snapshot("plain.x") == EMPTY

    # Presence needs subscribe permission.
    await comm.send_json_to({"op": "presence", "topic": "staffroom.a", "ref": "b"})
    error = await ws_until(comm, lambda f: f.get("ref") == "b")
    assert (error["op"], error["code"]) == ("error", "forbidden")
    await comm.disconnect(timeout=WAIT)


# -- HTTP ----------------------------------------------------------------------------------


async def http_get(app: Any, path: str, headers: Any = None) -> tuple[int, Any]:
    comm = HttpCommunicator(app, "GET", path, headers=headers or headers_for(origin=False))
    try:
        response = await comm.get_response(timeout=WAIT)
    finally:
        await comm.wait(WAIT)
    return response["status"], json.loads(response["body"])


async def test_http_presence_snapshot(app: Any, people: dict[str, Any]) -> None:
    presence = get_presence()
    await presence.join("room.h", "5.1", people["bob"])
    await presence.join("room.h", "5.2", None)
    status, body = await http_get(app, "/rt/presence?topic=room.h")
    assert status == 200
    assert body == {
        "topic": "room.h",
        "users": [user_entry(people["bob"], "bob")],
        "anonymous": 1,
        "count": 2,
    }
    status, body = await http_get(app, "/rt/presence?topic=room.empty")
    assert (status, body) == (200, {"topic": "room.empty", **EMPTY})


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("topic=plain.x", 400, "presence_disabled"),
        ("topic=staffroom.a", 403, "forbidden"),
        ("topic=nowhere.a", 403, "forbidden"),
        ("topic=room.a&topic=room.b", 400, "bad_request"),
        ("", 400, "invalid_topic"),
        ("topic=bad%20topic", 400, "invalid_topic"),
    ],
)
async def test_http_presence_errors(app: Any, query: str, status: int, code: str) -> None:
    answer_status, body = await http_get(app, "/rt/presence?" + query)
    assert (answer_status, body["error"]["code"]) == (status, code), body


async def test_http_presence_policy_allows_staff(app: Any, logged_in: dict[str, Any]) -> None:
    status, body = await http_get(app, "/rt/presence?topic=staffroom.a", logged_in["staff_headers"])
    assert (status, body) == (200, {"topic": "staffroom.a", **EMPTY})
    status, body = await http_get(app, "/rt/presence?topic=staffroom.a", logged_in["alice_headers"])
    assert (status, body["error"]["code"]) == (403, "forbidden")


# -- SSE -----------------------------------------------------------------------------------


class SSE:
    """An open SSE response read event by event."""

    def __init__(self, app: Any, query: str, headers: list[tuple[bytes, bytes]]) -> None:
        self.comm = ApplicationCommunicator(
            app,
            {
                "type": "http",
                "http_version": "1.1",
                "method": "GET",
                "path": "/rt/sse",
                "query_string": query.encode(),
                "headers": headers,
            },
        )
        self.buffer = ""

    async def open(self) -> SSE:
        await self.comm.send_input({"type": "http.request", "body": b""})
        start = await self.comm.receive_output(WAIT)
        assert (start["type"], start["status"]) == ("http.response.start", 200), start
        return self

    async def event(self, name: str) -> dict[str, Any]:
        """The data of the next event called ``name`` (others and comments are skipped)."""
        deadline = time.monotonic() + WAIT
        while True:
            while "\n\n" in self.buffer:
                block, self.buffer = self.buffer.split("\n\n", 1)
                fields = dict(line.partition(": ")[::2] for line in block.split("\n"))
                if fields.get("event") == name:
                    return dict(json.loads(fields["data"]))
            chunk = await self.comm.receive_output(max(0.01, deadline - time.monotonic()))
            assert chunk["type"] == "http.response.body", chunk
            self.buffer += chunk.get("body", b"").decode()

    async def close(self) -> None:
        await self.comm.send_input({"type": "http.disconnect"})
        await self.comm.wait(WAIT)


async def test_sse_stream_joins_and_leaves(app: Any, logged_in: dict[str, Any]) -> None:
    alice = logged_in["alice"]
    watcher = await Watcher().watch("room.s")
    stream = await SSE(app, "topic=room.s&topic=plain.s", logged_in["alice_headers"]).open()
    await stream.event("rt.open")
    own = await stream.event("rt.presence")
    assert (own["action"], own["topic"]) == ("join", "room.s")
    assert own["user"] == {"id": str(alice.pk), "name": "Alice Liddell"}
    assert own["connection"].startswith(f"{os.getpid()}.")
    assert (await watcher.notice())["connection"] == own["connection"]

    status, body = await http_get(app, "/rt/presence?topic=room.s")
    assert (status, body["users"], body["count"]) == (
        200,
        [user_entry(alice, "Alice Liddell")],
        1,
    )

    # Someone else joins: the stream sees it as rt.presence.
    await get_presence().join("room.s", "6.1", None)
    other = await stream.event("rt.presence")
    assert (other["action"], other["connection"]) == ("join", "6.1")
    assert (await watcher.notice())["connection"] == "6.1"

    # The stream ends: it leaves.
    await stream.close()
    leave = await watcher.notice()
    assert (leave["action"], leave["connection"]) == ("leave", own["connection"])
    snapshot = await get_presence().snapshot("room.s")
    assert (snapshot["users"], snapshot["anonymous"]) == ([], 1)
    await get_presence().leave("room.s", "6.1")


async def test_sse_anonymous_stream_is_counted(app: Any) -> None:
    stream = await SSE(app, "topic=room.anon", headers_for()).open()
    own = await stream.event("rt.presence")
    assert own["user"] == {"id": None, "name": None}
    assert (await get_presence().snapshot("room.anon"))["anonymous"] == 1
    await stream.close()
    await wait_until(lambda: _count(get_presence(), "room.anon", 0), what="the stream to leave")


def test_connection_ids_are_unique_per_process() -> None:
    from rtdelivery.presence import connection_id

    ids = {connection_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(i.startswith(f"{os.getpid()}.") for i in ids)


def test_presence_ttl_setting_drives_the_refresh_interval(settings: Any) -> None:
    settings.RTDELIVERY = {"HISTORY_BACKEND": "redis", "REDIS_URL": "redis://x", "PRESENCE_TTL": 9}
    store = RedisPresence(get_settings())
    assert store.interval == 3.0
    assert store.ttl_ms == 9000
