"""The demo as visitors use it, in Chromium on a desktop window and on a phone (390 px).

Every page fits a phone's width (no sideways scrolling, a 250-character word included) with a
one-row top bar; the chat loses nothing typed when the connection drops (a message shows as
pending, then sent, stored once), says so in an outage banner with Send paused, and offers
Retry when the server refuses a message; feed edits arrive live; an announcement reaches a
visitor who comes later, until it expires or is dismissed; sign-in and sign-up are styled;
the favicon is served. Screenshots: test-artifacts/visit-*.png.

Waits are event-driven (Playwright's ``expect``, ``wait_for_function``, ``expect_response``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest
from playwright.sync_api import expect

from .conftest import ARTIFACTS, DaphneServer, manage
from .test_demo import WAIT, admin, admin_add, create_room, guest_login, send, wait_live

__all__ = ["admin"]  # the module-scoped admin page fixture, shared with test_demo.py

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
LONG_WORD = "W" * 250


@pytest.fixture(autouse=True)
def expect_timeout() -> Iterator[None]:
    """``expect`` waits as long as the pages' actions (polling answers take seconds)."""
    expect.set_options(timeout=WAIT)
    try:
        yield
    finally:
        expect.set_options(timeout=5_000)  # Playwright's default


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"visit-{name}.png"), full_page=True)


@pytest.fixture
def open_page(browser: Any, demo_server: DaphneServer) -> Iterator[Callable[..., Any]]:
    """Pages, each in a fresh context (own cookies); no uncaught page errors."""
    contexts: list[Any] = []
    errors: list[str] = []

    def new(viewport: dict[str, int] | None = None) -> Any:
        context = browser.new_context(base_url=demo_server.base_url, viewport=viewport or DESKTOP)
        context.set_default_timeout(WAIT)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
        return page

    try:
        yield new
    finally:
        for context in contexts:
            context.close()
    assert errors == []


def fits(page: Any) -> None:
    """No sideways scroll, and the top bar is one row."""
    width = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
    assert width[0] <= width[1], f"{page.url}: {width[0]} px wide in a {width[1]} px window"
    rows = page.evaluate(
        """() => {
            const bar = document.querySelector('.topbar').getBoundingClientRect();
            const items = [...document.querySelectorAll(
                '.topbar .brand, .topbar nav a, .topbar .session > *')]
                .filter((el) => el.getClientRects().length)
                .map((el) => el.getBoundingClientRect());
            const sorted = [...items].sort((a, b) => a.left - b.left);
            const overlaps = sorted.slice(1).filter((r, i) => r.left < sorted[i].right - 0.5);
            return {height: bar.height, overlaps: overlaps.length,
                    right: Math.max(...items.map((r) => r.right)), width: bar.width,
                    tops: [...new Set(items.map((r) => Math.round(r.top + r.height / 2)))]};
        }"""
    )
    assert rows["height"] <= 60, f"{page.url}: top bar {rows}"
    assert rows["right"] <= rows["width"], f"{page.url}: top bar {rows}"
    assert rows["overlaps"] == 0, f"{page.url}: top bar {rows}"
    # Centred in one row: every item's middle within a few pixels of the others'.
    assert max(rows["tops"]) - min(rows["tops"]) <= 4, f"{page.url}: top bar {rows}"


def history_texts(page: Any, topic: str) -> list[str]:
    response = page.request.get(f"/rt/history?topic={topic}&limit=200")
    assert response.ok, response.text()
    return [event["data"]["text"] for event in response.json()["events"]]


def stored_count(server: DaphneServer, text: str) -> int:
    code = (
        "from demo_site.demo.models import Message;"
        f"print(Message.objects.filter(text={text!r}).count())"
    )
    return int(manage(server.env, "shell", "-c", code).split()[-1])


# -- layout ------------------------------------------------------------------------------


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_every_page_fits(
    open_page: Callable[..., Any], admin: Any, viewport: dict[str, int]
) -> None:
    tag = "phone" if viewport is PHONE else "desktop"
    # A feed item of long words too (a title of 120 characters, the longest there is).
    marker = uuid4().hex[:8]
    admin_add(admin, "feeditem", {"title": marker + "T" * 112, "body": LONG_WORD})
    page = open_page(viewport)
    for path, name in [("/", "index"), ("/login/", "login"), ("/signup/", "signup")]:
        page.goto(path)
        expect(page.locator("main h1")).to_be_visible()
        fits(page)
        shot(page, f"{name}-{tag}")
    guest_login(page)
    room_name = uuid4().hex[:8] + "R" * 72  # the longest room name, one word
    slug = create_room(page, room_name)
    # A 250-character word, and an ordinary message after it.
    wait_live(page, "ws")
    send(page, LONG_WORD)
    send(page, "an ordinary message after a very long word")
    expect(page.locator("#messages li:not(.pending) .text")).to_have_count(2)
    fits(page)
    box = page.locator("#messages li .text").first.bounding_box()
    assert box["x"] + box["width"] <= viewport["width"]
    shot(page, f"room-{tag}")
    page.goto("/chat/")
    expect(page.locator(".rooms a", has_text=room_name)).to_have_count(1)
    fits(page)
    shot(page, f"rooms-{tag}")
    for path, name in [("/feed/", "feed"), ("/dashboard/", "dashboard")]:
        page.goto(path)
        wait_live(page, "sse" if name == "feed" else "ws")
        if name == "feed":
            expect(page.locator("#feed li h3", has_text=marker)).to_have_count(1)
        fits(page)
        shot(page, f"{name}-{tag}")
    # Back links: the room leads to the room list, the room list home.
    page.goto(f"/chat/{slug}/")
    page.click("a.back")
    expect(page).to_have_url(re.compile(r"/chat/$"))
    page.click("a.back")
    expect(page).to_have_url(re.compile(r"/$"))


def test_sign_in_and_sign_up_are_styled_and_the_favicon_is_served(
    open_page: Callable[..., Any], demo_server: DaphneServer
) -> None:
    page = open_page(PHONE)
    for path in ("/login/", "/signup/"):
        page.goto(path)
        form = page.locator("form.auth-form")
        expect(form).to_be_visible()
        style = page.evaluate(
            """() => {
                const form = document.querySelector('form.auth-form');
                const input = form.querySelector('input[type=text]');
                const label = form.querySelector('label');
                const button = form.querySelector('button');
                const s = (el) => getComputedStyle(el);
                return {form: form.getBoundingClientRect().width,
                        input: input.getBoundingClientRect().width,
                        labelDisplay: s(label).display, labelWeight: s(label).fontWeight,
                        buttonBg: s(button).backgroundColor,
                        buttonWidth: button.getBoundingClientRect().width,
                        radius: s(input).borderTopLeftRadius};
            }"""
        )
        # Labels above full-width fields, a full-width accent button, rounded inputs.
        assert style["labelDisplay"] == "block", style
        assert int(style["labelWeight"]) >= 600, style
        assert abs(style["input"] - style["form"]) < 1, style
        assert abs(style["buttonWidth"] - style["form"]) < 1, style
        assert style["buttonBg"] == "rgb(47, 111, 237)", style
        assert style["radius"] != "0px", style
    # A wrong password: the error is shown in the styled form.
    page.goto("/login/")
    page.fill("#id_username", "nobody")
    page.fill("#id_password", "wrong")
    page.click("form.auth-form button")
    expect(page.locator(".auth-form .form-errors")).to_contain_text("correct username")
    shot(page, "login-error-phone")
    # Sign-up leads back to sign-in, and the other way.
    page.goto("/login/?next=/feed/")
    page.click("text=Sign up")
    expect(page).to_have_url(re.compile(r"/signup/\?next=/feed/$"))
    page.click("a.back")
    expect(page).to_have_url(re.compile(r"/login/\?next=/feed/$"))

    href = page.locator("link[rel=icon]").get_attribute("href")
    assert href == "/static/demo/favicon.svg"
    icon = page.request.get(href)
    assert icon.ok
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text().lstrip().startswith("<svg")
    legacy = httpx.get(f"{demo_server.base_url}/favicon.ico", follow_redirects=True)
    assert legacy.status_code == 200
    assert legacy.url.path == href


# -- chat: nothing typed is lost -----------------------------------------------------------


def enter_room(page: Any, slug: str, transport: str = "ws") -> None:
    page.goto(f"/chat/{slug}/" + ("" if transport == "ws" else f"?transport={transport}"))
    wait_live(page, transport)
    expect(page.locator("#send button")).to_be_enabled()


@pytest.mark.parametrize(
    ("outcome", "transport"),
    [("stored", "ws"), ("lost", "ws"), ("stored", "longpoll")],
    ids=["stored-ws", "lost-ws", "stored-longpoll"],
)
def test_chat_send_through_a_lost_connection_is_delivered_once(
    open_page: Callable[..., Any], demo_server: DaphneServer, outcome: str, transport: str
) -> None:
    """The connection drops while a message is being sent: the server stored it ("stored",
    the answer is lost) or never got it ("lost"). The page shows it pending, then sent after
    the reconnect, sent again with the same key: stored and shown exactly once."""
    alice, bob = open_page(PHONE), open_page()
    guest_login(alice)
    guest_login(bob)
    slug = create_room(alice, f"Outage {outcome} {transport} {uuid4().hex[:8]}")
    enter_room(alice, slug, transport)
    enter_room(bob, slug)
    context = alice.context
    sends: list[dict[str, Any]] = []

    def drop(route: Any) -> None:
        sends.append(json.loads(route.request.post_data))
        # The network goes first (the page's WebSocket too: no live event can confirm it).
        context.set_offline(True)
        if outcome == "stored":
            response = route.fetch()  # Playwright's own request: the server stores it
            assert response.status == 201, response.text()
        route.abort("internetdisconnected")

    alice.route(re.compile(r"/send$"), drop)
    text = f"written before the outage {uuid4().hex[:6]}"
    send(alice, text)
    mine = alice.locator("#messages li.mine", has_text=text)
    expect(mine).to_have_class(re.compile(r"\bpending\b"))
    expect(mine.locator(".status")).to_have_text("sending…")
    expect(alice.locator("#outage")).to_be_visible()
    expect(alice.locator("#outage")).to_contain_text("offline")
    expect(alice.locator("#send button")).to_be_disabled()
    # What is typed during the outage stays in the box (Enter does nothing).
    alice.fill("#text", "typed while offline")
    alice.press("#text", "Enter")
    expect(alice.locator("#text")).to_have_value("typed while offline")
    shot(alice, f"chat-pending-{outcome}-{transport}-phone")

    alice.unroute(re.compile(r"/send$"))
    retries: list[Any] = []
    if outcome == "lost":
        # Only the page's send can store it: it goes again after the reconnect.
        with alice.expect_response(re.compile(r"/send$")) as retried:
            context.set_offline(False)
        retries.append(retried.value)
        assert retried.value.status == 201
    else:
        # Sent again (same key) or, maybe first, confirmed by its event arriving with the
        # resumed subscription (then the page need not send it again).
        alice.on("response", lambda r: retries.append(r) if r.url.endswith("/send") else None)
        context.set_offline(False)
    expect(alice.locator("#outage")).to_be_hidden()
    expect(alice.locator("#send button")).to_be_enabled()
    expect(mine).not_to_have_class(re.compile(r"\bpending\b"))
    expect(mine).to_have_attribute("data-id", re.compile(r"^\d+$"))
    for response in list(retries):
        assert json.loads(response.request.post_data) == sends[0], "same text and key"
        if outcome == "stored":
            assert response.status == 200
            assert response.json()["duplicate"] is True
    for page in (alice, bob):
        expect(page.locator("#messages li .text", has_text=text)).to_have_count(1)
    assert history_texts(alice, f"chat.{slug}").count(text) == 1
    assert stored_count(demo_server, text) == 1
    expect(alice.locator("#text")).to_have_value("typed while offline")
    alice.press("#text", "Enter")
    for page in (alice, bob):
        expect(page.locator("#messages li:not(.pending) .text")).to_have_text(
            [text, "typed while offline"]
        )
    shot(alice, f"chat-sent-{outcome}-{transport}-phone")


def test_chat_refused_message_offers_retry_with_the_same_key(
    open_page: Callable[..., Any], demo_server: DaphneServer
) -> None:
    page = open_page()
    guest_login(page)
    slug = create_room(page, f"Retry {uuid4().hex[:8]}")
    enter_room(page, slug)
    keys: list[str] = []

    def refuse_once(route: Any) -> None:
        keys.append(json.loads(route.request.post_data)["key"])
        if len(keys) == 1:
            # As the server refuses a message (e.g. a rate limit or a policy): a JSON error.
            route.fulfill(
                status=400,
                json={"error": {"code": "bad_request", "message": "Refused for the test."}},
            )
        else:
            route.continue_()

    page.route(re.compile(r"/send$"), refuse_once)
    text = f"refused at first {uuid4().hex[:6]}"
    send(page, text)
    failed = page.locator("#messages li.failed", has_text=text)
    expect(failed.locator(".status")).to_have_text("Not sent: Refused for the test.")
    expect(failed.locator("button.retry")).to_be_visible()
    shot(page, "chat-failed")
    failed.locator("button.retry").click()
    sent = page.locator("#messages li[data-id]", has_text=text)
    expect(sent).to_have_count(1)
    expect(page.locator("#messages li.failed, #messages li.pending")).to_have_count(0)
    assert len(keys) == 2, keys
    assert keys[0] == keys[1], keys
    assert stored_count(demo_server, text) == 1
    # A reload shows it once (from history), and nothing is left waiting.
    page.reload()
    wait_live(page, "ws")
    expect(page.locator("#messages li .text", has_text=text)).to_have_count(1)
    expect(page.locator("#messages li.pending")).to_have_count(0)


def test_outage_banner_while_the_server_is_down(
    open_page: Callable[..., Any], demo_server: DaphneServer
) -> None:
    page = open_page(PHONE)
    guest_login(page)
    slug = create_room(page, f"Restart {uuid4().hex[:8]}")
    enter_room(page, slug)
    expect(page.locator("#outage")).to_be_hidden()
    demo_server.stop()
    try:
        expect(page.locator("#outage")).to_be_visible()
        expect(page.locator("#outage")).to_contain_text("Reconnecting")
        expect(page.locator("#conn-status")).to_have_attribute("data-state", "reconnecting")
        expect(page.locator("#send button")).to_be_disabled()
        page.fill("#text", "typed while the server was down")
        shot(page, "chat-outage-phone")
    finally:
        demo_server.start()
    expect(page.locator("#outage")).to_be_hidden(timeout=60_000)  # reconnect backoff
    expect(page.locator("#send button")).to_be_enabled()
    expect(page.locator("#conn-status")).to_have_attribute("data-state", "open")
    expect(page.locator("#text")).to_have_value("typed while the server was down")
    page.press("#text", "Enter")
    expect(page.locator("#messages li[data-id] .text")).to_have_text(
        ["typed while the server was down"]
    )


def test_a_typed_draft_and_a_waiting_message_survive_a_reload(
    open_page: Callable[..., Any],
) -> None:
    page = open_page()
    guest_login(page)
    slug = create_room(page, f"Reload {uuid4().hex[:8]}")
    enter_room(page, slug)
    # A message whose send never gets an answer, then a reload.
    page.route(re.compile(r"/send$"), lambda route: route.abort("connectionreset"))
    text = f"sent just before a reload {uuid4().hex[:6]}"
    send(page, text)
    expect(page.locator("#messages li.pending", has_text=text)).to_have_count(1)
    page.fill("#text", "a draft")
    page.unroute(re.compile(r"/send$"))
    page.reload()
    wait_live(page, "ws")
    expect(page.locator("#text")).to_have_value("a draft")
    expect(page.locator("#messages li[data-id] .text")).to_have_text([text])


# -- feed, announcements -----------------------------------------------------------------


def test_feed_edit_shows_live_and_after_reload(open_page: Callable[..., Any], admin: Any) -> None:
    page = open_page(PHONE)
    page.goto("/feed/")
    wait_live(page, "sse")
    title = f"Draft headline {uuid4().hex[:8]}"
    admin_add(admin, "feeditem", {"title": title, "body": "First version."})
    item = page.locator("#feed li", has_text=title)
    expect(item).to_have_count(1)
    item_id = item.get_attribute("data-id")

    edited = title.replace("Draft", "Final")
    admin.goto(f"/admin/demo/feeditem/{item_id}/change/")
    admin.fill("#id_title", edited)
    admin.fill("#id_body", "Second version.")
    admin.click("input[name=_save]")
    expect(admin.locator(".messagelist .success")).to_contain_text("was changed successfully")
    changed = page.locator(f"#feed li[data-id='{item_id}']")
    expect(changed.locator("h3")).to_have_text(edited)
    expect(changed).to_have_class(re.compile(r"\bedited\b"))
    expect(changed.locator(".edited-mark")).to_be_visible()
    expect(page.locator("#feed li", has_text=title)).to_have_count(0)
    shot(page, "feed-edited-phone")

    page.reload()
    wait_live(page, "sse")
    expect(page.locator(f"#feed li[data-id='{item_id}'] h3")).to_have_text(edited)
    expect(page.locator(f"#feed li[data-id='{item_id}'] p").first).to_have_text("Second version.")
    expect(page.locator(f"#feed li[data-id='{item_id}']")).to_have_count(1)


def admin_add_announcement(admin: Any, text: str, expires: datetime | None = None) -> str:
    admin.goto("/admin/demo/announcement/add/")
    admin.fill("#id_text", text)
    if expires is not None:
        admin.fill("#id_expires_0", expires.strftime("%Y-%m-%d"))
        admin.fill("#id_expires_1", expires.strftime("%H:%M:%S"))
    admin.click("input[name=_save]")
    expect(admin.locator(".messagelist .success")).to_contain_text("was added successfully")
    link = admin.locator("#result_list a", has_text=text).first.get_attribute("href")
    match = re.search(r"/(\d+)/change/", link or "")
    assert match, link
    return match.group(1)


def test_late_visitor_sees_an_announcement_until_dismissed(
    open_page: Callable[..., Any], admin: Any
) -> None:
    text = f"Maintenance on Sunday {uuid4().hex[:6]}"
    announcement = admin_add_announcement(admin, text)
    # The server's clock (UTC, as the demo's TIME_ZONE) says when.
    past = admin_add_announcement(
        admin, f"Already over {uuid4().hex[:6]}", datetime.now(UTC) - timedelta(minutes=1)
    )

    visitor = open_page(PHONE)  # arrives after both were published
    visitor.goto("/")
    banner = visitor.locator(f".announcement[data-id='{announcement}']")
    expect(banner.locator(".text")).to_have_text(text)
    expect(visitor.locator(f".announcement[data-id='{past}']")).to_have_count(0)
    fits(visitor)
    shot(visitor, "announcement-late-visitor-phone")
    visitor.goto("/feed/")
    expect(banner).to_be_visible()
    banner.locator("button.dismiss").click()
    expect(banner).to_have_count(0)
    visitor.reload()
    wait_live(visitor, "sse")
    expect(visitor.locator(".announcement", has_text=text)).to_have_count(0)

    # Another visitor still sees it; deleting it in the admin takes it off their page.
    other = open_page()
    other.goto("/feed/")
    wait_live(other, "sse")
    expect(other.locator(f".announcement[data-id='{announcement}']")).to_be_visible()
    admin.goto(f"/admin/demo/announcement/{announcement}/delete/")
    admin.click("input[type=submit]")
    expect(admin.locator(".messagelist .success")).to_contain_text("deleted successfully")
    expect(other.locator(f".announcement[data-id='{announcement}']")).to_have_count(0)


def test_an_announcement_goes_away_when_it_expires(
    open_page: Callable[..., Any], admin: Any
) -> None:
    page = open_page()
    page.goto("/feed/")
    wait_live(page, "sse")
    text = f"Short notice {uuid4().hex[:6]}"
    expires = datetime.now(UTC) + timedelta(seconds=12)
    announcement = admin_add_announcement(admin, text, expires)
    banner = page.locator(f".announcement[data-id='{announcement}']")
    expect(banner).to_be_visible()
    expect(banner).to_have_count(0, timeout=30_000)  # its expiry passes (in under 12 s)
    page.reload()
    wait_live(page, "sse")
    expect(page.locator(".announcement", has_text=text)).to_have_count(0)


def test_tabs_share_one_connection_where_the_client_can(
    browser: Any, demo_server: DaphneServer, admin: Any
) -> None:
    """Two tabs of the demo share one connection (the client's ``shared`` option: a leader
    tab and a follower), and both show a new feed item once; a page that pins a transport
    keeps a connection of its own."""
    context = browser.new_context(base_url=demo_server.base_url)
    context.set_default_timeout(WAIT)
    try:
        first, second = context.new_page(), context.new_page()
        first.goto("/feed/")
        wait_live(first, "sse")
        if not first.evaluate("() => 'tabId' in demoClient"):
            pytest.skip("this rtdelivery.js does not share connections between tabs yet")
        second.goto("/feed/")
        second.wait_for_function("() => demoClient.state === 'open'")
        roles = sorted(page.evaluate("() => demoClient.role") for page in (first, second))
        assert roles == ["follower", "leader"]
        title = f"Seen by both tabs {uuid4().hex[:8]}"
        admin_add(admin, "feeditem", {"title": title, "body": "One connection, two tabs."})
        for page in (first, second):
            expect(page.locator("#feed li h3", has_text=title)).to_have_count(1)
        shot(second, "feed-follower-tab")
        pinned = context.new_page()
        pinned.goto("/feed/?transport=longpoll")
        wait_live(pinned, "longpoll")
        assert pinned.evaluate("() => 'tabId' in demoClient") is False
    finally:
        context.close()
