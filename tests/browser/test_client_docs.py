"""docs/client.md as it stands, in Chromium: the vanilla example page runs as written; one
request carries each topic's own cursor (no history catch-up); ``history()`` pages;
``watchPresence()`` keeps a snapshot current. Against the real Daphne + Redis server of
conftest.py; waits are event-driven.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import TOKEN, DaphneServer
from .test_client import make_client, open_harness, publish_many, topic_name, wait_seqs

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"
EXAMPLE = re.compile(r"<!-- client-example: (\w+) -->\n```\w*\n(.*?)```", re.S)


def example(name: str) -> str:
    found = {m[1]: m[2] for m in EXAMPLE.finditer(DOC.read_text())}
    assert name in found, f"docs/client.md has no <!-- client-example: {name} --> block"
    return found[name]


def test_vanilla_example_runs_as_written(page: Any, browser_server: DaphneServer) -> None:
    # The page replaces a page of the server's origin, so /static/ and /rt/ are the server's.
    page.goto(f"{browser_server.base_url}/client-harness/")
    page.set_content(example("vanilla"))
    page.wait_for_function("() => document.getElementById('state').textContent === 'open'")
    assert page.is_enabled("#send")
    assert page.evaluate("() => client.transport") == "ws"

    first = browser_server.publish("feed", {"text": "one"})["seq"]
    browser_server.publish("feed", {"text": "two"})
    page.wait_for_function("() => document.querySelectorAll('#events li').length === 2")
    items = page.eval_on_selector_all("#events li", "(items) => items.map((li) => li.textContent)")
    assert items == [
        f'#{first} message: {{"text":"one"}}',
        f'#{first + 1} message: {{"text":"two"}}',
    ]
    # Anonymous visitors may not publish on "feed" (staff only): the refusal reaches the page.
    with page.expect_console_message(lambda message: "published" in message.text) as message:
        page.click("#send")
    assert message.value.text == "not published: forbidden"


def event_ids(server: DaphneServer, topic: str) -> list[str]:
    response = httpx.get(
        f"{server.base_url}/rt/history",
        params={"topic": topic, "limit": 100},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return [event["id"] for event in response.json()["events"]]


@pytest.mark.parametrize("transport", ["sse", "longpoll", "poll"])
def test_each_topics_own_cursor_in_one_request(
    page: Any, browser_server: DaphneServer, transport: str
) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/rt/" in r.url else None)
    open_harness(page, browser_server)
    a, b = topic_name("cur-a"), topic_name("cur-b")
    assert publish_many(browser_server, a, 3) == [1, 2, 3]
    assert publish_many(browser_server, b, 3) == [1, 2, 3]
    since_a, since_b = event_ids(browser_server, a)[0], event_ids(browser_server, b)[1]
    client = make_client(page, transports=[transport], pollInterval=60000)
    page.evaluate(
        """([i, a, sa, b, sb]) => {
            H.sub(i, a, {since: sa});
            H.sub(i, b, {since: sb});
        }""",
        [client, a, since_a, b, since_b],
    )
    assert wait_seqs(page, a, 2) == [2, 3]
    assert wait_seqs(page, b, 1) == [3]
    first = "/rt/sse?" if transport == "sse" else "/rt/poll?"
    opened = [url for url in requests if first in url]
    assert len(opened) == 1, requests
    assert opened[0].count("cursor=") == 2
    assert [url for url in requests if "/rt/history?" in url] == []
    if transport == "sse":
        assert [url for url in requests if "/rt/poll?" in url] == []


def test_history_pages(page: Any, browser_server: DaphneServer) -> None:
    open_harness(page, browser_server)
    topic = topic_name("hist")
    assert publish_many(browser_server, topic, 3) == [1, 2, 3]
    client = make_client(page, transports=["sse"])
    pages = page.evaluate(
        """async ([i, t]) => {
            const c = H.clients[i];
            const last = await c.history(t, {limit: 2});
            const all = await c.history(t, {limit: 100});
            const first = all.events[0].id;
            const after = await c.history(t, {cursor: first, limit: 1});
            const next = await c.history(t, {cursor: after.cursor});
            return [last, after, next].map((p) => [p.events.map((e) => e.seq), p.recovered]);
        }""",
        [client, topic],
    )
    assert pages == [[[2, 3], True], [[2], True], [[3], True]]


@pytest.mark.parametrize("transport", ["ws", "sse", "poll"])
def test_watch_presence_applies_joins_and_leaves(
    page: Any, browser_server: DaphneServer, transport: str
) -> None:
    open_harness(page, browser_server)
    topic = topic_name("presence")  # harness.*: presence on
    # On poll no changes arrive: the snapshot is asked for every presenceInterval ms, and the
    # server counts the polling watcher by its client= id.
    watcher = make_client(page, transports=[transport], presenceInterval=300)
    other = make_client(page, transports=["ws"])
    page.evaluate(
        """([i, t]) => {
            H.sub(i, t);
            H.counts = [];
            H.watch = H.clients[i].watchPresence(t, (s) => H.counts.push(s.count));
        }""",
        [watcher, topic],
    )
    page.wait_for_function("() => H.watch.snapshot && H.watch.snapshot.count === 1")
    page.evaluate("([i, t]) => H.sub(i, t)", [other, topic])
    page.wait_for_function("() => H.watch.snapshot.count === 2")
    assert page.evaluate("() => H.watch.snapshot.anonymous") == 2
    page.evaluate("(i) => H.clients[i].close()", other)
    page.wait_for_function("() => H.watch.snapshot.count === 1")
    page.evaluate("() => H.watch.stop()")
    assert page.evaluate("() => H.counts.at(-1)") == 1


def test_ambiguous_cursors_fall_back_to_history_catch_up(
    page: Any, browser_server: DaphneServer
) -> None:
    responses: list[tuple[str, int]] = []
    page.on(
        "response",
        lambda r: responses.append((r.url, r.status)) if "/rt/" in r.url else None,
    )
    open_harness(page, browser_server)
    a, b = topic_name("amb-a"), topic_name("amb-b")
    client = make_client(page, transports=["sse"])
    page.evaluate("([i, a, b]) => { H.sub(i, a); H.sub(i, b); }", [client, a, b])
    page.wait_for_function(
        "([a, b]) => H.has('subscribed', a) && H.has('subscribed', b)", arg=[a, b]
    )
    assert publish_many(browser_server, a, 1) == [1]
    assert publish_many(browser_server, b, 1) == [1]
    assert wait_seqs(page, a, 1) == [1]
    assert wait_seqs(page, b, 1) == [1]
    since_b = page.evaluate("(b) => H.events[b][0].id", b)
    # The stream moves past b's first event: whichever stream cursor a keeps covers b at 0
    # (taken at a's event) or at 2 (taken later), never at 1 like since_b. Leave b and come
    # back from since_b: two cursors put b at two positions, which the server refuses as
    # ambiguous (the same position twice it would accept).
    assert publish_many(browser_server, b, 1) == [2]
    assert wait_seqs(page, b, 2) == [1, 2]
    # In one tick, so the stream is reopened once, with a's stream cursor and b's own.
    page.evaluate(
        """([i, b, since]) => {
            H.clients[i].unsubscribe(b);
            H.events[b] = [];
            H.sub(i, b, {since});
        }""",
        [client, b, since_b],
    )
    assert wait_seqs(page, b, 1) == [2]  # caught up from since_b, exactly once
    assert publish_many(browser_server, b, 1) == [3]
    assert publish_many(browser_server, a, 1) == [2]
    assert wait_seqs(page, b, 2) == [2, 3]
    assert wait_seqs(page, a, 2) == [1, 2]
    refused = [url for url, status in responses if status == 400]
    assert len(refused) == 1, responses
    assert refused[0].count("cursor=") == 2
    assert any("/rt/history?" in url and f"topic={b}" in url for url, _ in responses)
    assert page.evaluate("(i) => H.clients[i].state", client) == "open"
