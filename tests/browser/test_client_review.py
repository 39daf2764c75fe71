"""rtdelivery.js in Chromium: the defects of the client's review (issue 11), each shown fixed.

A WebSocket publish in flight when the browser goes offline is queued again and sent once; data
JSON cannot carry is refused at once; a WebSocket cursor the server cannot read resets that
topic (as on SSE and polling) instead of refusing it; a publish's error answered after its
request timed out is not taken for a subscription refusal; watchPresence() stops with the
client and asks nothing while offline; a plain client accepts the "leader" event; getToken()
serves publish and history without a subscription, and a token_expired answer refreshes it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest

from . import test_client_tabs
from .conftest import DaphneServer
from .test_client import (
    log_mark,
    make_client,
    open_harness,
    publish_many,
    subscribe,
    topic_name,
    wait_log,
    wait_seqs,
)
from .test_client_docs import event_ids
from .test_client_outbox import history, outcomes, start_publish
from .test_client_state import SilentWebSocketServer
from .test_client_tabs import subscribe_all
from .test_client_tabs import topic_name as tab_topic_name
from .test_tokens import mint

#: test_client_tabs.py's fixture: open_tabs(n, **options) opens n tabs with a shared client.
tabs_fixture = test_client_tabs.open_tabs

#: Lifetime of the first token of the getToken test (seconds).
TOKEN_TTL = 10  # room for a busy machine between minting and the first publish


def test_ws_publish_in_flight_when_offline_is_sent_once_after(
    page: Any, browser_server: DaphneServer
) -> None:
    open_harness(page, browser_server)
    topic = topic_name("offline-inflight")
    client = make_client(page, transports=["ws"], livenessTimeout=60000, pingInterval=0)
    subscribe(page, client, topic)
    wait_log(page, "subscribed", topic)
    process = browser_server.process
    assert process is not None
    # Frozen: the publish frame is sent on the open socket and not answered yet.
    os.kill(process.pid, signal.SIGSTOP)  # by PID: the server this fixture started
    try:
        start_publish(page, client, topic, {"n": 1})
        page.wait_for_function(
            "(i) => H.clients[i].outbox.length === 1 && H.clients[i].outbox[0].state === 'sending'",
            arg=client,
        )
        key = page.evaluate("(i) => H.clients[i].outbox[0].key", client)
        page.context.set_offline(True)
        page.wait_for_function("(i) => H.clients[i].state === 'offline'", arg=client)
        # Not rejected as "offline": back in the queue, same key.
        waiting = page.evaluate("(i) => H.clients[i].outbox", client)
        assert [(w["key"], w["state"]) for w in waiting] == [(key, "queued")]
        assert page.evaluate("() => H.outcomes") == [None]
    finally:
        os.kill(process.pid, signal.SIGCONT)
    page.context.set_offline(False)
    done = outcomes(page, 1)
    assert done[0]["ok"]["seq"] == 1  # the frozen frame may have landed: then a duplicate, seq 1
    assert wait_seqs(page, topic, 1) == [1]
    assert [e["data"] for e in history(browser_server, topic)] == [{"n": 1}]
    assert page.evaluate("(i) => H.clients[i].outbox", client) == []


def test_unserialisable_data_is_refused_at_once(page: Any, browser_server: DaphneServer) -> None:
    open_harness(page, browser_server)
    topic = topic_name("badjson")
    client = make_client(page, transports=["sse"], outboxTimeout=5000)
    subscribe(page, client, topic)
    wait_log(page, "subscribed", topic)
    answers = page.evaluate(
        """async ([i, t]) => {
            const c = H.clients[i];
            const cyclic = {}; cyclic.self = cyclic;
            const codes = [];
            for (const data of [{n: 10n}, cyclic]) {
                try { await c.publish(t, data); codes.push("published"); }
                catch (error) { codes.push([error.name, error.code, c.outbox.length]); }
            }
            const after = await c.publish(t, {n: 1});
            return {codes, seq: after.seq};
        }""",
        [client, topic],
    )
    assert answers["codes"] == [
        ["RTDeliveryError", "invalid_data", 0],
        ["RTDeliveryError", "invalid_data", 0],
    ]
    assert answers["seq"] == 1  # not stuck behind them
    assert [e["data"] for e in history(browser_server, topic)] == [{"n": 1}]


def test_ws_unreadable_cursor_resets_the_topic(page: Any, browser_server: DaphneServer) -> None:
    open_harness(page, browser_server)
    topic = topic_name("badcursor")
    client = make_client(page, transports=["ws"])
    subscribe(page, client, topic, since="not-a-cursor")
    wait_log(page, "reset", topic)
    wait_log(page, "subscribed", topic)
    assert page.evaluate("([i, t]) => H.clients[i].cursor(t)", [client, topic]) != "not-a-cursor"
    assert publish_many(browser_server, topic, 2) == [1, 2]
    assert wait_seqs(page, topic, 2) == [1, 2]
    errors = page.evaluate("() => H.log.filter((e) => e.name === 'error').map((e) => e.data.code)")
    assert errors == []


def test_late_publish_error_is_not_a_refusal(page: Any, browser_server: DaphneServer) -> None:
    open_harness(page, browser_server)
    topic = f"demo.review{uuid4().hex[:8]}"  # anyone may subscribe, only staff publish
    client = make_client(page, transports=["ws"], outboxTimeout=2000)
    page.evaluate(
        """([i, t]) => {
            H.events[t] = [];
            H.sub0 = H.clients[i].subscribe(t, (e) => H.events[t].push(e));
        }""",
        [client, topic],
    )
    page.wait_for_function("() => H.sub0.state === 'live'")
    # Every request times out before its answer can come: the forbidden answer comes late.
    page.evaluate("(i) => { H.clients[i].options.requestTimeout = 0; }", client)
    start_publish(page, client, topic, {"n": 1})
    page.wait_for_function(
        "() => H.log.some((e) => e.name === 'error' && e.data.code === 'forbidden')"
    )
    assert page.evaluate("() => H.sub0.state") == "live"
    # Timed out and retried until expired, or (a retry answered in time) refused.
    assert outcomes(page, 1)[0]["error"] in {"outbox_expired", "forbidden"}
    assert publish_many(browser_server, topic, 1) == [1]
    assert wait_seqs(page, topic, 1) == [1]
    assert page.evaluate("() => H.sub0.state") == "live"


def test_presence_watch_stops_on_close_and_rests_offline(
    page: Any, browser_server: DaphneServer
) -> None:
    open_harness(page, browser_server)
    topic = topic_name("presence-watch")
    client = make_client(page, transports=["longpoll"], presenceInterval=100)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/rt/presence" in r.url else None)
    page.evaluate(
        """([i, t]) => {
            H.snapshots = 0;
            H.watch = H.clients[i].watchPresence(t, () => { H.snapshots += 1; });
        }""",
        [client, topic],
    )
    page.wait_for_function("() => H.snapshots >= 3")  # every 100 ms on long poll
    page.context.set_offline(True)
    page.wait_for_function("(i) => H.clients[i].state === 'offline'", arg=client)
    page.wait_for_timeout(150)  # the refresh under way when the browser went offline ends
    count = len(requests)
    page.wait_for_timeout(600)  # six intervals: nothing asked, no error
    assert len(requests) == count
    errors = page.evaluate("() => H.log.filter((e) => e.name === 'error').length")
    page.context.set_offline(False)
    page.evaluate("(i) => H.clients[i].close()", client)
    count = len(requests)
    page.wait_for_timeout(400)
    assert len(requests) == count
    assert page.evaluate("() => H.log.filter((e) => e.name === 'error').length") == errors
    assert errors <= 1  # at most the one refresh cut off by going offline


def test_plain_client_accepts_leader_event(page: Any, browser_server: DaphneServer) -> None:
    open_harness(page, browser_server)
    client = make_client(page, transports=["sse"])
    result = page.evaluate(
        "(i) => { const off = H.clients[i].on('leader', () => {}); off(); return typeof off; }",
        client,
    )
    assert result == "function"


def test_get_token_serves_publish_and_history_without_a_subscription(
    browser: Any, demo_server: DaphneServer
) -> None:
    # The admin's tokens: the first expires soon, the second does not.
    pk, tokens = mint(demo_server, [TOKEN_TTL, 600])
    minted_at = time.time()  # the tokens were made before this
    topic = f"demo.review{uuid4().hex[:8]}"  # only staff may publish
    context = browser.new_context()  # no session: only the token says who the page is
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        page.goto(f"{demo_server.base_url}/client-harness/")
        page.wait_for_function("() => window.RTDelivery")
        page.evaluate(
            """(tokens) => {
              window.T = { tokens: tokens, calls: 0 };
              window.client = new RTDelivery.Client({
                transports: ["sse"],
                getToken: async () => { T.calls += 1; return T.tokens.shift(); },
              });
            }""",
            tokens,
        )
        first = page.evaluate("(t) => client.publish(t, {n: 1})", topic)
        assert first["seq"] == 1
        assert page.evaluate("() => T.calls") == 1
        # Past the first token's expiry: the server answers 401 token_expired.
        page.wait_for_function(
            "(at) => Date.now() / 1000 > at", arg=minted_at + TOKEN_TTL + 1, polling=200
        )
        own = page.evaluate("(pk) => client.history(`user.${pk}`)", pk)
        assert own["events"] == []
        assert page.evaluate("() => T.calls") == 2
        second = page.evaluate("(t) => client.publish(t, {n: 2})", topic)
        assert second["seq"] == 2
        assert page.evaluate("() => [T.calls, client.state]") == [2, "idle"]
    finally:
        context.close()
    assert [e["data"] for e in history(demo_server, topic)] == [{"n": 1}, {"n": 2}]


OLD_SERVER_ANSWER = {
    "error": {"code": "bad_request", "message": "Expected at most one 'cursor' parameter, got 2."}
}


def test_old_server_refusing_repeated_cursors_is_asked_the_old_way(
    page: Any, browser_server: DaphneServer
) -> None:
    refused: list[str] = []

    def old_server(route: Any) -> None:
        # A server from before several cursors: 400 bad_request, not invalid_cursor.
        if route.request.url.count("cursor=") > 1:
            refused.append(route.request.url)
            route.fulfill(status=400, json=OLD_SERVER_ANSWER)
        else:
            route.continue_()

    page.route("**/rt/sse?*", old_server)
    open_harness(page, browser_server)
    a, b = topic_name("old-a"), topic_name("old-b")
    assert publish_many(browser_server, a, 3) == [1, 2, 3]
    assert publish_many(browser_server, b, 3) == [1, 2, 3]
    since_a, since_b = event_ids(browser_server, a)[0], event_ids(browser_server, b)[1]
    client = make_client(page, transports=["sse"])
    page.evaluate(
        "([i, a, sa, b, sb]) => { H.sub(i, a, {since: sa}); H.sub(i, b, {since: sb}); }",
        [client, a, since_a, b, since_b],
    )
    assert wait_seqs(page, a, 2) == [2, 3]
    assert wait_seqs(page, b, 1) == [3]
    assert publish_many(browser_server, b, 1) == [4]
    assert wait_seqs(page, b, 2) == [3, 4]
    assert len(refused) == 1  # then one cursor a request, never backing off
    assert page.evaluate("(i) => H.clients[i].state", client) == "open"


def test_unreadable_cursor_among_several_resets_and_keeps_several_cursors(
    page: Any, browser_server: DaphneServer
) -> None:
    open_harness(page, browser_server)
    a, b = topic_name("bad-a"), topic_name("bad-b")
    assert publish_many(browser_server, a, 2) == [1, 2]
    since_a = event_ids(browser_server, a)[0]
    client = make_client(page, transports=["sse"])
    page.evaluate(
        "([i, a, sa, b]) => { H.sub(i, a, {since: sa}); H.sub(i, b, {since: 'not-a-cursor'}); }",
        [client, a, since_a, b],
    )
    wait_log(page, "reset", b)
    page.wait_for_function(
        "([a, b]) => H.has('subscribed', a) && H.has('subscribed', b)", arg=[a, b]
    )
    # Several cursors are still how this client resumes: only the unreadable one went.
    assert page.evaluate("(i) => H.clients[i]._multiCursor", client) is True
    assert publish_many(browser_server, b, 1) == [1]
    assert wait_seqs(page, b, 1) == [1]


@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_too_many_topics_are_refused_by_name(
    page: Any, browser_server: DaphneServer, transport: str
) -> None:
    open_harness(page, browser_server)
    topics = [topic_name(f"many{n}") for n in range(52)]  # MAX_TOPICS is 50
    client = make_client(page, transports=[transport])
    page.evaluate(
        """([i, topics]) => {
            H.subs = topics.map((t) => { H.events[t] = []; return H.clients[i].subscribe(
                t, (e) => H.events[t].push(e)); });
        }""",
        [client, topics],
    )
    # Settled: the first 50 live, the others answered (over WebSocket each subscribe is
    # answered on its own, so the refusals may come after the 50th confirmation).
    page.wait_for_function(
        "() => H.subs.slice(0, 50).every((s) => s.state === 'live')"
        " && H.subs.slice(50).every((s) => s.state !== 'pending')"
    )
    refused = page.evaluate(
        "() => H.subs.slice(50).map((s) => [s.state, s.error && s.error.code, s.error.topic])"
    )
    assert refused == [["refused", "too_many_topics", t] for t in topics[50:]]
    assert publish_many(browser_server, topics[0], 1) == [1]
    assert wait_seqs(page, topics[0], 1) == [1]
    assert page.evaluate("(i) => H.clients[i].state", client) == "open"


@pytest.mark.parametrize("transport", ["sse", "longpoll"])
def test_subscribes_50ms_apart_open_one_request(
    page: Any, browser_server: DaphneServer, transport: str
) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/rt/" in r.url else None)
    open_harness(page, browser_server)
    topics = [topic_name(f"apart{n}") for n in range(5)]
    client = make_client(page, transports=[transport])
    page.evaluate(
        """async ([i, topics]) => {
            for (const topic of topics) {
                H.events[topic] = [];
                H.clients[i].subscribe(topic, (e) => H.events[topic].push(e));
                await new Promise((resolve) => setTimeout(resolve, 50));
            }
        }""",
        [client, topics],
    )
    for topic in topics:
        wait_log(page, "subscribed", topic)
    first = "/rt/sse?" if transport == "sse" else "/rt/poll?"
    opened = [url for url in requests if first in url]
    assert len(opened) == 1, opened
    assert all(f"topic={t}" in opened[0] for t in topics)
    assert publish_many(browser_server, topics[4], 1) == [1]
    assert wait_seqs(page, topics[4], 1) == [1]


@pytest.fixture
def silent_server() -> Iterator[SilentWebSocketServer]:
    server = SilentWebSocketServer()
    try:
        yield server
    finally:
        server.close()


def test_websocket_tried_again_after_the_fallback_opened(
    page: Any, browser_server: DaphneServer, silent_server: SilentWebSocketServer
) -> None:
    silent_ws = silent_server
    open_harness(page, browser_server)
    topic = topic_name("upgrade")
    client = make_client(
        page,
        wsUrl=f"ws://127.0.0.1:{silent_ws.port}/rt/ws",
        livenessTimeout=500,
        firstAnswerTimeout=500,
        openTimeout=30000,
        upgradeAfter=1500,
    )
    subscribe(page, client, topic)
    wait_log(page, "subscribed", topic)
    assert page.evaluate("(i) => H.clients[i].transport", client) == "sse"
    mark = log_mark(page)
    # upgradeAfter later: the WebSocket again (still silent: twice), then SSE again.
    page.wait_for_function(
        """([a]) => H.log.slice(a).filter(
            (e) => e.name === 'disconnected' && e.data.transport === 'ws').length >= 2""",
        arg=[mark],
    )
    with silent_ws.lock:
        assert len(silent_ws.connections) >= 3
    page.wait_for_function("(i) => H.clients[i].transport === 'sse'", arg=client)
    wait_log(page, "subscribed", topic, after=mark)
    assert publish_many(browser_server, topic, 2) == [1, 2]
    assert wait_seqs(page, topic, 2) == [1, 2]


def test_websocket_publishes_keep_their_order_when_one_must_be_sent_again(
    page: Any, browser_server: DaphneServer
) -> None:
    open_harness(page, browser_server)
    topic = topic_name("order")
    client = make_client(page, transports=["ws"])
    subscribe(page, client, topic)
    wait_log(page, "subscribed", topic)
    # The first publish's first send gets no answer in time (as if the ack were lost).
    page.evaluate(
        """(i) => {
            const c = H.clients[i];
            const send = c._wsRequest.bind(c);
            let failed = false;
            c._wsRequest = (conn, frame, kind) => {
                if (kind === "publish" && !failed) {
                    failed = true;
                    return Promise.reject(new RTDelivery.RTDeliveryError("No answer.", "timeout"));
                }
                return send(conn, frame, kind);
            };
        }""",
        client,
    )
    # In one tick, as a page sending a few messages at once.
    seqs = page.evaluate(
        """async ([i, t]) => {
            const c = H.clients[i];
            const answers = await Promise.all([0, 1, 2].map((n) => c.publish(t, {n})));
            return answers.map((a) => a.seq);
        }""",
        [client, topic],
    )
    assert seqs == [1, 2, 3]
    assert [e["data"] for e in history(browser_server, topic)] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_follower_publish_expires_at_the_leader_not_behind_its_back(
    tabs_fixture: Any, browser_server: DaphneServer
) -> None:
    tabs = tabs_fixture(2, transports=["sse"])
    topic = tab_topic_name("deadline")
    subscribe_all(tabs, topic)
    (leader,) = tabs.leaders()
    lead, follow = tabs.pages[leader], tabs.pages[1 - leader]
    # The leader's client goes offline (this tab's event only): publishes wait in its outbox.
    lead.evaluate("() => window.dispatchEvent(new Event('offline'))")
    lead.wait_for_function("() => T.client.state === 'offline'")
    follow.evaluate("() => { T.client.options.outboxTimeout = 1000; }")  # the leader's: 60 s
    follow.evaluate("(t) => T.publish(t, {n: 'expired'})", topic)
    follow.wait_for_function("() => T.answers.length === 1")
    assert follow.evaluate("() => T.answers[0].error.code") == "outbox_expired"
    # Told it failed: then it must not be published when the leader is back.
    assert lead.evaluate("() => T.client.outbox.length") == 0
    lead.evaluate("() => window.dispatchEvent(new Event('online'))")
    lead.wait_for_function("() => T.client.state === 'open'")
    ack = follow.evaluate("(t) => T.client.publish(t, {n: 'next'})", topic)
    assert ack["seq"] == 1
    assert [e["data"] for e in history(browser_server, topic)] == [{"n": "next"}]


def test_shared_client_is_an_instance_of_client(tabs_fixture: Any) -> None:
    tabs = tabs_fixture(1, transports=["sse"])
    page = tabs.pages[0]
    checks = page.evaluate(
        """() => [
            T.client instanceof RTDelivery.Client,
            new RTDelivery.Client({transports: ["sse"]}) instanceof RTDelivery.Client,
            ({}) instanceof RTDelivery.Client,
        ]"""
    )
    assert checks == [True, True, False]
