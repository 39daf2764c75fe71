"""Presence of polling clients (``client=<id>`` on poll and long poll), with both stores:
present from a request until ``PRESENCE_POLL_TTL`` seconds after it (a long poll: after its
timeout), joins and leaves seen by WebSocket and SSE subscribers as for connections, and
across processes (Redis)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.core.asgi import get_asgi_application

import rtdelivery.asgi
from rtdelivery import apublish
from rtdelivery.presence import get_presence, poll_connection_id
from tests.presence.conftest import WAIT, Watcher, headers_for, wait_until
from tests.presence.test_presence import REPO, SSE, presence_frame, ws_open, ws_until

CLIENT = "client-0123456789abcdef"
OTHER = "f3b0c4a2-8d5e-4c1a-9e0b-2a7d6c5f4e31"


@pytest.fixture
def alice(transactional_db: None, django_user_model: Any) -> tuple[Any, Any]:
    """A user and the headers of a session of hers (read from another thread: committed)."""
    user = django_user_model.objects.create_user(
        "alice", password="x", first_name="Alice", last_name="Liddell"
    )
    return user, headers_for(user)


@pytest.fixture
def app(backend: str) -> Any:
    return rtdelivery.asgi.rtdelivery_application(get_asgi_application())


async def http(app: Any, path: str, headers: Any = None) -> tuple[int, Any]:
    comm = HttpCommunicator(app, "GET", path, headers=headers or headers_for(origin=False))
    try:
        response = await comm.get_response(timeout=WAIT)
    finally:
        await comm.wait(WAIT)
    body = json.loads(response["body"]) if response["body"] else None
    return response["status"], body


async def count(topic: str) -> int:
    return int((await get_presence().snapshot(topic))["count"])


async def watching(app: Any, topic: str) -> WebsocketCommunicator:
    """A WebSocket subscribed to ``topic``, past its own presence join."""
    ws = await ws_open(app)
    await ws.send_json_to({"op": "subscribe", "topic": topic})
    await ws_until(ws, lambda f: f.get("op") == "subscribed")
    await ws_until(ws, presence_frame("join"))
    return ws


async def test_a_polling_client_joins_once_and_leaves_when_no_longer_seen(
    app: Any, configure: Callable[..., Any]
) -> None:
    configure(PRESENCE_POLL_TTL=1)
    ws = await watching(app, "room.p")
    status, _ = await http(app, f"/rt/poll?topic=room.p&topic=plain.p&client={CLIENT}")
    assert status == 200
    join = await ws_until(ws, presence_frame("join"))
    connection = join["connection"]
    assert connection.startswith("c.")
    assert CLIENT not in connection  # the client's own id is not shown to others
    assert join["user"] == {"id": None, "name": None}
    assert await count("room.p") == 2  # the socket and the polling client
    assert await count("plain.p") == 0  # no presence there

    # Seen again within the TTL: no second join, still one entry.
    last = time.monotonic()
    for _ in range(3):
        status, _ = await http(app, f"/rt/poll?topic=room.p&client={CLIENT}")
        assert status == 200
        last = time.monotonic()
    assert await count("room.p") == 2

    leave = await ws_until(ws, presence_frame())
    gone = time.monotonic()
    assert (leave["action"], leave["connection"]) == ("leave", connection)
    assert gone - last >= 0.9  # not before PRESENCE_POLL_TTL without a request
    assert gone - last < WAIT
    assert await count("room.p") == 1
    await ws.disconnect(timeout=WAIT)


async def test_a_polling_client_is_its_user(
    app: Any, configure: Callable[..., Any], alice: tuple[Any, Any]
) -> None:
    alice, session = alice
    watcher = await Watcher().watch("room.u")
    status, _ = await http(app, f"/rt/poll?topic=room.u&client={CLIENT}", session)
    assert status == 200
    join = await watcher.notice()
    assert join["user"] == {"id": str(alice.pk), "name": "Alice Liddell"}
    assert join["connection"] == poll_connection_id(CLIENT, alice)
    # The same client id without the session is another entry (no one takes over hers).
    status, _ = await http(app, f"/rt/poll?topic=room.u&client={CLIENT}")
    anonymous = await watcher.notice()
    assert anonymous["action"] == "join"
    assert anonymous["connection"] != join["connection"]
    snapshot = await get_presence().snapshot("room.u")
    assert (snapshot["count"], snapshot["anonymous"]) == (2, 1)
    assert snapshot["users"] == [{"id": str(alice.pk), "name": "Alice Liddell", "connections": 1}]


async def test_a_held_long_poll_is_present_until_its_timeout_and_ttl(
    app: Any, configure: Callable[..., Any]
) -> None:
    configure(PRESENCE_POLL_TTL=1)
    watcher = await Watcher().watch("room.l")
    started = time.monotonic()
    held = asyncio.ensure_future(http(app, f"/rt/longpoll?topic=room.l&timeout=2&client={OTHER}"))
    join = await watcher.notice()
    assert join["action"] == "join"
    # Held for longer than PRESENCE_POLL_TTL: still present.
    await wait_until(lambda: time.monotonic() - started > 1.3, what="more than the TTL")
    assert await count("room.l") == 1
    await apublish("room.l", {"n": 1})
    status, body = await asyncio.wait_for(held, WAIT)
    assert status == 200
    assert [e["data"] for e in body["events"]] == [{"n": 1}]
    leave = await watcher.notice()
    assert (leave["action"], leave["connection"]) == ("leave", join["connection"])
    assert time.monotonic() - started >= 2.9  # timeout (2) + PRESENCE_POLL_TTL (1)


async def test_a_long_poll_with_a_backlog_counts_too(
    app: Any, configure: Callable[..., Any]
) -> None:
    cursor = (await http(app, "/rt/poll?topic=room.b"))[1]["cursor"]
    await apublish("room.b", {"n": 1})
    watcher = await Watcher().watch("room.b")
    status, body = await http(
        app, f"/rt/longpoll?topic=room.b&cursor={cursor}&timeout=0&client={CLIENT}"
    )
    assert (status, len(body["events"])) == (200, 1)
    assert (await watcher.notice())["action"] == "join"
    assert await count("room.b") == 1


async def test_nothing_without_client_or_presence_topics(
    app: Any, configure: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("presence was touched")

    monkeypatch.setattr(type(get_presence()), "seen", never)
    for path in (
        "/rt/poll?topic=room.n",  # no client=
        f"/rt/poll?topic=plain.n&client={CLIENT}",  # no presence on the topic
        f"/rt/longpoll?topic=plain.n&timeout=0&client={CLIENT}",
    ):
        status, _ = await http(app, path)
        assert status == 200, path
    assert await count("room.n") == 0


async def test_a_refused_request_is_not_present(app: Any) -> None:
    watcher = await Watcher().watch("staffroom.a")
    status, body = await http(app, f"/rt/poll?topic=room.r&topic=staffroom.a&client={CLIENT}")
    assert (status, body["error"]["code"], body["error"]["topic"]) == (
        403,
        "forbidden",
        "staffroom.a",
    )
    assert await count("room.r") == 0
    assert await count("staffroom.a") == 0
    assert len(watcher.sub) == 0


async def test_a_long_poll_refused_with_429_is_not_present(
    app: Any, configure: Callable[..., Any]
) -> None:
    configure(MAX_HELD_REQUESTS=1)
    watcher = await Watcher().watch("room.h")
    # The one hold there is: a long poll of another client, present while held.
    held = asyncio.ensure_future(http(app, f"/rt/longpoll?topic=room.h&timeout=5&client={OTHER}"))
    join = await watcher.notice()
    status, body = await http(app, f"/rt/longpoll?topic=room.h&timeout=1&client={CLIENT}")
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert await count("room.h") == 1
    await apublish("room.h", {"n": 1})
    assert (await asyncio.wait_for(held, WAIT))[0] == 200
    # Only the held client ever joined.
    snapshot = await get_presence().snapshot("room.h")
    assert snapshot["count"] == 1, snapshot
    assert join["action"] == "join"
    # What the watcher got meanwhile: the event, and no join of the refused client.
    items = await asyncio.wait_for(watcher.sub.get(), WAIT)
    joins = [i for i in items if getattr(i, "kind", None) == "presence"]
    assert [i.data["action"] for i in joins if i.data["action"] == "join"] == [], joins


async def test_polling_client_ids_are_bounded_like_connections(
    app: Any, configure: Callable[..., Any]
) -> None:
    """A client cycling ``client=`` ids counts against MAX_CONNECTIONS_PER_IP (anonymous)
    as WebSockets do, instead of joining once per id."""
    configure(MAX_CONNECTIONS_PER_IP=2)
    ids = [f"cycling-{n:04d}" for n in range(3)]
    for client in ids[:2]:
        assert (await http(app, f"/rt/poll?topic=room.c&client={client}"))[0] == 200
    status, body = await http(app, f"/rt/poll?topic=room.c&client={ids[2]}")
    assert (status, body["error"]["code"]) == (429, "too_many_connections")
    assert await count("room.c") == 2
    # A known id goes on being seen; a topic without presence costs nothing and is not
    # refused.
    assert (await http(app, f"/rt/poll?topic=room.c&client={ids[0]}"))[0] == 200
    assert (await http(app, f"/rt/poll?topic=plain.c&client={ids[2]}"))[0] == 200


@pytest.mark.parametrize("endpoint", ["poll", "longpoll", "sse"])
@pytest.mark.parametrize(
    "client", ["short", "x" * 65, "bad id!", "", "caf%C3%A9-0123", "a" * 8 + "%2F"]
)
async def test_client_must_be_8_to_64_safe_characters(app: Any, endpoint: str, client: str) -> None:
    # Checked before the policy: a 400 even on a topic this client may not read.
    status, body = await http(app, f"/rt/{endpoint}?topic=staffroom.a&timeout=0&client={client}")
    assert (status, body["error"]["code"]) == (400, "bad_request")
    assert "'client'" in body["error"]["message"]


async def test_client_at_most_once(app: Any) -> None:
    status, body = await http(app, f"/rt/poll?topic=room.a&client={CLIENT}&client={OTHER}")
    assert (status, body["error"]["code"]) == (400, "bad_request")


async def test_an_sse_stream_with_client_counts_once(app: Any) -> None:
    stream = await SSE(app, f"topic=room.s&client={CLIENT}", headers_for()).open()
    own = await stream.event("rt.presence")
    assert own["connection"].startswith(f"{os.getpid()}.")  # the stream's own connection
    assert await count("room.s") == 1
    await stream.close()
    await wait_until(lambda: _is(count("room.s"), 0), what="the stream to leave")


async def _is(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def test_a_client_seen_by_another_process_joins_and_leaves_here(
    redis_settings: dict[str, Any],
    redis_layer_settings: Callable[[str], dict[str, Any]],
    settings: Any,
) -> None:
    """A second process (the library, as a server would run it) sees a polling client:
    this process's subscribers get the join, then the leave once it is not seen again."""
    layer = redis_layer_settings("redis")
    rt_config = {
        **redis_settings,
        "PRESENCE_POLL_TTL": 1,
        "TOPICS": {"room.*": {"subscribe": "anyone", "presence": True}},
    }
    settings.RTDELIVERY = rt_config
    watcher = await Watcher().watch("room.x")
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
        "room.x",
        "--poll",
        CLIENT,
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
        assert line.startswith("seen "), line
        remote_id = line.split()[1]
        join = await watcher.notice()
        assert (join["action"], join["connection"]) == ("join", remote_id)
        assert join["user"] == {"id": "7", "name": "Remote Rita"}
        assert (await get_presence().snapshot("room.x"))["count"] == 1
        # The other process sweeps its client when due: the leave reaches this one.
        leave = await watcher.notice()
        assert (leave["action"], leave["connection"]) == ("leave", remote_id)
        assert (await get_presence().snapshot("room.x"))["count"] == 0
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.communicate()


async def test_a_poll_refreshing_its_entry_costs_one_round_trip(
    redis_settings: dict[str, Any],
    redis_layer_settings: Callable[[str], dict[str, Any]],
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every presence topic of a request in one pipeline (one round trip), and nothing
    announced when the client was already there."""
    from rtdelivery.presence import RedisPresence

    redis_layer_settings("redis")
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.RTDELIVERY = {
        **redis_settings,
        "TAIL_CHECK_INTERVAL": 0,
        "TOPICS": {"room.*": {"subscribe": "anyone", "presence": True}},
    }
    app = rtdelivery.asgi.rtdelivery_application(get_asgi_application())
    calls: list[int] = []
    touch = RedisPresence._touch

    async def counted(self: RedisPresence, touches: list[Any]) -> Any:
        calls.append(len(touches))
        return await touch(self, touches)

    monkeypatch.setattr(RedisPresence, "_touch", counted)
    watcher = await Watcher().watch("room.c1")
    path = f"/rt/poll?topic=room.c1&topic=room.c2&topic=room.c3&client={CLIENT}"
    assert (await http(app, path))[0] == 200
    assert calls == [3]  # one pipeline: a script per topic
    assert (await watcher.notice())["action"] == "join"
    calls.clear()
    assert (await http(app, path))[0] == 200
    assert calls == [3]
    # Refreshed: no frame. (A marker sent after it through the same layer comes first.)
    await get_presence().join("room.c1", "marker.1", None)
    assert (await watcher.notice())["connection"] == "marker.1"
    await get_presence().leave("room.c1", "marker.1")
