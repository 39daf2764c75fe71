"""rtdelivery.js over WebSocket in Chromium against a real Uvicorn + Redis server.

Uvicorn's default WebSocket protocol (websockets-sansio) takes rtdelivery's direct write path
(transports/flow.py ``WriteRound`` / ``_UvicornWebSocketLink``): events go straight to the
socket in a per-loop write round, replies through a writer task. Chromium negotiates
permessage-deflate, so the per-connection compression branch of ``write_texts`` runs (checked
from the handshake's ``Sec-WebSocket-Extensions`` response header, read over CDP).

A burst reaches two pages exactly once and in seq order, a page's publish reaches the other
page; the server killed (SIGKILL) and restarted while events are published (the page held
offline meanwhile, so that it resumes from a backlog); publish acks and presence replies while
events stream. Bursts come over HTTP (mostly one event per write round) and from one process's
``apublish`` calls (rounds of several events). The page cannot see which write path the server
took: breaking the compression branch of ``write_texts`` (dropping, repeating or reordering a
round's events) makes these tests fail. Waits are conditions on the harness (demo/harness.html).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from .conftest import ARTIFACTS, UvicornServer, manage
from .test_client import (
    log_mark,
    log_names,
    make_client,
    open_harness,
    publish_many,
    subscribe,
    topic_name,
    wait_log,
)

#: Events in a burst; concurrent HTTP publishers.
BURST = 200
PUBLISHERS = 8
#: Publishes ``COUNT`` events on ``TOPIC`` with ``apublish`` (``manage.py shell``), ``CHUNK``
#: at once then a pause of ``PAUSE`` s: one process's concurrent publishes go to Redis as one
#: batch, so they reach the server's loop together and are written in rounds of several
#: events (HTTP publishes, one request each, mostly arrive one per loop step: rounds of one).
#: Prints their seqs.
IN_PROCESS_BURST = """
import asyncio, json
from rtdelivery import apublish

async def burst():
    seqs = []
    for start in range(0, COUNT, CHUNK):
        chunk = range(start, min(start + CHUNK, COUNT))
        events = await asyncio.gather(*(apublish(TOPIC, {"n": n, "from": "script"}) for n in chunk))
        seqs += [event.seq for event in events]
        await asyncio.sleep(PAUSE)
    print(json.dumps(seqs))

asyncio.run(burst())
"""


@dataclass
class Tab:
    """A harness page in a context of its own, with its WebSocket handshakes' response headers."""

    page: Any
    handshakes: list[dict[str, str]] = field(default_factory=list)

    def extensions(self) -> list[str]:
        return [h.get("sec-websocket-extensions", "") for h in self.handshakes]


@pytest.fixture
def open_tab(
    browser: Any, uvicorn_browser_server: UvicornServer, request: pytest.FixtureRequest
) -> Iterator[Callable[[], Tab]]:
    """Opens harness pages on the Uvicorn server; screenshots saved after the test."""
    contexts: list[Any] = []

    def open_() -> Tab:
        context = browser.new_context()
        context.set_default_timeout(15_000)
        contexts.append(context)
        tab = Tab(context.new_page())
        # The negotiated extensions are only in the handshake response: CDP's Network domain.
        cdp = context.new_cdp_session(tab.page)
        cdp.send("Network.enable")
        cdp.on(
            "Network.webSocketHandshakeResponseReceived",
            lambda e: tab.handshakes.append(
                {k.lower(): v for k, v in e["response"]["headers"].items()}
            ),
        )
        open_harness(tab.page, uvicorn_browser_server)
        return tab

    try:
        yield open_
    finally:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        for n, context in enumerate(contexts):
            try:
                context.pages[0].screenshot(path=str(ARTIFACTS / f"{name}-{n}.png"), full_page=True)
            finally:
                context.close()


def wait_seqs(page: Any, topic: str, count: int) -> list[int]:
    """The topic's seqs once there are ``count``; on timeout, fails saying which are missing
    or repeated (test_client's wait_seqs, with a diagnosis)."""
    try:
        page.wait_for_function("([t, n]) => H.seqs(t).length >= n", arg=[topic, count])
    except PlaywrightTimeout:
        got: list[int] = page.evaluate("(t) => H.seqs(t)", topic)
        missing = sorted(set(range(1, count + 1)) - set(got))
        pytest.fail(
            f"expected {count} events on {topic}, got {len(got)}: missing seqs "
            f"{missing[:20]}{'...' if len(missing) > 20 else ''}, "
            f"out of order or repeated: {got != sorted(set(got))}",
            pytrace=False,
        )
    seqs: list[int] = page.evaluate("(t) => H.seqs(t)", topic)
    return seqs


def ws_client(tab: Tab, topic: str) -> int:
    """A client pinned to the WebSocket, subscribed to ``topic`` (live once this returns)."""
    client = make_client(tab.page, transports=["ws"])
    mark = log_mark(tab.page)
    subscribe(tab.page, client, topic)
    wait_log(tab.page, "subscribed", topic, after=mark)
    return client


def publish_burst(server: UvicornServer, topic: str, count: int) -> list[int]:
    """``count`` events from Python, ``PUBLISHERS`` at a time; their seqs."""
    with ThreadPoolExecutor(PUBLISHERS) as pool:
        return list(pool.map(lambda n: server.publish(topic, {"n": n})["seq"], range(count)))


def publish_in_process(
    server: UvicornServer, topic: str, count: int, chunk: int | None = None, pause: float = 0.0
) -> list[int]:
    """``count`` events from another process on the server's settings, ``chunk`` at once
    (all by default); their seqs."""
    code = (
        IN_PROCESS_BURST.replace("TOPIC", repr(topic))
        .replace("COUNT", str(count))
        .replace("CHUNK", str(chunk or count))
        .replace("PAUSE", repr(pause))
    )
    seqs: list[int] = json.loads(manage(server.env, "shell", "-c", code).splitlines()[-1])
    return seqs


class Publisher:
    """Threads publishing to ``topic`` until stopped; a publish the server did not answer
    (down, or killed mid-request) is tried again, so its event may be stored twice (two
    seqs), never lost. ``published``: the seqs the server acknowledged."""

    def __init__(self, server: UvicornServer, topic: str, threads: int, pause: float) -> None:
        self.server, self.topic, self.pause = server, topic, pause
        self.published: list[int] = []
        self.unanswered = 0
        self.failure: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Publisher:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        assert not any(t.is_alive() for t in self._threads), "publisher threads did not end"

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.published.append(
                        self.server.publish(self.topic, {"from": "python"})["seq"]
                    )
                except httpx.TransportError:
                    self.unanswered += 1
                self._stop.wait(self.pause)  # pacing; also the retry delay while down
        except BaseException as error:  # reported by the test
            self.failure.append(error)


def assert_clean(tab: Tab, client: int, after: int = 0, allow: tuple[str, ...] = ()) -> None:
    names = log_names(tab.page)[after:]
    for bad in ("error", "reset", "disconnected"):
        if bad not in allow:
            assert bad not in names, names
    state = tab.page.evaluate(
        "(i) => ({transport: H.clients[i].transport, state: H.clients[i].state})", client
    )
    assert state == {"transport": "ws", "state": "open"}
    # The client drops an event at or before its last seq without a word: the server must
    # not have sent one twice either.
    stats = tab.page.evaluate("(i) => H.clients[i].stats", client)
    assert (stats["duplicates"], stats["resets"]) == (0, 0), stats


def test_burst_reaches_two_pages_once_in_order_over_permessage_deflate(
    open_tab: Callable[[], Tab], uvicorn_browser_server: UvicornServer
) -> None:
    server = uvicorn_browser_server
    topic = topic_name("uvicorn-burst")
    tabs = [open_tab(), open_tab()]
    clients = [ws_client(tab, topic) for tab in tabs]

    # HTTP publishes (rounds of one event, mostly), then one process's (rounds of several).
    assert sorted(publish_burst(server, topic, BURST)) == list(range(1, BURST + 1))
    for tab in tabs:
        assert wait_seqs(tab.page, topic, BURST) == list(range(1, BURST + 1))
    total = 2 * BURST
    assert sorted(publish_in_process(server, topic, BURST)) == list(range(BURST + 1, total + 1))
    for tab in tabs:
        assert wait_seqs(tab.page, topic, total) == list(range(1, total + 1))

    # A publish from the first page (an ack over its WebSocket) reaches the second.
    ack = tabs[0].page.evaluate(
        "([i, t]) => H.clients[i].publish(t, {from: 'page0'}, {type: 'page'})",
        [clients[0], topic],
    )
    assert ack["seq"] == total + 1
    assert ack["topic"] == topic
    for tab in tabs:
        assert wait_seqs(tab.page, topic, total + 1) == list(range(1, total + 2))
    last = tabs[1].page.evaluate("(t) => H.events[t].at(-1)", topic)
    assert (last["type"], last["data"], last["id"]) == ("page", {"from": "page0"}, ack["id"])

    for tab, client in zip(tabs, clients, strict=True):
        assert_clean(tab, client)
        # One WebSocket each, and it negotiated permessage-deflate (Chromium offers it).
        assert len(tab.handshakes) == 1, tab.handshakes
        assert "permessage-deflate" in tab.extensions()[0], tab.handshakes


def test_server_killed_and_restarted_mid_stream_resumes_without_loss_or_duplicate(
    open_tab: Callable[[], Tab], uvicorn_browser_server: UvicornServer
) -> None:
    server = uvicorn_browser_server
    topic = topic_name("uvicorn-restart")
    tab = open_tab()
    client = ws_client(tab, topic)
    assert publish_many(server, topic, 3) == [1, 2, 3]
    assert wait_seqs(tab.page, topic, 3) == [1, 2, 3]

    with Publisher(server, topic, threads=2, pause=0.01) as publisher:
        wait_seqs(tab.page, topic, 30)  # events are streaming
        mark = log_mark(tab.page)
        server.kill()
        wait_log(tab.page, "disconnected", after=mark)  # the client noticed
        # Offline, the client waits: the restarted server gets a backlog for it to resume
        # from (else it tends to be back before the publishers, with nothing to replay).
        tab.page.context.set_offline(True)
        tab.page.wait_for_function("(i) => H.clients[i].state === 'offline'", arg=client)
        server.start()  # same port; the publishers go on as soon as it listens
        backlog = publish_in_process(server, topic, BURST)
        tab.page.context.set_offline(False)
        wait_log(tab.page, "subscribed", topic, after=mark)
        # Live again: events published after the resume arrive too.
        wait_seqs(tab.page, topic, max(publisher.published) + 20)
    assert not publisher.failure, publisher.failure
    (last,) = publish_many(server, topic, 1)

    # Every stored seq once, in order: those published while it was down came from history.
    assert wait_seqs(tab.page, topic, last) == list(range(1, last + 1))
    assert set(publisher.published) <= set(range(4, last))
    assert set(backlog) <= set(range(4, last))
    assert len({*publisher.published, *backlog}) == len(publisher.published) + len(backlog)
    assert "recovered" in log_names(tab.page)[mark:]
    assert_clean(tab, client, after=mark, allow=("disconnected",))
    assert len(tab.handshakes) == 2, tab.handshakes
    assert all("permessage-deflate" in e for e in tab.extensions()), tab.handshakes


def test_replies_interleaved_with_a_stream_of_events(
    open_tab: Callable[[], Tab], uvicorn_browser_server: UvicornServer
) -> None:
    server = uvicorn_browser_server
    topic = topic_name("uvicorn-replies")
    tabs = [open_tab(), open_tab()]
    clients = [ws_client(tab, topic) for tab in tabs]
    # Publishes and presence requests each; within PUBLISH_BURST (20 per IP address).
    requests = 15
    streamed = 1000

    # Events in batches of 20 every 20 ms (about a second) while the first page asks.
    with ThreadPoolExecutor(1) as pool:
        burst = pool.submit(publish_in_process, server, topic, streamed, 20, 0.02)
        wait_seqs(tabs[0].page, topic, 50)
        # Each answer notes how many events had arrived when it did: a reply frame's
        # promise settles before the socket's next message is read.
        answers = tabs[0].page.evaluate(
            """async ([i, t, n]) => {
                const client = H.clients[i];
                const at = (answer) => ({answer, at: H.events[t].length});
                const pending = [];
                for (let k = 0; k < n; k++) {
                    pending.push(client.publish(t, {k, from: "page"}, {type: "page"}).then(at));
                    pending.push(client.presence(t).then(at));
                }
                return await Promise.all(pending);
            }""",
            [clients[0], topic, requests],
        )
        seqs = burst.result(timeout=120)
    (last,) = publish_many(server, topic, 1)
    assert last == streamed + requests + 1

    # Events came between the replies on the socket: they were interleaved.
    arrivals = [a["at"] for a in answers]
    assert max(arrivals) > min(arrivals), arrivals
    assert min(arrivals) < streamed, arrivals

    acks = [a["answer"] for a in answers[0::2]]
    snapshots = [a["answer"] for a in answers[1::2]]
    assert all(s["topic"] == topic for s in snapshots), snapshots
    ack_seqs = [ack["seq"] for ack in acks]
    # The page's publishes keep their order, each once, among the script's.
    assert ack_seqs == sorted(set(ack_seqs)), ack_seqs
    assert sorted([*seqs, *ack_seqs, last]) == list(range(1, last + 1))
    for tab, client in zip(tabs, clients, strict=True):
        assert wait_seqs(tab.page, topic, last) == list(range(1, last + 1))
        events = tab.page.evaluate("(t) => H.events[t]", topic)
        from_page = [(e["seq"], e["data"]["k"]) for e in events if e["type"] == "page"]
        assert from_page == list(zip(ack_seqs, range(requests), strict=True))
        assert_clean(tab, client)
