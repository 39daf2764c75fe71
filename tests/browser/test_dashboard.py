"""The dashboard's figures, checked against what Chromium itself saw on the network.

The page runs four rtdelivery clients side by side (polling, long polling, SSE, WebSocket) on
the simulator's stream and counts what each costs. Here Chrome DevTools Protocol's Network
domain is the witness: every request the page sent (``requestWillBeSent``; the page marks its
measured requests with a ``#meter=<transport>-<n>`` fragment, never sent), the request heads
as sent (``requestWillBeSentExtraInfo``), response heads and bodies as received
(``responseReceivedExtraInfo``, ``dataReceived``, ``loadingFinished``) and every WebSocket
frame (``webSocketFrameSent`` / ``webSocketFrameReceived``). The page's request counts must be
exact, its byte counts within a small tolerance (it estimates request heads and chunked
framing, and says so), its empty responses exactly the answers that carried no event.

Real Daphne + Redis server with the simulator on (``demo_server``); no fixed sleeps: every
wait is for a condition. Screenshots: test-artifacts/dashboard-*.png.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from .conftest import ARTIFACTS, DaphneServer

TRANSPORTS = ("poll", "longpoll", "sse", "ws")
HTTP_TRANSPORTS = ("poll", "longpoll", "sse")
#: Upper bound of one wait (ms).
WAIT = 30_000


# -- the witness: Chromium's own view of the network -----------------------------------------


@dataclass
class Exchange:
    """One HTTP request of a measured client, as Chromium reports it."""

    transport: str
    marker: str  # the page's id of the request: "<transport>-<n>"
    url: str
    up: int | None = None  # request line + headers as sent
    head: int | None = None  # response status line + headers as received
    body: int = 0  # sum of dataReceived's encodedDataLength
    total: int | None = None  # loadingFinished's encodedDataLength (head + body)
    status: int | None = None
    done: bool = False
    failed: bool = False

    @property
    def down(self) -> int:
        if self.total is not None:
            return self.total
        return (self.head or 0) + self.body


@dataclass
class Socket:
    up: int = 0
    down: int = 0
    frames: int = 0
    closed: bool = False


@dataclass
class NetworkLog:
    """What the CDP Network domain reports for the page's measured requests and socket."""

    exchanges: dict[str, Exchange] = field(default_factory=dict)
    sockets: dict[str, Socket] = field(default_factory=dict)
    extra_up: dict[str, int] = field(default_factory=dict)
    extra_head: dict[str, int] = field(default_factory=dict)
    cdp: Any = None

    def attach(self, cdp: Any) -> None:
        self.cdp = cdp
        cdp.on("Network.requestWillBeSent", self._sent)
        cdp.on("Network.requestWillBeSentExtraInfo", self._sent_extra)
        cdp.on("Network.responseReceived", self._received)
        cdp.on("Network.responseReceivedExtraInfo", self._received_extra)
        cdp.on("Network.dataReceived", self._data)
        cdp.on("Network.loadingFinished", self._finished)
        cdp.on("Network.loadingFailed", self._failed)
        cdp.on("Network.webSocketCreated", self._ws_created)
        cdp.on("Network.webSocketWillSendHandshakeRequest", self._ws_handshake)
        cdp.on("Network.webSocketHandshakeResponseReceived", self._ws_answer)
        cdp.on("Network.webSocketFrameSent", lambda e: self._ws_frame(e, masked=True))
        cdp.on("Network.webSocketFrameReceived", lambda e: self._ws_frame(e, masked=False))
        cdp.on("Network.webSocketClosed", self._ws_closed)
        cdp.send("Network.enable")

    # HTTP
    def _sent(self, e: dict[str, Any]) -> None:
        fragment = e["request"].get("urlFragment") or ""
        if not fragment.startswith("#meter="):
            return
        marker = fragment[len("#meter=") :]
        exchange = Exchange(marker.rsplit("-", 1)[0], marker, e["request"]["url"])
        self.exchanges[e["requestId"]] = exchange
        # The ExtraInfo events may come first.
        exchange.up = self.extra_up.pop(e["requestId"], None)
        exchange.head = self.extra_head.pop(e["requestId"], None)

    def _sent_extra(self, e: dict[str, Any]) -> None:
        headers = e["headers"]
        self.extra_up[e["requestId"]] = sum(len(k) + len(str(v)) + 4 for k, v in headers.items())
        exchange = self.exchanges.get(e["requestId"])
        if exchange is not None:
            exchange.up = self.extra_up.pop(e["requestId"])
        # The request line is completed once the URL is known (see up_bytes()).

    def _received(self, e: dict[str, Any]) -> None:
        exchange = self.exchanges.get(e["requestId"])
        if exchange is not None:
            exchange.status = e["response"]["status"]

    def _received_extra(self, e: dict[str, Any]) -> None:
        size = len(e.get("headersText") or "")
        exchange = self.exchanges.get(e["requestId"])
        if exchange is None:
            self.extra_head[e["requestId"]] = size
        else:
            exchange.head = size

    def _data(self, e: dict[str, Any]) -> None:
        exchange = self.exchanges.get(e["requestId"])
        if exchange is not None:
            exchange.body += e.get("encodedDataLength", 0)

    def _finished(self, e: dict[str, Any]) -> None:
        exchange = self.exchanges.get(e["requestId"])
        if exchange is not None:
            exchange.total = int(e["encodedDataLength"])
            exchange.done = True

    def _failed(self, e: dict[str, Any]) -> None:
        exchange = self.exchanges.get(e["requestId"])
        if exchange is not None:
            exchange.done = exchange.failed = True

    # WebSocket
    def _ws_created(self, e: dict[str, Any]) -> None:
        if "meter=ws" in e["url"]:
            self.sockets[e["requestId"]] = Socket()

    def _ws_handshake(self, e: dict[str, Any]) -> None:
        socket = self.sockets.get(e["requestId"])
        if socket is not None:
            headers = e["request"]["headers"]
            socket.up += 2 + sum(len(k) + len(str(v)) + 4 for k, v in headers.items())
            socket.up += len("GET /rt/ws?meter=ws HTTP/1.1\r\n")

    def _ws_answer(self, e: dict[str, Any]) -> None:
        socket = self.sockets.get(e["requestId"])
        if socket is not None:
            socket.down += len(e["response"].get("headersText") or "")

    def _ws_frame(self, e: dict[str, Any], *, masked: bool) -> None:
        socket = self.sockets.get(e["requestId"])
        if socket is None:
            return
        frame = e["response"]
        data = frame["payloadData"]
        n = len(data.encode()) if frame["opcode"] == 1 else len(base64.b64decode(data))
        size = n + 2 + (0 if n < 126 else 2 if n < 65536 else 8) + (4 if masked else 0)
        socket.frames += 1
        if masked:
            socket.up += size
        else:
            socket.down += size

    def _ws_closed(self, e: dict[str, Any]) -> None:
        socket = self.sockets.get(e["requestId"])
        if socket is not None:
            socket.closed = True

    # Totals
    def of(self, transport: str) -> list[Exchange]:
        return [x for x in self.exchanges.values() if x.transport == transport]

    def up_bytes(self, exchange: Exchange) -> int:
        parts = urlsplit(exchange.url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        return len(f"GET {target} HTTP/1.1\r\n") + (exchange.up or 0) + 2

    def totals(self, transport: str) -> dict[str, int]:
        if transport == "ws":
            sockets = list(self.sockets.values())
            return {
                "requests": len(sockets),
                "down": sum(s.down for s in sockets),
                "up": sum(s.up for s in sockets),
                "frames": sum(s.frames for s in sockets),
            }
        exchanges = self.of(transport)
        return {
            "requests": len(exchanges),
            "down": sum(x.down for x in exchanges),
            "up": sum(self.up_bytes(x) for x in exchanges),
        }

    def settled(self) -> bool:
        return all(x.done for x in self.exchanges.values()) and all(
            s.closed for s in self.sockets.values()
        )

    def empty_answers(self, transports: tuple[str, ...]) -> int:
        """Poll/long-poll answers without an event: 304s, and 200s whose body has no events."""
        empty = 0
        for request_id, x in self.exchanges.items():
            if x.transport not in transports or x.failed or not x.done:
                continue
            if x.status == 304:
                empty += 1
            elif x.status == 200:
                body = self.cdp.send("Network.getResponseBody", {"requestId": request_id})
                if json.loads(body["body"]).get("events") == []:
                    empty += 1
        return empty


# -- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def open_dashboard(
    browser: Any, demo_server: DaphneServer
) -> Iterator[Callable[..., tuple[Any, NetworkLog]]]:
    """Opens /dashboard/ in a fresh context with a CDP network log; no uncaught page errors."""
    contexts: list[Any] = []
    errors: list[str] = []

    def open_page(**context_options: Any) -> tuple[Any, NetworkLog]:
        context = browser.new_context(base_url=demo_server.base_url, **context_options)
        context.set_default_timeout(WAIT)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
        log = NetworkLog()
        log.attach(context.new_cdp_session(page))
        page.goto("/dashboard/")
        return page, log

    try:
        yield open_page
    finally:
        for context in contexts:
            context.close()
    assert errors == []


def until(page: Any, condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Waits for `condition` (checked as CDP events arrive: Playwright delivers them while it
    waits); fails saying `what` was awaited."""
    deadline = time.monotonic() + timeout / 1000
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        page.wait_for_timeout(50)


def snapshot(page: Any) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate("() => dashboard.snapshot()")
    return result


def wait_figures(page: Any, condition: str, timeout: float = WAIT) -> None:
    """Waits for a JS condition on `s`, the page's snapshot."""
    page.wait_for_function(
        f"() => {{ const s = window.dashboard && dashboard.snapshot(); return s && ({condition}); }}",
        timeout=timeout,
    )


def set_rate(page: Any, rate: str) -> None:
    """Clicks a rate button; the POST is answered (the four streams leave room for it)."""
    with page.expect_response(lambda r: r.url.endswith("/dashboard/rate")) as answer:
        page.click(f".rates button[data-rate='{rate}']")
    assert answer.value.status == 200, answer.value.text()
    expect(page.locator(f".rates button[data-rate='{rate}']")).to_have_attribute(
        "aria-pressed", "true"
    )


def pause_and_settle(page: Any, log: NetworkLog) -> dict[str, Any]:
    """Stops the four clients; returns the page's final figures once both sides are done."""
    page.click("#pause")
    page.wait_for_function("() => dashboard.settled()", timeout=WAIT)
    until(page, log.settled, "Chromium to finish every measured request")
    return snapshot(page)


def table(page: Any) -> dict[str, dict[str, str]]:
    """The cost table as {transport: {column label: text}}."""
    page.evaluate("() => dashboard.render()")
    rows: dict[str, dict[str, str]] = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#costs tbody tr')].map(
            (tr) => [tr.dataset.transport, Object.fromEntries(
                [...tr.querySelectorAll('td')].map((td) => [td.dataset.label, td.textContent]))]))"""
    )
    return rows


def number(text: str) -> float:
    return float(text.replace(",", "").replace(" ms", ""))


def assert_close(what: str, page_value: int, network_value: int, tolerance: float) -> None:
    assert abs(page_value - network_value) <= tolerance, (
        f"{what}: the page says {page_value}, Chromium measured {network_value} "
        f"(difference {page_value - network_value}, tolerance {tolerance:.0f})"
    )


# -- tests --------------------------------------------------------------------------------


def test_four_transports_side_by_side_match_the_network(
    open_dashboard: Callable[..., tuple[Any, NetworkLog]],
) -> None:
    page, log = open_dashboard(viewport={"width": 1280, "height": 900})
    wait_figures(page, "Object.values(s).every((m) => m.state === 'open')")
    set_rate(page, "5")
    # Every transport delivers the same stream, side by side.
    wait_figures(page, "Object.values(s).every((m) => m.win.deliveries >= 15)")

    rows = table(page)
    assert set(rows) == set(TRANSPORTS)
    # The lesson, in the page's own figures at 5 events/s:
    # WebSocket and SSE send no request per event; long polling about one; polling batches.
    assert number(rows["ws"]["Requests /s"]) == 0, rows["ws"]
    assert number(rows["sse"]["Requests /s"]) == 0, rows["sse"]
    assert 0.5 <= number(rows["longpoll"]["Requests /event"]) <= 1.5, rows["longpoll"]
    assert number(rows["poll"]["Requests /event"]) < 0.5, rows["poll"]
    # Bytes per event, headers and framing included: WebSocket < SSE < long polling.
    down = {t: number(rows[t]["Bytes down /event"]) for t in TRANSPORTS}
    assert down["ws"] < down["sse"] < down["longpoll"], down
    # Polling waits for its next request: its median latency is far above the streams'.
    assert number(rows["poll"]["Latency p50"]) > 3 * number(rows["ws"]["Latency p50"]), rows
    # The latency chart: one labelled series per transport.
    legend = page.locator("#chart-latency .u-legend .u-series .u-label").all_inner_texts()
    assert legend[1:] == ["Polling", "Long polling", "SSE", "WebSocket"], legend
    page.screenshot(path=str(ARTIFACTS / "dashboard-side-by-side.png"), full_page=True)

    figures = pause_and_settle(page, log)
    # Request by request: every answer both the page and Chromium saw to its end.
    exchanges = {x.marker: x for x in log.exchanges.values()}
    records = page.evaluate("() => dashboard.records()")
    both = []
    for record in records:
        x = exchanges.get(record["id"])
        assert x is not None, f"Chromium never saw the page's request {record}"
        if record["complete"] and x.done and not x.failed:
            both.append(record["id"])
            # Response head and body: measured on both sides, to the byte.
            assert record["down"] == x.down, (record, x)
            # The request head: estimated by the page from its probe.
            assert abs(record["up"] - log.up_bytes(x)) <= 16, (record, log.up_bytes(x), x)
    assert len(both) >= 10, both
    for t in TRANSPORTS:
        mine, seen = figures[t]["all"], log.totals(t)
        # Every request the page counted is one Chromium sent, and the other way round.
        assert mine["requests"] == seen["requests"], (t, mine, seen)
        assert seen["requests"] >= 1, (t, seen)
        # In total, with the requests cut by the pause (an answer, a last chunk on the wire
        # that never reached the page) and the SSE stream's estimated chunk framing.
        cut = 400 * sum(1 for x in log.of(t) if x.marker not in both)
        assert_close(f"{t} bytes down", mine["down"], seen["down"], 0.03 * seen["down"] + cut)
        assert_close(f"{t} bytes up", mine["up"], seen["up"], 16 * seen["requests"])
    assert figures["ws"]["all"]["frames"] == log.totals("ws")["frames"]
    # Long polling asked about once per delivery; the SSE stream was one request.
    assert log.totals("sse")["requests"] == 1
    # Resource Timing confirmed the body of every completed poll/long-poll answer.
    for t in ("poll", "longpoll"):
        complete = sum(1 for x in log.of(t) if x.done and not x.failed)
        assert figures[t]["confirmed"] >= complete - 1, (t, figures[t], complete)
    set_rate(page, "1")


def test_quiet_stream_polling_answers_empty_websocket_sends_nothing(
    open_dashboard: Callable[..., tuple[Any, NetworkLog]],
) -> None:
    page, log = open_dashboard(viewport={"width": 1280, "height": 900})
    wait_figures(page, "Object.values(s).every((m) => m.state === 'open')")
    set_rate(page, "0")
    # Quiet: polling keeps asking and gets nothing back.
    wait_figures(page, "s.poll.win.empty >= 3", timeout=WAIT)
    figures = snapshot(page)
    for t in TRANSPORTS:
        assert figures[t]["win"]["deliveries"] == 0, (t, figures[t])
    assert figures["ws"]["win"]["empty"] == 0
    assert figures["ws"]["win"]["requests"] == 0
    assert figures["sse"]["win"]["empty"] == 0
    rows = table(page)
    assert number(rows["poll"]["Empty /s"]) > 0, rows["poll"]
    assert number(rows["ws"]["Empty /s"]) == 0, rows["ws"]
    assert rows["poll"]["Empty /event"] == "\N{EN DASH}", rows["poll"]  # no event to divide by
    page.screenshot(path=str(ARTIFACTS / "dashboard-quiet.png"), full_page=True)

    figures = pause_and_settle(page, log)
    # The page's empty responses are the answers Chromium received without an event (an
    # answer cut by the pause after it was read has no body left to check: counted apart).
    mine = figures["poll"]["all"]["empty"] + figures["longpoll"]["all"]["empty"]
    seen = log.empty_answers(("poll", "longpoll"))
    cut = sum(1 for t in ("poll", "longpoll") for x in log.of(t) if x.failed and x.status)
    assert seen <= mine <= seen + cut, (mine, seen, cut)
    assert seen >= 3
    for t in TRANSPORTS:
        assert figures[t]["all"]["requests"] == log.totals(t)["requests"], t
    set_rate(page, "1")


def test_rate_control_is_validated_and_csrf_protected(
    open_dashboard: Callable[..., tuple[Any, NetworkLog]], demo_server: DaphneServer
) -> None:
    page, _ = open_dashboard()
    api = page.context.request
    url = f"{demo_server.base_url}/dashboard/rate"
    answer = api.get(url)
    assert answer.status == 200
    assert answer.json()["rates"] == [0, 0.2, 1, 5, 20]
    before = answer.json()["rate"]
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    headers = {"Content-Type": "application/json", "X-CSRFToken": token}
    # No CSRF token: refused by Django's CSRF protection.
    refused = api.post(
        url, data=json.dumps({"rate": 5}), headers={"Content-Type": "application/json"}
    )
    assert refused.status == 403
    for body, status, code in [
        ({"rate": 3}, 400, "bad_rate"),
        ({"rate": "fast"}, 400, "bad_rate"),
        ({"rate": True}, 400, "bad_rate"),
        ({"speed": 5}, 400, "bad_request"),
        ("not json", 400, "bad_request"),
        ({"rate": 5, "pad": "x" * 300}, 413, "too_large"),
    ]:
        data = body if isinstance(body, str) else json.dumps(body)
        answer = api.post(url, data=data, headers=headers)
        assert answer.status == status, (body, answer.text())
        assert answer.json()["error"]["code"] == code, answer.text()
        assert "Expected" in answer.json()["error"]["message"]
    assert api.get(url).json()["rate"] == before  # unchanged by refused attempts
    assert api.fetch(url, method="PUT", headers=headers).status == 405
    ok = api.post(url, data=json.dumps({"rate": 0.2}), headers=headers)
    assert ok.status == 200, ok.text()
    assert ok.json()["rate"] == 0.2
    assert ok.json()["seq"] >= 1
    # Every open dashboard hears of it on the stream.
    expect(page.locator(".rates button[data-rate='0.2']")).to_have_attribute("aria-pressed", "true")
    assert api.post(url, data=json.dumps({"rate": 1}), headers=headers).status == 200


def test_phone_viewport_has_no_horizontal_scroll(
    open_dashboard: Callable[..., tuple[Any, NetworkLog]],
) -> None:
    page, _ = open_dashboard(viewport={"width": 390, "height": 844}, is_mobile=True)
    wait_figures(page, "Object.values(s).every((m) => m.win.deliveries >= 2)")
    page.evaluate("() => dashboard.render()")
    overflow = page.evaluate(
        "() => ({scroll: document.documentElement.scrollWidth, inner: innerWidth})"
    )
    assert overflow["scroll"] <= overflow["inner"], overflow
    # Each transport's figures are a card of labelled values.
    expect(page.locator("#costs thead")).to_be_hidden()
    expect(page.locator("#costs tbody tr")).to_have_count(4)
    page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)


def test_hidden_tab_frees_its_connections(
    open_dashboard: Callable[..., tuple[Any, NetworkLog]],
) -> None:
    """A hidden dashboard stops its four clients (a few hidden tabs would otherwise hold the
    browser's 6 HTTP/1.1 connections to the server) and resumes them when shown again."""
    page, log = open_dashboard()
    wait_figures(page, "Object.values(s).every((m) => m.state === 'open')")
    show = """(state) => {
        Object.defineProperty(document, 'visibilityState', {value: state, configurable: true});
        document.dispatchEvent(new Event('visibilitychange'));
    }"""
    page.evaluate(show, "hidden")
    wait_figures(page, "Object.values(s).every((m) => m.state === 'paused')")
    page.wait_for_function("() => dashboard.settled()")
    until(page, log.settled, "every measured request and the WebSocket to end")
    expect(page.locator("#paused-note")).to_be_visible()
    page.evaluate(show, "visible")
    wait_figures(page, "Object.values(s).every((m) => m.state === 'open')")
    expect(page.locator("#paused-note")).to_be_hidden()
