"""rtdelivery.js's state in Chromium: the ``state`` event's sequence, per-subscription state when
the server refuses one topic next to allowed ones (on every transport), WebSocket liveness (a
server that upgrades and then stays silent), and subscriptions made in one tick sharing one
request. Against the real Daphne + Redis server of conftest.py; waits are event-driven.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest

from .conftest import DaphneServer
from .test_client import (
    TRANSPORTS,
    make_client,
    open_harness,
    publish_many,
    subscribe,
    topic_name,
    wait_log,
    wait_seqs,
)

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def record_states(page: Any, client: int) -> None:
    """Keeps every ``state`` event of client ``client`` in ``H.states[client]``."""
    page.evaluate(
        """(i) => {
            H.states = H.states || {};
            H.states[i] = [];
            H.clients[i].on("state", (d) => H.states[i].push(d));
        }""",
        client,
    )


def states(page: Any, client: int) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = page.evaluate("(i) => H.states[i]", client)
    return result


def wait_state(page: Any, client: int, state: str) -> None:
    page.wait_for_function("([i, s]) => H.clients[i].state === s", arg=[client, state])


def test_state_events_sequence(page: Any, browser_server: DaphneServer) -> None:
    open_harness(page, browser_server)
    topic = topic_name("state")
    client = make_client(page, transports=["sse"])
    record_states(page, client)
    assert page.evaluate("(i) => [H.clients[i].state, H.clients[i].online]", client) == [
        "idle",
        False,
    ]
    subscribe(page, client, topic)
    wait_log(page, "subscribed", topic)
    assert page.evaluate("(i) => H.clients[i].online", client) is True

    page.context.set_offline(True)
    wait_state(page, client, "offline")
    assert page.evaluate("(i) => H.clients[i].online", client) is False
    page.context.set_offline(False)
    wait_state(page, client, "open")
    page.evaluate("(i) => H.clients[i].close()", client)

    seen = states(page, client)
    assert [s["state"] for s in seen] == [
        "connecting",
        "open",
        "offline",
        "connecting",
        "open",
        "closed",
    ]
    # Each event says where it came from, and which transport.
    assert [s["previous"] for s in seen] == [
        "idle",
        "connecting",
        "open",
        "offline",
        "connecting",
        "open",
    ]
    assert {s["transport"] for s in seen} == {"sse"}


def test_reopen_for_new_topics_stays_open(page: Any, browser_server: DaphneServer) -> None:
    open_harness(page, browser_server)
    a, b = topic_name("a"), topic_name("b")
    client = make_client(page, transports=["longpoll"])
    subscribe(page, client, a)
    wait_log(page, "subscribed", a)
    record_states(page, client)
    # Subscribing another topic reopens the request with both, without leaving "open".
    subscribe(page, client, b)
    wait_log(page, "subscribed", b)
    assert publish_many(browser_server, b, 1) == [1]
    assert wait_seqs(page, b, 1) == [1]
    assert states(page, client) == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_refused_topic_next_to_allowed_ones(
    page: Any, browser_server: DaphneServer, transport: str
) -> None:
    open_harness(page, browser_server)
    ok1, ok2 = topic_name("ok1"), topic_name("ok2")
    refused = (
        f"chat.refused{uuid4().hex[:8]}"  # chat.*: signed-in users only; this page is anonymous
    )
    client = make_client(page, transports=[transport])
    record_states(page, client)
    page.evaluate(
        """([i, topics]) => {
            H.subs = {};
            H.subErrors = [];
            for (const topic of topics) {
                H.events[topic] = [];
                H.subs[topic] = H.clients[i].subscribe(
                    topic, (e) => H.events[topic].push(e),
                    {onError: (error, sub) => H.subErrors.push([sub.topic, error.code, error.topic])},
                );
            }
        }""",
        [client, [ok1, refused, ok2]],
    )
    page.wait_for_function(
        "([r]) => H.subs[r].state === 'refused'",
        arg=[refused],
    )
    page.wait_for_function(
        "([a, b]) => H.subs[a].state === 'live' && H.subs[b].state === 'live'", arg=[ok1, ok2]
    )
    assert publish_many(browser_server, ok1, 2) == [1, 2]
    assert publish_many(browser_server, ok2, 1) == [1]
    assert wait_seqs(page, ok1, 2) == [1, 2]
    assert wait_seqs(page, ok2, 1) == [1]

    error = page.evaluate(
        "(r) => ({code: H.subs[r].error.code, topic: H.subs[r].error.topic})", refused
    )
    assert error == {"code": "forbidden", "topic": refused}
    assert page.evaluate("() => H.subErrors") == [[refused, "forbidden", refused]]
    # Reported on that subscription (and as the client's error), never a reconnect with backoff.
    errors = page.evaluate("() => H.log.filter((e) => e.name === 'error').map((e) => e.data.code)")
    assert errors == ["forbidden"]
    assert "disconnected" not in [e["name"] for e in page.evaluate("() => H.log")]
    assert page.evaluate("(i) => H.clients[i].state", client) == "open"
    assert "reconnecting" not in [s["state"] for s in states(page, client)]


class SilentWebSocketServer:
    """Accepts WebSocket upgrades on loopback, then never sends a frame.

    Records each connection: whether the client sent a close frame (opcode 8) and whether it
    closed the TCP connection.
    """

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.connections: list[dict[str, bool]] = []
        self.lock = threading.Lock()
        self.stopping = False
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        record = {"upgraded": False, "close_frame": False, "closed": False}
        with self.lock:
            self.connections.append(record)
        with conn:
            conn.settimeout(30)
            request = b""
            try:
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        record["closed"] = True
                        return
                    request += chunk
                key = ""
                for line in request.decode("latin-1").split("\r\n"):
                    if line.lower().startswith("sec-websocket-key:"):
                        key = line.split(":", 1)[1].strip()
                accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest())
                conn.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                )
                record["upgraded"] = True
                # Read whatever the client sends (subscribe frames, then its close), answer nothing.
                while True:
                    chunk = conn.recv(4096)
                    if not chunk:
                        record["closed"] = True
                        return
                    if chunk[0] & 0x0F == 0x8:
                        record["close_frame"] = True
            except OSError:
                record["closed"] = True

    def close(self) -> None:
        self.stopping = True
        self.sock.close()
        for thread in self.threads:
            thread.join(5)


@pytest.fixture
def silent_ws() -> Iterator[SilentWebSocketServer]:
    server = SilentWebSocketServer()
    try:
        yield server
    finally:
        server.close()


def test_silent_websocket_is_closed_and_falls_back(
    page: Any, browser_server: DaphneServer, silent_ws: SilentWebSocketServer
) -> None:
    open_harness(page, browser_server)
    topic = topic_name("silent")
    client = make_client(
        page,
        wsUrl=f"ws://127.0.0.1:{silent_ws.port}/rt/ws",
        livenessTimeout=1000,
        firstAnswerTimeout=1000,
        openTimeout=30000,  # not this: the liveness check must be what gives up
    )
    subscribe(page, client, topic)
    wait_log(page, "subscribed", topic)
    assert page.evaluate("(i) => H.clients[i].transport", client) == "sse"
    disconnects = page.evaluate(
        "() => H.log.filter((e) => e.name === 'disconnected').map((e) => [e.data.transport, e.data.reason, e.data.next])"
    )
    # Tried twice on the silent socket (retried once, then the next transport).
    assert disconnects == [["ws", "liveness", "ws"], ["ws", "liveness", "sse"]]
    with silent_ws.lock:
        records = list(silent_ws.connections)
    assert len(records) == 2
    assert all(r["upgraded"] for r in records)
    # The client closed each silent socket itself (a close frame), not the server.
    assert all(r["close_frame"] for r in records), records

    assert publish_many(browser_server, topic, 2) == [1, 2]
    assert wait_seqs(page, topic, 2) == [1, 2]


@pytest.mark.parametrize("transport", ["sse", "longpoll", "poll"])
def test_subscribes_in_one_tick_make_one_request(
    page: Any, browser_server: DaphneServer, transport: str
) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/rt/" in r.url else None)
    open_harness(page, browser_server)
    topics = [topic_name(f"batch{n}") for n in range(5)]
    client = make_client(page, transports=[transport], pollInterval=60000)
    page.evaluate(
        """([i, topics]) => {
            for (const topic of topics) {
                H.events[topic] = [];
                H.clients[i].subscribe(topic, (e) => H.events[topic].push(e));
            }
        }""",
        [client, topics],
    )
    for topic in topics:
        wait_log(page, "subscribed", topic)
    first = "/rt/sse?" if transport == "sse" else "/rt/poll?"
    opened = [url for url in requests if first in url]
    assert len(opened) == 1, requests
    assert all(f"topic={t}" in opened[0] for t in topics)
    # The request names this client, for presence on polling transports.
    assert "client=" in opened[0]
    if transport == "sse":
        assert [url for url in requests if "/rt/poll?" in url or "/rt/history?" in url] == []
