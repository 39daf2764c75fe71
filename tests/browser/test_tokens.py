"""rtdelivery.js with getToken() in Chromium: a connection token expires mid-stream, the
client fetches a fresh one and resumes from its cursor, losing nothing (WebSocket and SSE).

The page has no session (a fresh browser context): only the token makes it the demo
server's admin, the owner of the private topic ``user.<pk>``. Tokens are minted with the
server's own settings (``manage.py shell``) and handed to the page's getToken() one by one.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import DaphneServer, manage

#: Lifetime of the first token of each test (seconds): long enough to subscribe and receive.
SHORT_TTL = 3

MINT = """
import json
from django.contrib.auth import get_user_model
from rtdelivery.tokens import connection_token
user = get_user_model().objects.get(username="admin")
print(json.dumps({"pk": user.pk, "tokens": [
    connection_token(user, ttl=ttl) for ttl in %s
]}))
"""


def mint(server: DaphneServer, ttls: list[int]) -> tuple[int, list[str]]:
    out = manage(server.env, "shell", "-c", MINT % json.dumps(ttls))
    data = json.loads(out.strip().splitlines()[-1])
    return int(data["pk"]), list(data["tokens"])


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_get_token_refreshes_an_expired_token_and_resumes_with_no_loss(
    browser: Any, demo_server: DaphneServer, transport: str
) -> None:
    pk, tokens = mint(demo_server, [SHORT_TTL, 600])
    topic = f"user.{pk}"
    context = browser.new_context()
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        page.goto(f"{demo_server.base_url}/client-harness/")
        page.wait_for_function("() => window.RTDelivery")
        page.evaluate(
            """([transport, topic, tokens]) => {
              window.T = { tokens: tokens, calls: 0, got: [], log: [] };
              const client = new RTDelivery.Client({
                transports: [transport],
                backoff: { base: 100, max: 1000 },
                getToken: async () => { T.calls += 1; return T.tokens.shift(); },
              });
              client.on("disconnected", (d) => T.log.push("disconnected:" + d.reason));
              client.on("ended", (d) => T.log.push("ended:" + d.reason));
              client.on("open", () => T.log.push("open"));
              client.subscribe(topic, (e) => {
                if (e.data.run === transport) T.got.push(e.data.n);
              });
              window.client = client;
            }""",
            [transport, topic, tokens],
        )
        page.wait_for_function("() => T.log.includes('open')")
        for n in range(2):
            demo_server.publish(topic, {"n": n, "run": transport})
        page.wait_for_function("() => T.got.length >= 2")
        # The server ends the connection at the token's expiry; published meanwhile: kept.
        page.wait_for_function("() => T.calls >= 2", timeout=(SHORT_TTL + 15) * 1000)
        for n in range(2, 5):
            demo_server.publish(topic, {"n": n, "run": transport})
        page.wait_for_function("() => T.got.length >= 5")
        got = page.evaluate("() => T.got")
        log = page.evaluate("() => T.log")
        assert got == [0, 1, 2, 3, 4], (got, log)
        assert "disconnected:token_expired" in log, log
        assert not any(entry.startswith("ended") for entry in log), log
        assert log.count("open") == 2, log
    finally:
        context.close()


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_disconnect_ends_access_and_the_client_does_not_reconnect_by_itself(
    browser: Any, demo_server: DaphneServer, transport: str
) -> None:
    pk, tokens = mint(demo_server, [600, 600])
    topic = f"user.{pk}"
    context = browser.new_context()
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        page.goto(f"{demo_server.base_url}/client-harness/")
        page.wait_for_function("() => window.RTDelivery")
        page.evaluate(
            """([transport, topic, tokens]) => {
              window.T = { tokens: tokens, calls: 0, log: [] };
              const client = new RTDelivery.Client({
                transports: [transport],
                backoff: { base: 100, max: 1000 },
                getToken: async () => { T.calls += 1; return T.tokens.shift(); },
              });
              client.on("ended", (d) => T.log.push("ended:" + d.reason));
              client.on("open", () => T.log.push("open"));
              client.subscribe(topic, () => {});
              window.client = client;
            }""",
            [transport, topic, tokens],
        )
        page.wait_for_function("() => T.log.includes('open')")
        # From another process (manage.py shell), through the backplane.
        manage(
            demo_server.env,
            "shell",
            "-c",
            f"import rtdelivery; rtdelivery.disconnect({pk}, 'banned')",
        )
        page.wait_for_function("() => T.log.includes('ended:banned')")
        # Stopped: no connection, no reconnect scheduled, no new token asked for.
        state = page.evaluate(
            "() => [client.state, client._conn === null, client._timer === null, T.calls]"
        )
        assert state == ["idle", True, True, 1], state
        # connect() starts again (e.g. after a new login), with a fresh token.
        page.evaluate("() => client.connect()")
        page.wait_for_function("() => T.log.filter((e) => e === 'open').length === 2")
        assert page.evaluate("() => T.calls") == 2
    finally:
        context.close()
