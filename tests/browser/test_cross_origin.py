"""A single-page app on another origin uses rtdelivery with a connection token, in Chromium.

The SPA is a page served by a tiny ``http.server`` on its own loopback port; rtdelivery is
a Daphne server on another (its ``ALLOWED_ORIGINS`` lists the SPA's origin). The page loads
rtdelivery.js from the rtdelivery server and talks to it cross-origin on each transport,
pinned, with the client's ``getToken`` option: HTTP requests carry ``Authorization:
Bearer <token>``, so every one of them, the fast path's ``longpoll`` and ``sse`` included, is
preceded by a CORS preflight; the WebSocket carries ``?access_token=`` and passes the
Origin check from the same list. The topic is private (``user.<pk>``: its owner only), so
events arrive only because the token made the client that user.
"""

from __future__ import annotations

import http.server
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.browser.conftest import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    DaphneServer,
    manage,
    server_env,
)
from tests.conftest import delete_prefixed_keys, find_free_port

TRANSPORTS = ["ws", "sse", "longpoll", "poll"]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>SPA on another origin</title></head>
<body>
<pre id="log"></pre>
<script src="RT/static/rtdelivery/rtdelivery.js"></script>
<script>
  "use strict";
  window.SPA = {
    log: [],
    events: [],
    start(transport, token, topic) {
      const client = new RTDelivery.Client({
        url: "RT/rt/",
        wsUrl: "WS/rt/ws",
        transports: [transport],
        getToken: async () => token,
        pollInterval: 200,
        longpollTimeout: 5,
      });
      ["open", "subscribed", "error", "disconnected"].forEach((name) => {
        client.on(name, (data) => {
          const plain = data instanceof Error ? { message: data.message, code: data.code } : data;
          SPA.log.push({ name: name, data: plain });
          document.getElementById("log").textContent = JSON.stringify(SPA.log, null, 1);
        });
      });
      client.subscribe(topic, (event) => SPA.events.push(event));
      SPA.client = client;
    },
  };
</script>
</body></html>
"""


class SPAServer:
    """``http.server`` answering every GET with the SPA's page (its own origin)."""

    def __init__(self, port: int, rt_base: str) -> None:
        page = (
            PAGE.replace("RT/", rt_base + "/").replace(
                "WS/", rt_base.replace("http", "ws", 1) + "/"
            )
        ).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{port}/"

    def __enter__(self) -> SPAServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture(scope="module")
def cross_origin(redis_url: str, artifacts: Path) -> Iterator[tuple[DaphneServer, SPAServer, str]]:
    """(rtdelivery server, SPA server, the superuser's pk) with the SPA's origin listed."""
    port, spa_port = find_free_port(), find_free_port()
    prefix = f"rtdbrowser:{uuid4().hex[:12]}:"
    with tempfile.TemporaryDirectory(prefix="rtd-cors-db-") as tmp:
        env = server_env(
            redis_url,
            port,
            prefix,
            RTD_BROWSER_DB=str(Path(tmp) / "cors.sqlite3"),
            RTD_BROWSER_ALLOWED_ORIGINS=f"http://127.0.0.1:{port},http://127.0.0.1:{spa_port}",
            DEMO_SIMULATOR="0",
            DJANGO_SUPERUSER_USERNAME=ADMIN_USERNAME,
            DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD,
            DJANGO_SUPERUSER_EMAIL="admin@example.com",
        )
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "createsuperuser", "--noinput")
        pk = manage(
            env,
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model;"
            f"print(get_user_model().objects.get(username={ADMIN_USERNAME!r}).pk)",
        ).splitlines()[-1]  # after what Django's shell says about its automatic imports
        log_path = artifacts / "daphne-cross-origin.log"
        log_path.write_bytes(b"")
        server = DaphneServer(port, env, log_path)
        server.start()
        try:
            with SPAServer(spa_port, server.base_url) as spa:
                yield server, spa, pk
        finally:
            server.stop()
            delete_prefixed_keys(redis_url, prefix)


def mint_token(server: DaphneServer) -> str:
    """A connection token of the superuser, signed with the server's SECRET_KEY."""
    return manage(
        server.env,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model;"
        "from rtdelivery.tokens import connection_token;"
        f"print(connection_token(get_user_model().objects.get(username={ADMIN_USERNAME!r}),"
        " ttl=600))",
    ).splitlines()[-1]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_spa_on_another_origin_receives_with_a_token(
    browser: Any, cross_origin: tuple[DaphneServer, SPAServer, str], transport: str
) -> None:
    server, spa, pk = cross_origin
    token = mint_token(server)
    topic = f"user.{pk}"
    context = browser.new_context()
    context.set_default_timeout(15_000)
    page = context.new_page()
    failures: list[str] = []
    page.on("requestfailed", lambda r: failures.append(f"{r.method} {r.url}: {r.failure}"))
    page.on("console", lambda m: failures.append(m.text) if m.type == "error" else None)
    try:
        page.goto(spa.url)
        page.wait_for_function("() => window.SPA && window.RTDelivery")
        assert page.evaluate("() => location.origin") != server.base_url
        page.evaluate(
            "([t, token, topic]) => SPA.start(t, token, topic)", [transport, token, topic]
        )
        try:
            page.wait_for_function(
                "(topic) => SPA.log.some((e) => e.name === 'subscribed' && e.data.topic === topic)",
                arg=topic,
            )
        except Exception as exc:
            raise AssertionError(
                f"not subscribed: {page.evaluate('() => SPA.log')} {failures}"
            ) from exc
        sent = server.publish(topic, {"hello": transport})
        page.wait_for_function("() => SPA.events.length >= 1")
        events = page.evaluate("() => SPA.events")
        assert [e["seq"] for e in events] == [sent["seq"]]
        assert events[0]["data"] == {"hello": transport}
        assert page.evaluate("() => SPA.client.transport") == transport
        errors = page.evaluate("() => SPA.log.filter((e) => e.name === 'error')")
        assert errors == [], (errors, failures)
    finally:
        page.screenshot(path=str(Path(server.log_path).parent / f"cross_origin_{transport}.png"))
        context.close()


def test_spa_without_a_token_is_refused_the_private_topic(
    browser: Any, cross_origin: tuple[DaphneServer, SPAServer, str]
) -> None:
    """The cross-origin answers are readable (CORS), so the page learns why: 403."""
    server, spa, pk = cross_origin
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(spa.url)
        page.wait_for_function("() => window.SPA && window.RTDelivery")
        status = page.evaluate(
            "async (url) => (await fetch(url)).status",
            f"{server.base_url}/rt/poll?topic=user.{pk}",
        )
        assert status == 403
        # The same page from an origin that is not listed cannot read the answers at all.
        page.goto(spa.url.replace("127.0.0.1", "localhost"))
        page.wait_for_function("() => window.SPA && window.RTDelivery")
        blocked = page.evaluate(
            """async (url) => {
                try { await fetch(url); return "read"; } catch (e) { return "blocked"; }
            }""",
            f"{server.base_url}/rt/poll?topic=feed",
        )
        assert blocked == "blocked"
    finally:
        context.close()
