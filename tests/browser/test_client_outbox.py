"""rtdelivery.js's outbox in Chromium: a publish made while the client is not connected waits in
``client.outbox`` and is sent once, in order, when it is connected again (the browser offline,
then online; the server killed, then restarted), with an idempotency key; one that cannot be
sent in time is rejected with ``outbox_expired``. Against the real Daphne + Redis server of
conftest.py; the server's history proves "published once".
"""

from __future__ import annotations

import os
import signal
from typing import Any

import httpx
import pytest

from .conftest import TOKEN, DaphneServer
from .test_client import (
    TRANSPORTS,
    log_mark,
    make_client,
    open_harness,
    publish_many,
    subscribe,
    topic_name,
    wait_log,
    wait_seqs,
)


def history(server: DaphneServer, topic: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{server.base_url}/rt/history",
        params={"topic": topic, "limit": 100},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def start_publish(page: Any, client: int, topic: str, data: Any, key: str | None = None) -> None:
    """Publishes from the page without waiting: the outcome lands in H.outcomes."""
    page.evaluate(
        """([i, topic, data, key]) => {
            H.outcomes = H.outcomes || [];
            const slot = H.outcomes.push(null) - 1;
            H.clients[i].publish(topic, data, key ? {key} : undefined).then(
                (answer) => { H.outcomes[slot] = {ok: answer}; },
                (error) => { H.outcomes[slot] = {error: error.code}; },
            );
        }""",
        [client, topic, data, key],
    )


def outcomes(page: Any, count: int) -> list[dict[str, Any]]:
    page.wait_for_function(
        "(n) => (H.outcomes || []).filter((o) => o !== null).length >= n", arg=count
    )
    result: list[dict[str, Any]] = page.evaluate("() => H.outcomes")
    return result


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_offline_publish_is_sent_once_after_reconnect(
    page: Any, browser_server: DaphneServer, transport: str
) -> None:
    open_harness(page, browser_server)
    topic = topic_name("outbox")
    client = make_client(page, transports=[transport])
    page.evaluate(
        "(i) => { H.sizes = []; H.clients[i].on('outbox', ({size}) => H.sizes.push(size)); }",
        client,
    )
    subscribe(page, client, topic)
    wait_log(page, "subscribed", topic)

    mark = log_mark(page)
    page.context.set_offline(True)
    page.wait_for_function("(i) => H.clients[i].state === 'offline'", arg=client)
    start_publish(page, client, topic, {"n": 1})
    start_publish(page, client, topic, {"n": 2}, key="page-key-2")
    waiting = page.evaluate("(i) => H.clients[i].outbox", client)
    assert [(w["topic"], w["data"], w["state"]) for w in waiting] == [
        (topic, {"n": 1}, "queued"),
        (topic, {"n": 2}, "queued"),
    ]
    assert waiting[1]["key"] == "page-key-2"
    assert len(waiting[0]["key"]) >= 32  # crypto.randomUUID() on this secure (loopback) page
    assert page.evaluate("() => H.outcomes") == [None, None]

    page.context.set_offline(False)
    done = outcomes(page, 2)
    assert [o["ok"]["seq"] for o in done] == [1, 2]  # in order, each once
    wait_log(page, "subscribed", topic, after=mark)
    assert publish_many(browser_server, topic, 1) == [3]
    assert wait_seqs(page, topic, 3) == [1, 2, 3]
    assert [e["data"] for e in history(browser_server, topic)] == [
        {"n": 1},
        {"n": 2},
        {"n": 0, "from": "python"},
    ]
    assert page.evaluate("(i) => H.clients[i].outbox", client) == []
    assert page.evaluate("() => H.sizes.at(-1)") == 0


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_publish_pending_across_server_restart_is_delivered_once(
    page: Any, browser_server: DaphneServer, transport: str
) -> None:
    open_harness(page, browser_server)
    topic = topic_name("restart-outbox")
    client = make_client(page, transports=[transport])
    subscribe(page, client, topic)
    wait_log(page, "subscribed", topic)
    assert publish_many(browser_server, topic, 1) == [1]
    assert wait_seqs(page, topic, 1) == [1]

    mark = log_mark(page)
    browser_server.kill()
    wait_log(page, "disconnected", after=mark)
    start_publish(page, client, topic, {"while": "down"})
    assert page.evaluate("(i) => H.clients[i].outbox.length", client) == 1
    browser_server.start()

    done = outcomes(page, 1)
    assert done[0]["ok"]["seq"] == 2
    assert wait_seqs(page, topic, 2) == [1, 2]
    assert publish_many(browser_server, topic, 1) == [3]
    assert wait_seqs(page, topic, 3) == [1, 2, 3]
    assert [e["seq"] for e in history(browser_server, topic)] == [1, 2, 3]


def test_outbox_expires(page: Any, browser_server: DaphneServer) -> None:
    open_harness(page, browser_server)
    topic = topic_name("expire")
    client = make_client(page, transports=["sse"], outboxTimeout=300)
    subscribe(page, client, topic)
    wait_log(page, "subscribed", topic)
    page.context.set_offline(True)
    page.wait_for_function("(i) => H.clients[i].state === 'offline'", arg=client)
    start_publish(page, client, topic, {"late": True})
    assert outcomes(page, 1) == [{"error": "outbox_expired"}]
    assert page.evaluate("(i) => H.clients[i].outbox", client) == []
    page.context.set_offline(False)
    page.wait_for_function("(i) => H.clients[i].state === 'open'", arg=client)
    assert history(browser_server, topic) == []


def test_closed_client_rejects_publish(page: Any, browser_server: DaphneServer) -> None:
    open_harness(page, browser_server)
    client = make_client(page, transports=["sse"])
    page.context.set_offline(True)
    start_publish(page, client, topic_name("closed"), {"n": 1})
    page.evaluate("(i) => H.clients[i].close()", client)
    start_publish(page, client, topic_name("closed"), {"n": 2})
    assert outcomes(page, 2) == [{"error": "closed"}, {"error": "closed"}]


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_repeated_key_publishes_once(
    page: Any, browser_server: DaphneServer, transport: str
) -> None:
    open_harness(page, browser_server)
    topic = topic_name("key")
    client = make_client(page, transports=[transport])
    subscribe(page, client, topic)
    wait_log(page, "subscribed", topic)
    answers = page.evaluate(
        """async ([i, t]) => {
            const c = H.clients[i];
            const first = await c.publish(t, {n: 1}, {key: "retry-me"});
            const again = await c.publish(t, {n: 1}, {key: "retry-me"});
            return [first, again];
        }""",
        [client, topic],
    )
    assert answers[0]["seq"] == answers[1]["seq"] == 1
    assert answers[1]["id"] == answers[0]["id"]
    assert "duplicate" not in answers[0]
    assert answers[1]["duplicate"] is True
    assert publish_many(browser_server, topic, 1) == [2]
    assert wait_seqs(page, topic, 2) == [1, 2]
    assert [e["seq"] for e in history(browser_server, topic)] == [1, 2]


def test_publish_in_flight_when_socket_drops_is_sent_again(
    page: Any, browser_server: DaphneServer
) -> None:
    open_harness(page, browser_server)
    topic = topic_name("inflight")
    client = make_client(page, transports=["ws"], livenessTimeout=60000, pingInterval=0)
    subscribe(page, client, topic)
    wait_log(page, "subscribed", topic)
    process = browser_server.process
    assert process is not None
    # Frozen: the frame is sent on the open socket and never answered.
    os.kill(process.pid, signal.SIGSTOP)  # by PID: the server this fixture started
    try:
        start_publish(page, client, topic, {"n": 1})
        page.wait_for_function(
            "(i) => H.clients[i].outbox.length === 1 && H.clients[i].outbox[0].state === 'sending'",
            arg=client,
        )
        key = page.evaluate("(i) => H.clients[i].outbox[0].key", client)
        mark = log_mark(page)
    finally:
        browser_server.kill()  # SIGKILL ends it stopped or not; the socket drops
    wait_log(page, "disconnected", after=mark)
    # Not rejected as "disconnected": back in the queue with the same key.
    waiting = page.evaluate("(i) => H.clients[i].outbox", client)
    assert [(w["key"], w["state"]) for w in waiting] == [(key, "queued")]
    assert page.evaluate("() => H.outcomes") == [None]
    browser_server.start()
    done = outcomes(page, 1)
    assert done[0]["ok"]["seq"] == 1
    assert wait_seqs(page, topic, 1) == [1]
    assert [e["data"] for e in history(browser_server, topic)] == [{"n": 1}]
