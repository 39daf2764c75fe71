"""The WebSocket transport in process: ops, frames, errors, limits, Origin, slow consumers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from rtdelivery import apublish, metrics
from rtdelivery.conf import get_settings
from rtdelivery.core.cursors import Cursor
from rtdelivery.hub import get_hub
from tests.transports.conftest import (
    WAIT,
    Gate,
    get,
    wait_until,
    ws_close,
    ws_closed_with,
    ws_connect,
    ws_recv,
    ws_request,
)

TOPICS = {
    "t.*": {"subscribe": "anyone", "publish": "anyone"},
    "broken.*": {"subscribe": "tests.transports.test_websocket.broken_hook"},
    "short.*": {"subscribe": "anyone", "publish": "anyone", "history_size": 2},
}


def broken_hook(user: Any, topic: str, action: str) -> bool:
    raise RuntimeError("hook bug")


@pytest.fixture
def conf(rt: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    def configure(**extra: Any) -> dict[str, Any]:
        return rt(**{"TOPICS": TOPICS, **extra})

    configure()
    return configure


def decode(cursor: str) -> Cursor:
    return Cursor.decode(cursor, get_settings().cursor_key)


async def cursor_now(app: Any, topic: str) -> str:
    return str((await get(app, "poll", {"topic": topic})).json()["cursor"])


async def subscribe(comm: WebsocketCommunicator, topic: str, **extra: Any) -> dict[str, Any]:
    frame = await ws_request(comm, {"op": "subscribe", "topic": topic, **extra})
    assert frame["op"] == "subscribed", frame
    return frame


# -- subscribe / unsubscribe -------------------------------------------------------------


async def test_subscribe_then_live_events(conf: Any, application: Any) -> None:
    comm = await ws_connect(application)
    frame = await subscribe(comm, "t.a", ref="s1")
    assert frame == {
        "op": "subscribed",
        "topic": "t.a",
        "recovered": True,
        "cursor": frame["cursor"],
        "ref": "s1",
    }
    assert decode(frame["cursor"])["t.a"].seq == 0
    await apublish("t.a", {"n": 1}, type="chat")
    event = await ws_recv(comm)
    assert set(event) == {"op", "id", "topic", "seq", "type", "data", "time"}
    assert (event["op"], event["topic"], event["seq"], event["type"], event["data"]) == (
        "event",
        "t.a",
        1,
        "chat",
        {"n": 1},
    )
    assert decode(event["id"])["t.a"].seq == 1
    await ws_close(comm)


async def test_subscribe_without_since_has_no_backlog(conf: Any, application: Any) -> None:
    await apublish("t.a", {"n": 1})
    comm = await ws_connect(application)
    frame = await subscribe(comm, "t.a")
    assert "ref" not in frame
    assert decode(frame["cursor"])["t.a"].seq == 1
    assert await comm.receive_nothing(0.05)
    await ws_close(comm)


async def test_subscribed_comes_before_the_backlog_and_since_resumes(
    conf: Any, application: Any
) -> None:
    cursor = await cursor_now(application, "t.a")
    for n in (1, 2, 3):
        await apublish("t.a", {"n": n})
    comm = await ws_connect(application)
    frame = await subscribe(comm, "t.a", since=cursor, ref=7)
    assert frame["ref"] == 7
    assert frame["recovered"] is True
    assert frame["cursor"] == cursor  # the position the backlog starts after
    backlog = [await ws_recv(comm) for _ in range(3)]
    assert [(e["op"], e["data"]["n"]) for e in backlog] == [
        ("event", 1),
        ("event", 2),
        ("event", 3),
    ]
    await apublish("t.a", {"n": 4})
    assert (await ws_recv(comm))["seq"] == 4
    await ws_close(comm)
    # An event id is a cursor too: resume right after event 2.
    again = await ws_connect(application)
    await subscribe(again, "t.a", since=backlog[1]["id"])
    assert [(await ws_recv(again))["seq"] for _ in range(2)] == [3, 4]
    await ws_close(again)


async def test_since_for_other_topics_starts_at_live_end(conf: Any, application: Any) -> None:
    other = await cursor_now(application, "t.b")
    await apublish("t.a", {"n": 1})
    comm = await ws_connect(application)
    frame = await subscribe(comm, "t.a", since=other)
    assert frame["recovered"] is True
    assert decode(frame["cursor"])["t.a"].seq == 1
    assert await comm.receive_nothing(0.05)
    await ws_close(comm)


async def test_since_unrecoverable(conf: Any, application: Any) -> None:
    await apublish("short.a", {"n": -1})
    cursor = await cursor_now(application, "short.a")  # seq 1, soon older than retained
    for n in range(5):
        await apublish("short.a", {"n": n})
    comm = await ws_connect(application)
    frame = await subscribe(comm, "short.a", since=cursor)
    assert frame["recovered"] is False
    assert decode(frame["cursor"])["short.a"].seq == 6
    assert await comm.receive_nothing(0.05)
    await ws_close(comm)


async def test_unsubscribe(conf: Any, application: Any) -> None:
    comm = await ws_connect(application)
    await subscribe(comm, "t.a")
    hub = get_hub()
    assert hub.local_subscribers("t.a") == 1
    frame = await ws_request(comm, {"op": "unsubscribe", "topic": "t.a", "ref": "u"})
    assert frame == {"op": "unsubscribed", "topic": "t.a", "ref": "u"}
    assert hub.local_subscribers("t.a") == 0
    await apublish("t.a", {"n": 1})
    again = await ws_request(comm, {"op": "unsubscribe", "topic": "t.a", "ref": "u2"})
    assert again["op"] == "error"
    assert again["code"] == "not_subscribed"
    assert again["ref"] == "u2"
    # Subscribing again works (and the event published meanwhile was never sent).
    await subscribe(comm, "t.a")
    assert await comm.receive_nothing(0.05)
    await ws_close(comm)


async def test_double_subscribe(conf: Any, application: Any) -> None:
    comm = await ws_connect(application)
    await subscribe(comm, "t.a")
    frame = await ws_request(comm, {"op": "subscribe", "topic": "t.a", "ref": "d"})
    assert frame["op"] == "error"
    assert frame["code"] == "already_subscribed"
    assert frame["ref"] == "d"
    await ws_close(comm)


async def test_disconnect_releases_subscriptions(conf: Any, application: Any) -> None:
    comm = await ws_connect(application)
    await subscribe(comm, "t.a")
    await subscribe(comm, "t.b")
    hub = get_hub()
    await comm.send_input({"type": "websocket.disconnect", "code": 1000})
    await comm.wait(WAIT)
    assert hub.local_subscribers("t.a") == 0
    assert hub.local_subscribers("t.b") == 0


# -- publish / ping ------------------------------------------------------------------------


async def test_publish_ack(conf: Any, application: Any) -> None:
    comm = await ws_connect(application)
    await subscribe(comm, "t.a")
    await comm.send_json_to(
        {"op": "publish", "topic": "t.a", "type": "chat", "data": {"x": 1}, "ref": "p1"}
    )
    frames = [await ws_recv(comm), await ws_recv(comm)]
    ack = next(f for f in frames if f["op"] == "ack")
    event = next(f for f in frames if f["op"] == "event")
    assert ack == {"op": "ack", "topic": "t.a", "seq": 1, "id": event["id"], "ref": "p1"}
    assert (event["type"], event["data"]) == ("chat", {"x": 1})
    # Without a ref, the ack has none; type defaults to "message".
    ack2 = await ws_request(comm, {"op": "publish", "topic": "t.b", "data": None})
    assert ack2["op"] == "ack"
    assert ack2["seq"] == 1
    assert "ref" not in ack2
    await ws_close(comm)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"op": "publish", "topic": "t.a"}, "invalid_event"),
        ({"op": "publish", "topic": "t.a", "data": 1, "type": "bad type!"}, "invalid_event"),
        ({"op": "publish", "topic": "bad topic", "data": 1}, "invalid_topic"),
        ({"op": "publish", "data": 1}, "invalid_topic"),
        ({"op": "subscribe", "topic": 5}, "invalid_topic"),
        ({"op": "subscribe", "topic": "t.a", "since": "garbage"}, "invalid_cursor"),
        ({"op": "subscribe", "topic": "t.a", "since": ""}, "invalid_cursor"),
        ({"op": "subscribe", "topic": "t.a", "since": 5}, "invalid_cursor"),
        ({"op": "unsubscribe"}, "invalid_topic"),
        ({"op": "presence", "topic": "t.a"}, "presence_disabled"),
        ({"op": "nope"}, "unknown_op"),
        ({"op": 5}, "unknown_op"),
        ({}, "unknown_op"),
    ],
)
async def test_bad_requests_get_error_frames(
    conf: Any, application: Any, frame: dict[str, Any], code: str
) -> None:
    comm = await ws_connect(application)
    reply = await ws_request(comm, {**frame, "ref": "r"})
    assert (reply["op"], reply["code"], reply.get("ref")) == ("error", code, "r"), reply
    assert reply["message"]
    assert await ws_request(comm, {"op": "ping"}) == {"op": "pong"}  # still usable
    await ws_close(comm)


async def test_ping_pong(conf: Any, application: Any) -> None:
    comm = await ws_connect(application)
    assert await ws_request(comm, {"op": "ping"}) == {"op": "pong"}
    assert await ws_request(comm, {"op": "ping", "ref": 3}) == {"op": "pong", "ref": 3}
    # A ref that is neither a string nor an integer is not echoed.
    assert await ws_request(comm, {"op": "ping", "ref": [1]}) == {"op": "pong"}
    await ws_close(comm)


@pytest.mark.parametrize(
    ("send", "code"),
    [
        ({"text_data": "{not json"}, "invalid_json"),
        ({"text_data": "[1, 2]"}, "invalid_frame"),
        ({"text_data": '"ping"'}, "invalid_frame"),
        ({"text_data": "null"}, "invalid_frame"),
        ({"bytes_data": b'{"op": "ping"}'}, "invalid_frame"),
    ],
)
async def test_malformed_frames_keep_the_socket(
    conf: Any, application: Any, send: dict[str, Any], code: str
) -> None:
    comm = await ws_connect(application)
    await comm.send_to(**send)
    reply = await ws_recv(comm)
    assert (reply["op"], reply["code"], "ref" in reply) == ("error", code, False), reply
    assert await ws_request(comm, {"op": "ping"}) == {"op": "pong"}
    await ws_close(comm)


# -- limits --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["text_data", "bytes_data"])
async def test_oversized_frame_closes_1009(conf: Any, application: Any, kind: str) -> None:
    conf(WS_MAX_MESSAGE_BYTES=64)
    comm = await ws_connect(application)
    await subscribe(comm, "t.a")
    payload = json.dumps({"op": "ping", "pad": "x" * 100})
    await comm.send_to(**{kind: payload if kind == "text_data" else payload.encode()})
    assert await ws_closed_with(comm) == 1009
    assert get_hub().local_subscribers("t.a") == 0


async def test_frame_at_the_limit_is_fine(conf: Any, application: Any) -> None:
    conf(WS_MAX_MESSAGE_BYTES=64)
    comm = await ws_connect(application)
    frame = json.dumps({"op": "ping", "pad": ""})
    frame = frame.replace('""', '"' + "x" * (64 - len(frame)) + '"')
    assert len(frame.encode()) == 64
    await comm.send_to(text_data=frame)
    assert await ws_recv(comm) == {"op": "pong"}
    await ws_close(comm)


async def test_flood_closes_1008(conf: Any, application: Any) -> None:
    conf(WS_RATE=0.001, WS_BURST=3)
    comm = await ws_connect(application)
    for _ in range(3):
        assert await ws_request(comm, {"op": "ping"}) == {"op": "pong"}
    await comm.send_json_to({"op": "ping"})
    assert await ws_closed_with(comm) == 1008


async def test_binary_flood_closes_1008(conf: Any, application: Any) -> None:
    conf(WS_RATE=0.001, WS_BURST=3)
    comm = await ws_connect(application)
    for _ in range(3):
        await comm.send_to(bytes_data=b"x")
        assert (await ws_recv(comm))["code"] == "invalid_frame"
    await comm.send_to(bytes_data=b"x")
    assert await ws_closed_with(comm) == 1008


async def test_too_many_topics_is_refused_by_name(conf: Any, application: Any) -> None:
    conf(MAX_TOPICS=2)
    comm = await ws_connect(application)
    await subscribe(comm, "t.a")
    await subscribe(comm, "t.b")
    await comm.send_json_to({"op": "subscribe", "topic": "t.c", "ref": 7})
    frame = await comm.receive_json_from(WAIT)
    assert (frame["op"], frame["code"], frame["topic"], frame["ref"]) == (
        "error",
        "too_many_topics",
        "t.c",
        7,
    ), frame
    hub = get_hub()
    assert hub.local_subscribers("t.c") == 0
    # The socket and its topics go on.
    event = await apublish("t.a", {"n": 1})
    got = await comm.receive_json_from(WAIT)
    assert (got["op"], got["id"]) == ("event", event.id)
    await comm.disconnect()
    assert hub.local_subscribers("t.a") == 0


# -- Origin --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        None,
        "http://evil.example",
        "null",
        "ftp://testserver",
        "testserver",
        "http://",
        "",
        "http://[::1",  # unbalanced brackets: refused, not a crash
    ],
)
async def test_bad_origin_refused(conf: Any, application: Any, origin: str | None) -> None:
    headers = [(b"host", b"testserver")]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    comm = WebsocketCommunicator(application, "/rt/ws", headers=headers)
    connected, code = await comm.connect(WAIT)
    assert (connected, code) == (False, 1008)
    await comm.wait(WAIT)


@pytest.mark.parametrize(
    "origin", ["http://testserver", "https://testserver", "http://testserver:8000"]
)
async def test_origin_from_allowed_hosts(conf: Any, application: Any, origin: str) -> None:
    comm = await ws_connect(application, origin=origin)
    await ws_close(comm)


async def test_allowed_origins_setting(conf: Any, application: Any) -> None:
    conf(ALLOWED_ORIGINS=["https://app.example.com"])
    comm = await ws_connect(application, origin="https://app.example.com")
    await ws_close(comm)
    for origin in ("http://testserver", "http://app.example.com", "https://app.example.com:8443"):
        refused = WebsocketCommunicator(
            application, "/rt/ws", headers=[(b"origin", origin.encode())]
        )
        assert await refused.connect(WAIT) == (False, 1008), origin
        await refused.wait(WAIT)


async def test_allowed_origins_star(conf: Any, application: Any) -> None:
    conf(ALLOWED_ORIGINS=["*"])
    comm = await ws_connect(application, origin=None)  # no Origin at all: a non-browser client
    await ws_close(comm)


async def test_unknown_websocket_path_refused(conf: Any, application: Any) -> None:
    comm = WebsocketCommunicator(
        application, "/rt/other", headers=[(b"origin", b"http://testserver")]
    )
    assert await comm.connect(WAIT) == (False, 1008)
    await comm.wait(WAIT)


# -- slow consumers ------------------------------------------------------------------------


async def _overflow(conf: Any, application: Any) -> tuple[list[int], dict[str, Any]]:
    """Subscribe through a gate, stop reading, publish a burst: the frames received."""
    conf(QUEUE_SIZE=3)
    gate = Gate(application)
    comm = await ws_connect(gate)
    await subscribe(comm, "t.a")
    gate.shut()  # the client stops reading
    await apublish("t.a", {"n": 1})
    await wait_until(lambda: gate.blocked == 1, what="socket blocked on a send")
    for n in range(2, 22):
        await apublish("t.a", {"n": n})
    gate.open()
    delivered = []
    while True:
        frame = await ws_recv(comm)
        if frame["op"] != "event":
            break
        delivered.append(frame["data"]["n"])
    assert await ws_closed_with(comm) == 4001
    return delivered, frame


async def test_slow_consumer_error_then_close_4001(conf: Any, application: Any) -> None:
    ended = metrics.value("slow_consumer_ends", transport="ws")
    delivered, frame = await _overflow(conf, application)
    assert metrics.value("slow_consumer_ends", transport="ws") == ended + 1
    assert metrics.recent_slow_ends[-1]["topics"] == ["t.a"]
    assert frame["op"] == "error"
    assert frame["code"] == "too_slow"
    assert frame["message"]
    assert delivered == list(range(1, len(delivered) + 1))
    assert len(delivered) < 20
    assert decode(frame["cursor"])["t.a"].seq == delivered[-1]
    assert get_hub().local_subscribers("t.a") == 0
    # Resuming from that cursor gets everything after it (poll pages by POLL_LIMIT; a
    # WebSocket resume of more than QUEUE_SIZE events hits the bug tested below).
    body = (await get(application, "poll", {"topic": "t.a", "cursor": frame["cursor"]})).json()
    assert body["recovered"] is True
    assert delivered + [e["data"]["n"] for e in body["events"]] == list(range(1, 22))


async def test_slow_consumer_resumes_over_websocket(conf: Any, application: Any) -> None:
    delivered, frame = await _overflow(conf, application)
    comm = await ws_connect(application)
    await subscribe(comm, "t.a", since=frame["cursor"])
    rest = [(await ws_recv(comm))["data"]["n"] for _ in range(21 - len(delivered))]
    assert delivered + rest == list(range(1, 22))
    await ws_close(comm)


async def test_failing_policy_hook(conf: Any, application: Any) -> None:
    """A hook that raises is a server error, not a refusal: HTTP 500, WebSocket 1011."""
    response = await get(application, "poll", {"topic": "broken.a"})
    assert response.status == 500
    assert response.error_code() == "internal"
    comm = await ws_connect(application)
    await comm.send_json_to({"op": "subscribe", "topic": "broken.a"})
    assert await ws_closed_with(comm) == 1011
    assert get_hub().local_subscribers("broken.a") == 0


def test_ipv6_origin_matches_allowed_hosts_with_brackets(settings: Any) -> None:
    from rtdelivery.transports.origins import origin_allowed

    settings.ALLOWED_HOSTS = ["[::1]"]
    assert origin_allowed("http://[::1]:8000")
    assert not origin_allowed("http://[::2]:8000")


async def test_deeply_nested_frame_gets_an_error_frame(conf: Any, application: Any) -> None:
    comm = await ws_connect(application)
    await comm.send_to(text_data="[" * 50_000)
    frame = json.loads(await comm.receive_from(WAIT))
    assert frame["op"] == "error"
    assert frame["code"] == "invalid_json"
    await comm.send_to(text_data=json.dumps({"op": "ping"}))
    assert json.loads(await comm.receive_from(WAIT))["op"] == "pong"  # still usable
    await ws_close(comm)
