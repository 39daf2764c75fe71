"""Access ends when it should, in process: token expiry mid-stream (SSE, WebSocket, long
poll) with zero loss after a refresh, rtdelivery.disconnect()/unsubscribe() and logout.

Across two real server processes: tests/e2e/test_disconnect_e2e.py.
"""

# ruff: noqa: F811  (the fixtures imported from tests/transports/conftest.py are used by name)
from __future__ import annotations

import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings

import rtdelivery
from rtdelivery import access
from rtdelivery.conf import validate
from rtdelivery.core.cursors import Cursor
from rtdelivery.tokens import connection_token
from tests.transports.conftest import (  # noqa: F401  (fixtures used by name)
    ORIGIN,
    PREFIX,
    WAIT,
    Identity,
    _close_hub_after_test,
    application,
    get,
    open_sse,
    people,
    rt,
    ws_close,
    ws_closed_with,
    ws_recv,
)

TOPICS = {
    "user.*": {"subscribe": ["owner", "staff"], "publish": "staff"},
    "public.*": {"subscribe": "anyone", "publish": "anyone"},
}
#: Token lifetime for the expiry tests (seconds): long enough to subscribe and receive.
TTL = 2.0


@pytest.fixture
def app(rt: Any, application: Any) -> Any:
    rt(TOPICS=TOPICS)
    return application


async def _ws(app: Any, who: Identity | None = None, token: str | None = None) -> Any:
    path = f"{PREFIX}ws" + (f"?access_token={token}" if token else "")
    headers = who.headers() if who else [(b"host", b"testserver"), (b"origin", ORIGIN.encode())]
    comm = WebsocketCommunicator(app, path, headers=headers)
    connected, code = await comm.connect(WAIT)
    assert connected, code
    return comm


async def _subscribe(comm: Any, topic: str, since: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"op": "subscribe", "topic": topic, "ref": topic}
    if since is not None:
        frame["since"] = since
    await comm.send_json_to(frame)
    reply = await ws_recv(comm)
    assert reply["op"] == "subscribed", reply
    return reply


async def _ws_until(comm: Any, op: str, within: float = WAIT) -> tuple[list[dict], dict]:
    """Frames until one with ``op`` (events before it, and that frame)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while True:
        frame = await ws_recv(comm, max(0.01, deadline - time.monotonic()))
        if frame["op"] == op:
            return seen, frame
        seen.append(frame)


async def _sse_until(stream: Any, event: str, within: float = WAIT) -> tuple[list[dict], dict]:
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + within
    while True:
        frame = await stream.next_event(max(0.01, deadline - time.monotonic()))
        if frame.get("event") == event:
            return seen, frame
        seen.append(frame)


def _user_of(people: dict[str, Identity], name: str) -> Any:
    return people[name].user


# -- token expiry mid-stream -----------------------------------------------------------


async def test_ws_token_expiry_ends_with_cursor_and_a_fresh_token_resumes_with_no_loss(
    app: Any, people: dict[str, Identity]
) -> None:
    owner = _user_of(people, "owner")
    topic = f"user.{owner.pk}"
    comm = await _ws(app, token=connection_token(owner, ttl=TTL))
    await _subscribe(comm, topic)
    for n in range(3):
        await rtdelivery.apublish(topic, n)
    events, error = await _ws_until(comm, "error", within=TTL + WAIT)
    assert error["code"] == "token_expired", error
    assert [e["data"] for e in events] == [0, 1, 2]
    assert await ws_closed_with(comm) == 4003
    # Published while the client fetches a fresh token: not lost.
    for n in range(3, 6):
        await rtdelivery.apublish(topic, n)
    comm = await _ws(app, token=connection_token(owner, ttl=60))
    await _subscribe(comm, topic, since=error["cursor"])
    got = [(await ws_recv(comm))["data"] for _ in range(3)]
    assert got == [3, 4, 5]
    await ws_close(comm)


async def test_sse_token_expiry_sends_rt_close_and_a_fresh_token_resumes_with_no_loss(
    app: Any, people: dict[str, Identity]
) -> None:
    owner = _user_of(people, "owner")
    topic = f"user.{owner.pk}"
    stream = await open_sse(app, {"topic": topic, "access_token": connection_token(owner, ttl=TTL)})
    assert stream.status == 200
    opening = await stream.next_event()
    assert opening["event"] == "rt.open"
    for n in range(3):
        await rtdelivery.apublish(topic, n)
    events, close = await _sse_until(stream, "rt.close", within=TTL + WAIT)
    assert close["json"]["reason"] == "token_expired"
    assert [e["json"]["data"] for e in events] == [0, 1, 2]
    assert stream.ended or not stream.buffer
    for n in range(3, 6):
        await rtdelivery.apublish(topic, n)
    fresh = connection_token(owner, ttl=60)
    stream = await open_sse(
        app, {"topic": topic, "access_token": fresh, "cursor": close["json"]["cursor"]}
    )
    assert (await stream.next_event())["event"] == "rt.open"
    got = [(await stream.next_event())["json"]["data"] for _ in range(3)]
    assert got == [3, 4, 5]
    await stream.close()


async def test_longpoll_is_held_no_longer_than_its_token(
    app: Any, people: dict[str, Identity]
) -> None:
    owner = _user_of(people, "owner")
    token = connection_token(owner, ttl=1)
    started = time.monotonic()
    response = await get(
        app, "longpoll", {"topic": f"user.{owner.pk}", "timeout": "20", "access_token": token}
    )
    assert response.status == 200
    assert time.monotonic() - started < 1.0 + WAIT / 2
    # The next poll with the same token is refused with the code the client refreshes on.
    again = await get(app, "longpoll", {"topic": f"user.{owner.pk}", "access_token": token})
    assert again.status == 401
    assert again.error_code() == "token_expired"


async def test_session_and_anonymous_connections_get_no_timer(
    app: Any, people: dict[str, Identity]
) -> None:
    anonymous = await _ws(app)
    owner = await _ws(app, people["owner"])
    await _subscribe(anonymous, "public.a")
    await _subscribe(owner, "public.a")
    registry = access._registry()
    pk = people["owner"].pk
    assert list(registry.users) == [pk]  # the anonymous socket is not registered
    (reg,) = registry.users[pk]
    assert reg.timer is None
    assert reg.session is not None
    await ws_close(anonymous)
    await ws_close(owner)
    assert registry.users == {}


# -- disconnect / unsubscribe ----------------------------------------------------------


async def test_disconnect_ends_every_connection_of_the_user_with_a_reason(
    app: Any, people: dict[str, Identity]
) -> None:
    owner, other = people["owner"], people["other"]
    topic = f"user.{owner.pk}"
    ws = await _ws(app, owner)
    await _subscribe(ws, topic)
    stream = await open_sse(app, {"topic": topic}, owner)
    assert (await stream.next_event())["event"] == "rt.open"
    bystander = await _ws(app, other)
    await _subscribe(bystander, "public.x")
    await rtdelivery.apublish(topic, "before")

    await rtdelivery.adisconnect(owner.user)

    events, error = await _ws_until(ws, "error")
    assert [e["data"] for e in events] == ["before"]
    assert error["code"] == "disconnected"
    assert Cursor.decode(error["cursor"], _key()).get(topic) is not None
    assert await ws_closed_with(ws) == 4004
    events, close = await _sse_until(stream, "rt.close")
    assert [e["json"]["data"] for e in events] == ["before"]
    assert close["json"]["reason"] == "disconnected"
    # Someone else's socket is untouched.
    await rtdelivery.apublish("public.x", 1)
    assert (await ws_recv(bystander))["data"] == 1
    await ws_close(bystander)


async def test_a_socket_ended_acts_for_nobody(app: Any, people: dict[str, Identity]) -> None:
    owner = people["owner"]
    ws = await _ws(app, owner)
    await _subscribe(ws, "public.y")
    registry = access._registry()
    (reg,) = registry.users[owner.pk]
    # Ended, but the close not written yet: frames that arrive meanwhile are ignored.
    reg.ended = "disconnected"
    await ws.send_json_to({"op": "subscribe", "topic": f"user.{owner.pk}", "ref": 1})
    reg.ended = None
    reg.end("disconnected")
    _, error = await _ws_until(ws, "error")
    assert error["code"] == "disconnected"
    assert await ws_closed_with(ws) == 4004


async def test_unsubscribe_ends_one_topic_and_keeps_the_connection(
    app: Any, people: dict[str, Identity]
) -> None:
    owner = people["owner"]
    topic = f"user.{owner.pk}"
    ws = await _ws(app, owner)
    await _subscribe(ws, topic)
    await _subscribe(ws, "public.z")
    stream = await open_sse(app, [("topic", topic), ("topic", "public.z")], owner)
    assert (await stream.next_event())["event"] == "rt.open"

    await rtdelivery.aunsubscribe(owner.user, topic, reason="access_revoked")

    frame = await ws_recv(ws)
    assert frame == {"op": "unsubscribed", "topic": topic, "reason": "access_revoked"}
    _, ended = await _sse_until(stream, "rt.unsubscribed")
    assert ended["json"]["topic"] == topic
    assert ended["json"]["reason"] == "access_revoked"
    await rtdelivery.apublish(topic, "hidden")
    await rtdelivery.apublish("public.z", "shown")
    assert (await ws_recv(ws))["data"] == "shown"
    assert (await stream.next_event())["json"]["data"] == "shown"
    await ws_close(ws)
    await stream.close()


async def test_sync_disconnect_from_a_thread(app: Any, people: dict[str, Identity]) -> None:
    owner = people["owner"]
    ws = await _ws(app, owner)
    await _subscribe(ws, "public.s")
    await sync_to_async(rtdelivery.disconnect, thread_sensitive=False)(owner.user.pk, "banned")
    _, error = await _ws_until(ws, "error")
    assert error["code"] == "banned"
    assert await ws_closed_with(ws) == 4004


async def test_sync_api_refuses_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="adisconnect"):
        rtdelivery.disconnect(1)
    with pytest.raises(ValueError, match="Expected a user"):
        await rtdelivery.adisconnect(None)


# -- logout ----------------------------------------------------------------------------


def _logout(session_key: str, user: Any) -> None:
    """What django.contrib.auth.logout() does for the request of that session."""
    from importlib import import_module

    from django.contrib.auth import logout
    from django.http import HttpRequest

    request = HttpRequest()
    request.session = import_module(django_settings.SESSION_ENGINE).SessionStore(session_key)
    request.user = user
    logout(request)


async def test_logout_ends_that_sessions_connections_only(
    app: Any, people: dict[str, Identity]
) -> None:
    owner = people["owner"]
    # The same user in another browser.
    second = await sync_to_async(Identity.make)("owner-2", owner.user)
    ws = await _ws(app, owner)
    await _subscribe(ws, "public.l")
    stream = await open_sse(app, {"topic": "public.l"}, owner)
    assert (await stream.next_event())["event"] == "rt.open"
    other_browser = await _ws(app, second)
    await _subscribe(other_browser, "public.l")
    token_ws = await _ws(app, token=connection_token(owner.user, ttl=60))
    await _subscribe(token_ws, "public.l")

    key = owner.cookies[django_settings.SESSION_COOKIE_NAME]
    await sync_to_async(_logout, thread_sensitive=False)(key, owner.user)

    _, error = await _ws_until(ws, "error")
    assert error["code"] == "logged_out"
    assert await ws_closed_with(ws) == 4004
    _, close = await _sse_until(stream, "rt.close")
    assert close["json"]["reason"] == "logged_out"
    await rtdelivery.apublish("public.l", "still")
    assert (await ws_recv(other_browser))["data"] == "still"
    assert (await ws_recv(token_ws))["data"] == "still"
    await ws_close(other_browser)
    await ws_close(token_ws)


async def test_logout_ends_every_credential_with_user_mode(
    rt: Any, application: Any, people: dict[str, Identity]
) -> None:
    rt(TOPICS=TOPICS, DISCONNECT_ON_LOGOUT="user")
    owner = people["owner"]
    token_ws = await _ws(application, token=connection_token(owner.user, ttl=60))
    await _subscribe(token_ws, "public.u")
    key = owner.cookies[django_settings.SESSION_COOKIE_NAME]
    await sync_to_async(_logout, thread_sensitive=False)(key, owner.user)
    _, error = await _ws_until(token_ws, "error")
    assert error["code"] == "logged_out"


async def test_logout_disconnects_nothing_when_disabled(
    rt: Any, application: Any, people: dict[str, Identity]
) -> None:
    rt(TOPICS=TOPICS, DISCONNECT_ON_LOGOUT=False)
    owner = people["owner"]
    ws = await _ws(application, owner)
    await _subscribe(ws, "public.d")
    key = owner.cookies[django_settings.SESSION_COOKIE_NAME]
    await sync_to_async(_logout, thread_sensitive=False)(key, owner.user)
    await rtdelivery.apublish("public.d", "kept")
    assert (await ws_recv(ws))["data"] == "kept"
    await ws_close(ws)


def test_disconnect_on_logout_is_validated() -> None:
    assert not validate({"DISCONNECT_ON_LOGOUT": "user"})
    assert not validate({"DISCONNECT_ON_LOGOUT": False})
    (problem,) = validate({"DISCONNECT_ON_LOGOUT": "yes"})
    assert "DISCONNECT_ON_LOGOUT" in problem.message


def _key() -> bytes:
    from rtdelivery.conf import get_settings

    return get_settings().cursor_key


# -- a session that ends without a logout ----------------------------------------------


def _delete_session(key: str) -> None:
    from importlib import import_module

    import_module(django_settings.SESSION_ENGINE).SessionStore(key).delete()


async def test_a_deleted_session_ends_its_connections_at_the_next_sweep(
    rt: Any, application: Any, people: dict[str, Identity]
) -> None:
    rt(TOPICS=TOPICS, SESSION_CHECK_INTERVAL=0.2)
    owner, other = people["owner"], people["other"]
    ws = await _ws(application, owner)
    await _subscribe(ws, "public.f")
    stream = await open_sse(application, {"topic": "public.f"}, owner)
    assert (await stream.next_event())["event"] == "rt.open"
    bystander = await _ws(application, other)
    await _subscribe(bystander, "public.f")
    token_ws = await _ws(application, token=connection_token(owner.user, ttl=60))
    await _subscribe(token_ws, "public.f")

    key = owner.cookies[django_settings.SESSION_COOKIE_NAME]
    await sync_to_async(_delete_session, thread_sensitive=False)(key)

    _, error = await _ws_until(ws, "error")
    assert error["code"] == "session_ended"
    assert await ws_closed_with(ws) == 4004
    _, close = await _sse_until(stream, "rt.close")
    assert close["json"]["reason"] == "session_ended"
    assert close["json"]["cursor"]
    # Another user's session and a token connection of the same user stay.
    await rtdelivery.apublish("public.f", "still")
    assert (await ws_recv(bystander))["data"] == "still"
    assert (await ws_recv(token_ws))["data"] == "still"
    await ws_close(bystander)
    await ws_close(token_ws)
    assert access._registry().sweeper is None  # no session connection left: no sweep


async def test_a_session_of_someone_else_now_ends_the_connection(
    rt: Any, application: Any, people: dict[str, Identity]
) -> None:
    from importlib import import_module

    from django.contrib.auth import SESSION_KEY

    rt(TOPICS=TOPICS, SESSION_CHECK_INTERVAL=0.2)
    owner, other = people["owner"], people["other"]
    ws = await _ws(application, owner)
    await _subscribe(ws, "public.g")
    key = owner.cookies[django_settings.SESSION_COOKIE_NAME]

    def swap() -> None:
        session = import_module(django_settings.SESSION_ENGINE).SessionStore(key)
        session[SESSION_KEY] = str(other.user.pk)
        session.save()

    await sync_to_async(swap, thread_sensitive=False)()
    _, error = await _ws_until(ws, "error")
    assert error["code"] == "session_ended"


async def test_no_sweep_when_the_interval_is_none(
    rt: Any, application: Any, people: dict[str, Identity]
) -> None:
    rt(TOPICS=TOPICS, SESSION_CHECK_INTERVAL=None)
    owner = people["owner"]
    ws = await _ws(application, owner)
    await _subscribe(ws, "public.n")
    assert access._registry().sweeper is None
    key = owner.cookies[django_settings.SESSION_COOKIE_NAME]
    await sync_to_async(_delete_session, thread_sensitive=False)(key)
    await rtdelivery.apublish("public.n", "kept")
    assert (await ws_recv(ws))["data"] == "kept"
    await ws_close(ws)


async def test_no_sweep_with_signed_cookie_sessions(
    settings: Any, app: Any, people: dict[str, Identity]
) -> None:
    owner = people["owner"]
    ws = await _ws(app, owner)
    await _subscribe(ws, "public.c")
    registry = access._registry()
    assert registry.sweeper is not None  # the default interval, a database session
    settings.SESSION_ENGINE = access.SIGNED_COOKIES
    assert access._sweep_interval() is None
    await ws_close(ws)
    assert registry.sweeper is None


def test_session_check_interval_is_validated() -> None:
    assert not validate({"SESSION_CHECK_INTERVAL": None})
    assert not validate({"SESSION_CHECK_INTERVAL": 0.5})
    for bad in (0, -1, "30"):
        (problem,) = validate({"SESSION_CHECK_INTERVAL": bad})
        assert "SESSION_CHECK_INTERVAL" in problem.message
