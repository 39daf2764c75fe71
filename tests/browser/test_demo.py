"""The demo site in Chromium against a real Daphne + Redis server with the simulator on.

Chat (two users in two browser contexts: presence, messages exactly once, backlog), the live
feed (items added in the admin) and admin announcements (the dashboard has its own tests,
tests/browser/test_dashboard.py), each on the default transport and on the others pinned with
``?transport=``. Screenshots of every page go to test-artifacts/demo-*.png.

Waits are event-driven (Playwright's ``expect`` and ``page.wait_for_function``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import expect

from .conftest import ADMIN_PASSWORD, ADMIN_USERNAME, ARTIFACTS, DaphneServer

#: Upper bound of one wait (ms): short polling asks every 5 s by default in the demo.
WAIT = 20_000
#: Transports where subscribers join a topic's presence (a held connection to leave from).
STREAMING = {"ws", "sse"}


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"demo-{name}.png"), full_page=True)


def query(transport: str | None) -> str:
    return f"?transport={transport}" if transport else ""


@pytest.fixture
def new_page(browser: Any, demo_server: DaphneServer) -> Iterator[Callable[[], Any]]:
    """Opens pages, each in a fresh context (own cookies: one user each); no uncaught errors."""
    contexts: list[Any] = []
    errors: list[str] = []

    def open_page() -> Any:
        context = browser.new_context(base_url=demo_server.base_url)
        context.set_default_timeout(WAIT)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
        return page

    try:
        yield open_page
    finally:
        for context in contexts:
            context.close()
    assert errors == []


@pytest.fixture(scope="module")
def admin(browser: Any, demo_server: DaphneServer) -> Iterator[Any]:
    """A page signed in to the Django admin as the superuser."""
    context = browser.new_context(base_url=demo_server.base_url)
    context.set_default_timeout(WAIT)
    page = context.new_page()
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", ADMIN_USERNAME)
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/admin/$"))
    try:
        yield page
    finally:
        context.close()


def guest_login(page: Any) -> str:
    """Signs in with the login page's one-click guest button; returns the username."""
    page.goto("/login/?next=/chat/")
    page.click("#guest-login")
    expect(page).to_have_url(re.compile(r"/chat/$"))
    name: str = page.locator(".topbar .who").inner_text()
    assert name.startswith("guest-")
    return name


def create_room(page: Any, name: str) -> str:
    """Creates a room from the chat page's form; returns its slug."""
    page.goto("/chat/")
    page.fill("input[name=name]", name)
    page.click("form.row button")
    expect(page).to_have_url(re.compile(r"/chat/[a-z0-9-]+/$"))
    slug: str = page.locator(".chat").get_attribute("data-slug")
    return slug


def wait_live(page: Any, transport: str) -> None:
    """The page's client is open on `transport` (and the badge says so)."""
    try:
        page.wait_for_function(
            "(t) => window.demoClient && demoClient.state === 'open' && demoClient.transport === t",
            arg=transport,
            timeout=WAIT,
        )
    except PlaywrightTimeoutError:
        actual = page.evaluate(
            "() => window.demoClient && {state: demoClient.state, transport: demoClient.transport,"
            " transports: demoClient.options.transports}"
        )
        pytest.fail(f"{page.url}: expected the client open on {transport}, got {actual}")
    expect(page.locator("#conn-status")).to_have_attribute("data-state", "open", timeout=WAIT)
    expect(page.locator("#conn-status")).to_have_text(f"live · {transport}", timeout=WAIT)


def admin_add(admin: Any, model: str, fields: dict[str, str]) -> None:
    """Adds an object in the admin (its form, its Save button)."""
    admin.goto(f"/admin/demo/{model}/add/")
    for name, value in fields.items():
        admin.fill(f"#id_{name}", value)
    admin.click("input[name=_save]")
    expect(admin.locator(".messagelist .success")).to_contain_text("was added successfully")


def send(page: Any, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def expect_presence(page: Any, names: list[str]) -> None:
    page.wait_for_function(
        """(names) => JSON.stringify(
            [...document.querySelectorAll('#presence li')].map((li) => li.textContent).sort()
        ) === JSON.stringify(names)""",
        arg=sorted(names),
        timeout=WAIT,
    )
    expect(page.locator("#presence-count")).to_have_text(str(len(names)))


# -- chat ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "transport", [None, "sse", "longpoll", "poll"], ids=["default", "sse", "longpoll", "poll"]
)
def test_chat_two_users(new_page: Callable[[], Any], transport: str | None) -> None:
    expected = transport or "ws"  # the default: WebSocket first
    alice, bob = new_page(), new_page()
    alice_name, bob_name = guest_login(alice), guest_login(bob)
    slug = create_room(alice, f"Room {expected} {uuid4().hex[:8]}")
    room = f"/chat/{slug}/{query(transport)}"

    for page in (alice, bob):
        page.goto(room)
        wait_live(page, expected)
    # "Here now" lists everyone on every transport where the client keeps presence for the
    # page (watchPresence: polling clients are counted by the server too). An older client
    # only saw streaming subscribers (a held connection to leave from).
    everyone = alice.evaluate("() => typeof demoClient.watchPresence === 'function'")
    present = [alice_name, bob_name] if everyone or expected in STREAMING else []
    for page in (alice, bob):
        expect_presence(page, present)

    first = f"hello from {alice_name} {uuid4().hex[:6]}"
    second = f"hi {alice_name}, {bob_name} here {uuid4().hex[:6]}"
    send(alice, first)
    for page in (alice, bob):
        expect(page.locator("#messages li .text")).to_have_text([first], timeout=WAIT)
    send(bob, second)
    # The second message arriving after the first is the barrier: no late duplicate of it.
    for page in (alice, bob):
        expect(page.locator("#messages li .text")).to_have_text([first, second], timeout=WAIT)
        expect(page.locator("#messages li .author")).to_have_text([alice_name, bob_name])
    expect(alice.locator("#messages li.mine .text")).to_have_text([first])
    expect(bob.locator("#messages li.mine .text")).to_have_text([second])
    shot(alice, f"chat-room-{expected}-alice")
    shot(bob, f"chat-room-{expected}-bob")

    # A fresh load: the backlog from history, then live messages after it, each once.
    bob.reload()
    wait_live(bob, expected)
    expect(bob.locator("#messages li .text")).to_have_text([first, second], timeout=WAIT)
    third = f"welcome back {bob_name} {uuid4().hex[:6]}"
    send(alice, third)
    for page in (alice, bob):
        expect(page.locator("#messages li .text")).to_have_text(
            [first, second, third], timeout=WAIT
        )
    # The reloaded page's old connection left, its new one joined.
    for page in (alice, bob):
        expect_presence(page, present)
    stats = bob.evaluate("() => demoClient.stats")
    assert stats["resets"] == 0
    shot(bob, f"chat-room-{expected}-bob-reloaded")


# -- feed ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "transport", [None, "ws", "longpoll", "poll"], ids=["default", "ws", "longpoll", "poll"]
)
def test_feed_updates_live(new_page: Callable[[], Any], admin: Any, transport: str | None) -> None:
    expected = transport or "sse"  # the feed page prefers SSE
    page = new_page()  # anonymous: anyone may watch the feed
    page.goto(f"/feed/{query(transport)}")
    wait_live(page, expected)
    page.evaluate("() => { window.notReloaded = true; }")

    title = f"Feed item over {expected} {uuid4().hex[:8]}"
    admin_add(admin, "feeditem", {"title": title, "body": "Added in the admin by a test."})
    item = page.locator("#feed li.new h3").filter(has_text=title)
    expect(item).to_have_count(1, timeout=WAIT)
    expect(page.locator("#feed li").first.locator("h3")).to_have_text(title)
    assert page.evaluate("() => window.notReloaded") is True
    shot(page, f"feed-{expected}")

    # Reloaded, the item comes from history (not marked new), once.
    page.reload()
    wait_live(page, expected)
    expect(page.locator("#feed li h3").filter(has_text=title)).to_have_count(1)
    expect(page.locator("#feed li.new")).to_have_count(0)


# -- announcements, pages ------------------------------------------------------------------


def test_admin_announcement_reaches_open_pages(new_page: Callable[[], Any], admin: Any) -> None:
    feed, home = new_page(), new_page()
    feed.goto("/feed/")
    home.goto("/?transport=longpoll")
    wait_live(feed, "sse")
    wait_live(home, "longpoll")
    text = f"Maintenance tonight {uuid4().hex[:6]}"
    for page in (feed, home):
        expect(page.locator(".announcement", has_text=text)).to_have_count(0)

    admin_add(admin, "announcement", {"text": text})
    for page in (feed, home):
        banner = page.locator(".announcement", has_text=text)
        expect(banner).to_be_visible(timeout=WAIT)
        expect(banner.locator(".text")).to_have_text(text)
    shot(feed, "feed-announcement")
    shot(admin, "admin-announcements")


def test_pages_render(new_page: Callable[[], Any], admin: Any) -> None:
    page = new_page()
    page.goto("/")
    expect(page.locator(".cards .card")).to_have_count(4)
    shot(page, "index")
    page.goto("/login/")
    expect(page.locator("#guest-login")).to_be_visible()
    shot(page, "login")
    # The top bar's "Try as guest" signs in and comes back to the page.
    page.goto("/feed/")
    page.click(".topbar button:has-text('Try as guest')")
    expect(page).to_have_url(re.compile(r"/feed/$"))
    expect(page.locator(".topbar .who")).to_have_text(re.compile(r"^guest-"))
    expect(page.locator("#notifications")).to_have_count(1)
    admin.goto("/admin/")
    expect(admin.locator("#content")).to_contain_text("Feed items")
    shot(admin, "admin")
    admin.goto("/admin/demo/feeditem/")
    shot(admin, "admin-feed-items")
