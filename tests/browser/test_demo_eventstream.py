"""The demo's django-eventstream page in Chromium (issue 12, item 4): django-eventstream's
own ReconnectingEventSource (from its static files) on a bridge URL and rtdelivery's client
on the channel's topic, side by side; every send_event() reaches both panes, once each, in
the same order. Waits are event-driven (``page.wait_for_function``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import ARTIFACTS, DaphneServer

WAIT = 20_000


@pytest.fixture
def es_page(browser: Any, demo_server: DaphneServer) -> Iterator[Any]:
    context = browser.new_context(base_url=demo_server.base_url)
    context.set_default_timeout(WAIT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert errors == []


@pytest.mark.parametrize("transport", [None, "longpoll"])
def test_both_clients_receive_the_same_events(es_page: Any, transport: str | None) -> None:
    page = es_page
    page.goto("/eventstream/" + (f"?transport={transport}" if transport else ""))
    # django-eventstream's client is its own script, served from its static files.
    assert page.evaluate("typeof ReconnectingEventSource") == "function"
    button = page.locator("#es-send-button")
    expect(button).to_be_enabled()  # both clients connected
    expect(page.locator("#es-state")).to_have_text("open")
    expect(page.locator("#rt-state")).to_have_text("live")
    for n in range(1, 4):
        button.click()
        page.wait_for_function(
            f"window.esDemo.es.length >= {n} && window.esDemo.rt.length >= {n}", timeout=WAIT
        )
        expect(button).to_be_enabled()
    es, rt = page.evaluate("[window.esDemo.es, window.esDemo.rt]")
    assert len(es) == 3
    assert es == rt  # the same events, once each, in the same order
    expect(page.locator("#es-pane li")).to_have_count(3)
    expect(page.locator("#rt-pane li")).to_have_count(3)
    page.screenshot(
        path=str(ARTIFACTS / f"demo-eventstream-{transport or 'default'}.png"), full_page=True
    )
