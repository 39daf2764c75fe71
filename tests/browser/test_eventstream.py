"""rtdelivery.contrib.eventstream (more in tests/contrib/eventstream): Chromium running
django-eventstream's own ReconnectingEventSource (served from its static files) against
the bridge: events from send_event arrive; the server is killed,
events are sent meanwhile from another process, and after the restart the browser
resumes by its last event id and gets exactly the missed events, no duplicates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import uuid4

import pytest

from tests.browser.conftest import DaphneServer
from tests.conftest import delete_prefixed_keys, find_free_port
from tests.contrib.eventstream.esclient import send_event_in_process
from tests.e2e.conftest import server_env

SETTINGS = {"DJANGO_SETTINGS_MODULE": "tests.contrib.eventstream.settings_es"}


@pytest.fixture
def es_server(redis_url: str, artifacts: Path) -> Iterator[DaphneServer]:
    prefix = f"rtdesbrowser:{uuid4().hex[:12]}:"
    env = server_env(redis_url, prefix, SETTINGS)
    log_path = artifacts / "daphne-eventstream.log"
    log_path.write_bytes(b"")
    server = DaphneServer(find_free_port(), env, log_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        delete_prefixed_keys(redis_url, prefix)


def received(page: Any, n: int) -> list[Any]:
    page.wait_for_function(f"window.received.length >= {n}", timeout=30_000)
    result: list[Any] = page.evaluate("window.received")
    return result


def test_reconnecting_event_source_resumes_across_a_restart(
    browser: Any,
    es_server: DaphneServer,
) -> None:
    channel = f"browser:{uuid4().hex[:8]}"
    context = browser.new_context()
    context.set_default_timeout(30_000)
    try:
        page = context.new_page()
        page.goto(f"{es_server.base_url}/es/page?channel={quote(channel)}")
        page.wait_for_function("window.opens === 1")
        send_event_in_process(es_server.env, *[(channel, "message", {"n": n}) for n in (1, 2, 3)])
        before = received(page, 3)
        assert [data["n"] for _, data in before] == [1, 2, 3]
        assert before[-1][0].startswith(f"{quote(channel)}:3,*:")

        es_server.kill()  # a crash: no goodbye
        send_event_in_process(es_server.env, *[(channel, "message", {"n": n}) for n in (4, 5)])
        es_server.start()
        after = received(page, 5)
        # Live again; a duplicate of anything before would have come before these.
        send_event_in_process(es_server.env, *[(channel, "message", {"n": n}) for n in (6, 7)])
        page.wait_for_function("window.received.some(([, data]) => data.n === 7)")
        final = page.evaluate("window.received")
        assert [data["n"] for _, data in final] == [1, 2, 3, 4, 5, 6, 7]
        assert [event_id.split(",")[0] for event_id, _ in final] == [
            f"{quote(channel)}:{n}" for n in range(1, 8)
        ]
        assert page.evaluate("window.opens") >= 2
        assert page.evaluate("window.resets") == []
        assert after[:3] == before
    finally:
        context.close()
