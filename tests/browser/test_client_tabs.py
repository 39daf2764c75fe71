"""Tab sharing (``new RTDelivery.Client({shared: true})``) in Chromium: one connection per browser.

Eight tabs (pages of one browser context, so one origin, one set of Web Locks and one
BroadcastChannel space) subscribe to the same topic: every tab gets every event exactly once and
in order while the browser holds one SSE stream or one long poll at a time, always from the
leader tab. Closing the leader tab mid-stream hands the connection over to another tab with no
event lost or delivered twice in any tab. A follower's publish goes through the leader (one
``POST publish``, from the leader tab) and is delivered once. The same hand-over without Web
Locks (the BroadcastChannel election).

Requests are counted from the browser (the context's request events, across pages); waits are
``page.wait_for_function`` conditions, never fixed sleeps.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import pytest

from .conftest import ARTIFACTS, DaphneServer

TABS = 8
#: Fast timings for tests: reconnect within 0.1-1 s, short long-poll holds.
FAST = {"pollInterval": 200, "longpollTimeout": 5, "backoff": {"base": 100, "max": 1000}}
#: Endpoints that hold a request open (an SSE stream, a long poll).
HELD = ("/rt/sse", "/rt/longpoll")

#: The page-side helper: one shared client per tab, the seqs it delivered per topic, its log.
TAB_HELPER = """
window.T = {
  client: null, seqs: {}, ids: {}, log: [], answers: [],
  make(options) {
    T.client = new RTDelivery.Client(options);
    ["leader", "state", "subscribed", "reset", "error"].forEach((name) => {
      const log = (data) => T.log.push({
        name, data: data instanceof Error ? {message: data.message, code: data.code} : data,
      });
      try { T.client.on(name, log); } catch (error) { /* a plain client has no "leader" */ }
    });
  },
  sub(topic, since) {
    T.seqs[topic] = [];
    T.ids[topic] = [];
    T.client.subscribe(topic, (event) => {
      T.seqs[topic].push(event.seq);
      T.ids[topic].push(event.id);
    }, since ? {since} : undefined);
  },
  publish(topic, data, options) {
    T.client.publish(topic, data, options).then(
      (ack) => T.answers.push({ack}),
      (error) => T.answers.push({error: {message: error.message, code: error.code}}),
    );
  },
  live(topic) {
    return T.log.some((e) => e.name === "subscribed" && e.data.topic === topic);
  },
  errors() {
    return T.log.filter((e) => e.name === "error" || e.name === "reset");
  },
};
"""
#: Lets a test drop the channel message carrying event ``window.dropSeq`` in one tab (once).
DROP_ONE_EVENT = """
window.dropSeq = null;
const slot = Object.getOwnPropertyDescriptor(BroadcastChannel.prototype, "onmessage");
Object.defineProperty(BroadcastChannel.prototype, "onmessage", {
  get() { return slot.get.call(this); },
  set(fn) {
    slot.set.call(this, (message) => {
      const m = message.data;
      if (m && m.t === "event" && m.event.seq === window.dropSeq) {
        window.dropSeq = null;
        return;
      }
      fn(message);
    });
  },
});
"""
NO_WEB_LOCKS = "Object.defineProperty(Navigator.prototype, 'locks', {get: () => undefined});"


@dataclass
class RequestLog:
    """The held requests (SSE, long poll) and publishes of every page, as the browser made them."""

    pages: list[Any]
    held: list[tuple[int, str]] = field(default_factory=list)  # (page index, path)
    publishes: list[int] = field(default_factory=list)
    in_flight: set[Any] = field(default_factory=set)
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def index(self, request: Any) -> int:
        page = request.frame.page
        return self.pages.index(page) if page in self.pages else -1

    def started(self, request: Any) -> None:
        path = re.sub(r"\?.*", "", request.url.split("://", 1)[1].split("/", 1)[1])
        path = "/" + path
        with self.lock:
            if path in HELD:
                self.held.append((self.index(request), path))
                self.in_flight.add(request)
                self.max_in_flight = max(self.max_in_flight, len(self.in_flight))
            elif path == "/rt/publish" and request.method == "POST":
                self.publishes.append(self.index(request))

    def ended(self, request: Any) -> None:
        with self.lock:
            self.in_flight.discard(request)

    def forget(self, page_index: int) -> None:
        """A closed page's requests end with it (the browser may not report them)."""
        with self.lock:
            self.in_flight = {r for r in self.in_flight if self.index(r) != page_index}


@dataclass
class Tabs:
    context: Any
    pages: list[Any]
    requests: RequestLog

    def each(self, script: str, arg: Any = None) -> list[Any]:
        return [page.evaluate(script, arg) for page in self.pages]

    def wait_all(self, condition: str, arg: Any = None) -> None:
        for page in self.pages:
            page.wait_for_function(condition, arg=arg)

    def leaders(self) -> list[int]:
        roles = self.each("() => T.client.role")
        return [i for i, role in enumerate(roles) if role == "leader"]

    def seqs(self, topic: str) -> list[list[int]]:
        return self.each("(t) => T.seqs[t]", topic)


def topic_name(kind: str) -> str:
    return f"harness.tabs.{kind}.{uuid4().hex[:10]}"


@pytest.fixture
def open_tabs(
    browser: Any, browser_server: DaphneServer, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """``open_tabs(n, web_locks=True, **options)`` opens n harness pages with a shared client each."""
    contexts: list[Any] = []

    def open_tabs(
        count: int, web_locks: bool = True, init_script: str | None = None, **options: Any
    ) -> Tabs:
        context = browser.new_context()
        contexts.append(context)
        context.set_default_timeout(20_000)
        if not web_locks:
            context.add_init_script(NO_WEB_LOCKS)
        if init_script:
            context.add_init_script(init_script)
        context.add_init_script(TAB_HELPER)
        requests = RequestLog(pages=[])
        context.on("request", requests.started)
        context.on("requestfinished", requests.ended)
        context.on("requestfailed", requests.ended)
        for _ in range(count):
            page = context.new_page()
            requests.pages.append(page)
            page.goto(f"{browser_server.base_url}/client-harness/")
            page.wait_for_function("() => window.T && window.RTDelivery")
            page.evaluate("(o) => T.make(o)", {**FAST, "shared": True, **options})
        return Tabs(context, requests.pages, requests)

    try:
        yield open_tabs
    finally:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        for context in contexts:
            open_pages = [p for p in context.pages if not p.is_closed()]
            try:
                if open_pages:
                    open_pages[0].screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            finally:
                context.close()


def subscribe_all(tabs: Tabs, topic: str) -> None:
    for page in tabs.pages:
        page.evaluate("(t) => T.sub(t)", topic)
    tabs.wait_all("(t) => T.live(t)", topic)


def publish_range(server: DaphneServer, topic: str, count: int) -> list[int]:
    return [server.publish(topic, {"n": n})["seq"] for n in range(count)]


@pytest.mark.parametrize("transport", ["sse", "longpoll"])
def test_eight_tabs_share_one_connection(
    open_tabs: Any, browser_server: DaphneServer, transport: str
) -> None:
    tabs = open_tabs(TABS, transports=[transport])
    topic = topic_name(transport)
    subscribe_all(tabs, topic)
    leaders = tabs.leaders()
    assert len(leaders) == 1, leaders
    (leader,) = leaders

    assert publish_range(browser_server, topic, 20) == list(range(1, 21))
    tabs.wait_all("([t, n]) => T.seqs[t].length >= n", [topic, 20])
    assert tabs.seqs(topic) == [list(range(1, 21))] * TABS

    # One connection for the browser: every held request from the leader tab, one at a time.
    held = tabs.requests.held
    assert held, "no SSE / long-poll request seen"
    assert {index for index, _ in held} == {leader}, held
    assert {path for _, path in held} == {f"/rt/{transport}"}
    assert tabs.requests.max_in_flight == 1
    if transport == "sse":
        assert len(held) == 1, held  # one stream for eight tabs
    states = tabs.each("() => [T.client.state, T.client.transport]")
    assert states == [["open", transport]] * TABS
    # One client for the browser: one id on its requests (presence counts the browser once).
    client_ids = set(tabs.each("() => T.client.clientId"))
    assert len(client_ids) == 1
    assert None not in client_ids
    assert tabs.each("() => T.errors()") == [[]] * TABS


@pytest.mark.parametrize(
    ("transport", "web_locks"),
    [("sse", True), ("longpoll", True), ("ws", True), ("sse", False)],
    ids=["sse", "longpoll", "ws", "sse-no-web-locks"],
)
def test_leader_closed_mid_stream_hands_over_without_loss_or_duplicate(
    open_tabs: Any, browser_server: DaphneServer, transport: str, web_locks: bool
) -> None:
    count = TABS if web_locks else 3
    tabs = open_tabs(count, web_locks=web_locks, transports=[transport])
    topic = topic_name("failover")
    subscribe_all(tabs, topic)
    (leader,) = tabs.leaders()

    published: list[int] = []
    stop = threading.Event()
    failure: list[BaseException] = []

    def publisher() -> None:
        try:
            while not stop.is_set():
                published.append(browser_server.publish(topic, {"n": len(published)})["seq"])
                stop.wait(0.02)  # pacing: a steady stream across the hand-over
        except BaseException as error:  # reported by the test
            failure.append(error)

    thread = threading.Thread(target=publisher, daemon=True)
    thread.start()
    try:
        tabs.wait_all("([t, n]) => T.seqs[t].length >= n", [topic, 10])
        old_leader = tabs.pages[leader].evaluate("() => T.client.tabId")
        tabs.pages[leader].close()
        tabs.requests.forget(leader)
        rest = Tabs(
            tabs.context, [p for i, p in enumerate(tabs.pages) if i != leader], tabs.requests
        )
        rest.wait_all("(old) => ![null, old].includes(T.client.leader)", old_leader)
        new_leaders = rest.leaders()
        assert len(new_leaders) == 1, new_leaders
        # Events keep flowing through the new leader.
        seen = max(len(s) for s in rest.seqs(topic))
        rest.wait_all("([t, n]) => T.seqs[t].length >= n", [topic, seen + 10])
    finally:
        stop.set()
        thread.join(10)
    assert not failure, failure
    total = len(published)
    assert published == list(range(1, total + 1))
    rest.wait_all("([t, n]) => T.seqs[t].length >= n", [topic, total])
    assert rest.seqs(topic) == [list(range(1, total + 1))] * (count - 1)
    assert rest.each("() => T.errors()") == [[]] * (count - 1)
    if transport != "ws":
        # After the hand-over, held requests come from the new leader only, one at a time.
        new_leader_page = rest.pages[new_leaders[0]]
        indexes = {tabs.requests.pages.index(new_leader_page), leader}
        assert {index for index, _ in tabs.requests.held} <= indexes
        assert len(tabs.requests.in_flight) <= 1


def test_follower_publish_goes_through_the_leader_once(
    open_tabs: Any, browser_server: DaphneServer
) -> None:
    tabs = open_tabs(3, transports=["sse"])
    topic = topic_name("publish")
    subscribe_all(tabs, topic)
    (leader,) = tabs.leaders()
    follower = next(i for i in range(3) if i != leader)

    ack = tabs.pages[follower].evaluate(
        "(t) => T.client.publish(t, {from: 'follower'}, {type: 'page'})", topic
    )
    assert (ack["topic"], ack["seq"]) == (topic, 1)
    assert ack["id"]
    tabs.wait_all("(t) => T.seqs[t].length >= 1", topic)
    assert publish_range(browser_server, topic, 1) == [2]
    tabs.wait_all("(t) => T.seqs[t].length >= 2", topic)
    assert tabs.seqs(topic) == [[1, 2]] * 3
    assert tabs.requests.publishes == [leader]
    assert tabs.each("() => T.client.outbox.length") == [0, 0, 0]


def test_follower_subscribing_with_since_catches_up_from_history(
    open_tabs: Any, browser_server: DaphneServer
) -> None:
    tabs = open_tabs(2, transports=["sse"])
    leader_page, follower_page = sorted(
        tabs.pages, key=lambda p: p.evaluate("() => T.client.role") != "leader"
    )
    topic = topic_name("since")
    leader_page.evaluate("(t) => T.sub(t)", topic)
    leader_page.wait_for_function("(t) => T.live(t)", arg=topic)
    assert publish_range(browser_server, topic, 5) == [1, 2, 3, 4, 5]
    leader_page.wait_for_function("(t) => T.seqs[t].length >= 5", arg=topic)
    second = leader_page.evaluate("(t) => T.ids[t][1]", topic)

    # The connection carries the topic already: the follower reads 3..5 from history.
    follower_page.evaluate("([t, since]) => T.sub(t, since)", [topic, second])
    follower_page.wait_for_function("(t) => T.seqs[t].length >= 3", arg=topic)
    assert publish_range(browser_server, topic, 2) == [6, 7]
    tabs.wait_all("(t) => T.seqs[t].length >= 1 && T.seqs[t].at(-1) >= 7", topic)
    assert leader_page.evaluate("(t) => T.seqs[t]", topic) == [1, 2, 3, 4, 5, 6, 7]
    assert follower_page.evaluate("(t) => T.seqs[t]", topic) == [3, 4, 5, 6, 7]
    assert follower_page.evaluate("() => T.client.stats.catchUps") == 1
    assert tabs.each("() => T.errors()") == [[], []]


def test_publish_in_flight_when_the_leader_goes_is_published_once(
    open_tabs: Any, browser_server: DaphneServer
) -> None:
    """The leader's POST reaches the server, its answer never reaches the leader, the leader
    tab closes: the follower's publish goes again through the next leader with the same key,
    and the server answers the first publish (``duplicate``) instead of publishing twice."""
    tabs = open_tabs(3, transports=["sse"])
    topic = topic_name("inflight")
    subscribe_all(tabs, topic)
    (leader,) = tabs.leaders()
    leader_page = tabs.pages[leader]
    rest = [p for i, p in enumerate(tabs.pages) if i != leader]
    follower = rest[0]
    held: list[dict[str, Any]] = []

    def swallow_answer(route: Any) -> None:
        # Sent to the server for real; the answer is kept from the leader's page.
        response = route.fetch()
        held.append(response.json())

    leader_page.route("**/rt/publish", swallow_answer)
    follower.evaluate("(t) => T.publish(t, {from: 'follower'}, {key: 'tabs-inflight-1'})", topic)
    # The server published it: every tab gets the event, while the publish has no answer yet.
    tabs.wait_all("(t) => T.seqs[t].length >= 1", topic)
    assert [answer["seq"] for answer in held] == [1]
    assert follower.evaluate("() => [T.answers.length, T.client.outbox.length]") == [0, 1]

    leader_page.close()
    follower.wait_for_function("() => T.answers.length >= 1")
    (answer,) = follower.evaluate("() => T.answers")
    assert (answer["ack"]["seq"], answer["ack"].get("duplicate")) == (1, True), answer
    assert follower.evaluate("() => T.client.outbox.length") == 0
    # Published once: the next event is seq 2, and every tab has 1, 2 once.
    assert publish_range(browser_server, topic, 1) == [2]
    for page in rest:
        page.wait_for_function("(t) => T.seqs[t].length >= 2", arg=topic)
        assert page.evaluate("(t) => T.seqs[t]", topic) == [1, 2]


def test_a_tab_that_misses_an_event_fills_the_gap_from_history(
    open_tabs: Any, browser_server: DaphneServer
) -> None:
    tabs = open_tabs(3, init_script=DROP_ONE_EVENT, transports=["sse"])
    topic = topic_name("gap")
    subscribe_all(tabs, topic)
    (leader,) = tabs.leaders()
    follower = tabs.pages[(leader + 1) % 3]
    follower.evaluate("() => { window.dropSeq = 3; }")

    assert publish_range(browser_server, topic, 6) == [1, 2, 3, 4, 5, 6]
    tabs.wait_all("(t) => T.seqs[t].length >= 6", topic)
    # Event 3 never reached the follower over the channel: seq 4 showed the gap, history had it.
    assert follower.evaluate("() => window.dropSeq") is None
    assert tabs.seqs(topic) == [[1, 2, 3, 4, 5, 6]] * 3
    assert follower.evaluate("() => T.client.stats.catchUps") == 1
    assert tabs.each("() => T.errors()") == [[]] * 3


def test_short_polling_goes_on_while_the_leader_tab_is_hidden(
    open_tabs: Any, browser_server: DaphneServer
) -> None:
    # A plain client pauses short polling in a hidden tab; the shared one may be serving
    # visible tabs, so it polls on.
    tabs = open_tabs(2, transports=["poll"], pollInterval=100)
    topic = topic_name("hidden")
    subscribe_all(tabs, topic)
    (leader,) = tabs.leaders()
    tabs.pages[leader].evaluate(
        """() => {
            Object.defineProperty(document, "visibilityState", {
                configurable: true, get: () => "hidden",
            });
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    assert publish_range(browser_server, topic, 3) == [1, 2, 3]
    tabs.wait_all("(t) => T.seqs[t].length >= 3", topic)
    assert tabs.seqs(topic) == [[1, 2, 3]] * 2
