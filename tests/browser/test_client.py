"""rtdelivery.js in Chromium against a real Daphne + Redis server.

For each transport pinned: subscribe, receive what Python publishes, publish from the page,
share one connection between topics and resume a topic from an event id, exactly once and in
seq order. Then: fallback to SSE when the WebSocket is refused, a server restart on the same
port while the page stays open, and the reset when history no longer covers the cursor.

Waits are event-driven: `page.wait_for_function` on the harness's logs (demo/harness.html).
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from .conftest import DaphneServer

TRANSPORTS = ["ws", "sse", "longpoll", "poll"]
#: Fast timings for tests: short polling every 200 ms, reconnect within 0.1-1 s.
FAST = {"pollInterval": 200, "longpollTimeout": 5, "backoff": {"base": 100, "max": 1000}}


def topic_name(kind: str) -> str:
    return f"harness.{kind}.{uuid4().hex[:10]}"


def open_harness(page: Any, server: DaphneServer, host: str = "127.0.0.1") -> None:
    page.goto(f"http://{host}:{server.port}/client-harness/")
    page.wait_for_function("() => window.H && window.RTDelivery")


def make_client(page: Any, **options: Any) -> int:
    index: int = page.evaluate("(options) => H.make(options)", {**FAST, **options})
    return index


def subscribe(page: Any, client: int, topic: str, since: str | None = None) -> None:
    page.evaluate(
        "([i, topic, since]) => H.sub(i, topic, since ? {since} : undefined)",
        [client, topic, since],
    )


def log_mark(page: Any) -> int:
    mark: int = page.evaluate("() => H.log.length")
    return mark


def wait_log(page: Any, name: str, topic: str | None = None, after: int = 0) -> None:
    page.wait_for_function("([n, t, a]) => H.has(n, t, a)", arg=[name, topic, after])


def wait_seqs(page: Any, topic: str, count: int) -> list[int]:
    page.wait_for_function("([t, n]) => H.seqs(t).length >= n", arg=[topic, count])
    seqs: list[int] = page.evaluate("(t) => H.seqs(t)", topic)
    return seqs


def log_names(page: Any) -> list[str]:
    names: list[str] = page.evaluate("() => H.log.map((e) => e.name)")
    return names


def publish_many(server: DaphneServer, topic: str, count: int) -> list[int]:
    return [server.publish(topic, {"n": n, "from": "python"})["seq"] for n in range(count)]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_pinned_transport_delivers_exactly_once(
    page: Any, browser_server: DaphneServer, transport: str
) -> None:
    sockets: list[str] = []
    posts: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.on(
        "request",
        lambda r: (
            posts.append(r.url) if r.method == "POST" and r.url.endswith("/rt/publish") else None
        ),
    )
    open_harness(page, browser_server)
    a, b = topic_name("a"), topic_name("b")
    client = make_client(page, transports=[transport])

    subscribe(page, client, a)
    wait_log(page, "subscribed", a)
    assert publish_many(browser_server, a, 3) == [1, 2, 3]
    assert wait_seqs(page, a, 3) == [1, 2, 3]

    # A second topic shares the connection (one more subscribe op / a reopened request).
    mark = log_mark(page)
    subscribe(page, client, b)
    wait_log(page, "subscribed", b, after=mark)
    assert publish_many(browser_server, b, 2) == [1, 2]
    assert publish_many(browser_server, a, 2) == [4, 5]

    # Publish from the page: a WebSocket ack, or HTTP 201 with the CSRF cookie.
    acks = page.evaluate(
        """async ([i, topic]) => {
            const out = [];
            for (let k = 0; k < 3; k++) {
                out.push(await H.clients[i].publish(topic, {k, from: "page"}, {type: "page"}));
            }
            return out;
        }""",
        [client, a],
    )
    assert [ack["seq"] for ack in acks] == [6, 7, 8]
    assert all(ack["id"] and ack["topic"] == a for ack in acks)
    assert wait_seqs(page, a, 8) == list(range(1, 9))
    assert wait_seqs(page, b, 2) == [1, 2]
    types = page.evaluate("(t) => H.events[t].map((e) => e.type)", a)
    assert types == ["message"] * 5 + ["page"] * 3

    # Leave topic a, miss two events, come back from the last event's id: nothing lost.
    last_id = page.evaluate("(t) => H.events[t].at(-1).id", a)
    page.evaluate("([i, t]) => H.clients[i].unsubscribe(t)", [client, a])
    assert publish_many(browser_server, a, 2) == [9, 10]
    mark = log_mark(page)
    subscribe(page, client, a, since=last_id)
    wait_log(page, "subscribed", a, after=mark)
    assert publish_many(browser_server, a, 1) == [11]
    assert publish_many(browser_server, b, 1) == [3]
    assert wait_seqs(page, a, 11) == list(range(1, 12))
    assert wait_seqs(page, b, 3) == [1, 2, 3]

    snapshot = page.evaluate("([i, t]) => H.clients[i].presence(t)", [client, a])
    assert snapshot["topic"] == a

    state = page.evaluate(
        "(i) => ({transport: H.clients[i].transport, state: H.clients[i].state})", client
    )
    assert state == {"transport": transport, "state": "open"}
    names = log_names(page)
    assert "error" not in names
    assert "reset" not in names
    if transport == "ws":
        assert len(sockets) == 1, sockets
        assert posts == [], "publishes should go over the WebSocket"
    else:
        assert sockets == []
        assert len(posts) == 3


def test_falls_back_to_sse_when_websocket_refused(page: Any, browser_server: DaphneServer) -> None:
    # The server allows WebSockets only from http://127.0.0.1:PORT; this page is on localhost,
    # so its handshake is refused (403) before open and the client moves on to SSE.
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    open_harness(page, browser_server, host="localhost")
    topic = topic_name("fallback")
    client = make_client(page)  # default order: ws, sse, longpoll, poll
    subscribe(page, client, topic)
    wait_log(page, "subscribed", topic)
    assert page.evaluate("(i) => H.clients[i].transport", client) == "sse"
    transports = page.evaluate(
        "() => H.log.filter((e) => e.name === 'transport').map((e) => e.data)"
    )
    assert transports == ["sse"]
    refused = page.evaluate(
        "() => H.log.filter((e) => e.name === 'disconnected').map((e) => e.data.transport)"
    )
    assert refused == ["ws"]
    assert len(sockets) == 1

    assert publish_many(browser_server, topic, 3) == [1, 2, 3]
    ack = page.evaluate("([i, t]) => H.clients[i].publish(t, {from: 'page'})", [client, topic])
    assert ack["seq"] == 4
    assert wait_seqs(page, topic, 4) == [1, 2, 3, 4]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_resumes_after_server_restart(
    page: Any, browser_server: DaphneServer, transport: str
) -> None:
    open_harness(page, browser_server)
    topic = topic_name("restart")
    client = make_client(page, transports=[transport])
    subscribe(page, client, topic)
    wait_log(page, "subscribed", topic)
    assert publish_many(browser_server, topic, 3) == [1, 2, 3]
    assert wait_seqs(page, topic, 3) == [1, 2, 3]

    mark = log_mark(page)
    browser_server.kill()
    wait_log(page, "disconnected", after=mark)  # the client noticed
    browser_server.start()  # same port
    # Published before the client is back: it must fetch these from history on resume.
    assert publish_many(browser_server, topic, 3) == [4, 5, 6]
    wait_log(page, "subscribed", topic, after=mark)
    assert publish_many(browser_server, topic, 2) == [7, 8]

    assert wait_seqs(page, topic, 8) == list(range(1, 9))
    assert page.evaluate("(i) => H.clients[i].transport", client) == transport
    names = log_names(page)[mark:]
    assert "reset" not in names
    assert "recovered" in names


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reset_when_history_no_longer_covers_cursor(
    page: Any, browser_server: DaphneServer, transport: str
) -> None:
    open_harness(page, browser_server)
    topic = topic_name("small")  # harness.small.*: history keeps 3 events
    client = make_client(page, transports=[transport])
    subscribe(page, client, topic)
    wait_log(page, "subscribed", topic)
    assert publish_many(browser_server, topic, 1) == [1]
    assert wait_seqs(page, topic, 1) == [1]

    mark = log_mark(page)
    page.context.set_offline(True)
    page.wait_for_function("(i) => H.clients[i].state === 'offline'", arg=client)
    # Ten events while away; history keeps only the last three, so seq 2..8 are gone.
    assert publish_many(browser_server, topic, 10)[-1] == 11
    page.context.set_offline(False)
    wait_log(page, "reset", topic, after=mark)
    wait_log(page, "subscribed", topic, after=mark)
    assert publish_many(browser_server, topic, 1) == [12]
    # No silent gap: the client said "reset" and continues at the live end.
    assert wait_seqs(page, topic, 2) == [1, 12]
    assert "recovered" not in log_names(page)[mark:]


def test_short_polling_pauses_while_hidden(page: Any, browser_server: DaphneServer) -> None:
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/rt/poll?" in r.url else None)
    open_harness(page, browser_server)
    topic = topic_name("hidden")
    client = make_client(page, transports=["poll"], pollInterval=100)
    subscribe(page, client, topic)
    wait_log(page, "subscribed", topic)
    # Headless pages are always visible: emulate a hidden tab the way browsers report it.
    page.evaluate(
        """() => {
            window.visibility = "hidden";
            Object.defineProperty(document, "visibilityState", {
                configurable: true, get: () => window.visibility,
            });
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    assert publish_many(browser_server, topic, 2) == [1, 2]
    before = len(polls)
    # Proving that nothing happens needs a bounded wait (10 poll intervals); nothing to await.
    page.wait_for_timeout(1000)
    assert len(polls) - before <= 1  # at most the poll that was in flight when hidden
    assert page.evaluate("(t) => H.seqs(t)", topic) in ([], [1], [1, 2])

    page.evaluate(
        """() => {
            window.visibility = "visible";
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    assert wait_seqs(page, topic, 2) == [1, 2]
    assert len(polls) > before
