"""The live operations page in Chromium, against the demo site on a real Daphne + Redis.

A staff user opens it from the admin's front page; a signed-in user who is not staff gets
the admin's login page; chats opened in other browser contexts show up on it within
seconds, by transport, with their topic's seq, retained history and presence matching what
the test did. Updates arrive because the page listens on the ``rtdelivery.ops`` topic.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

import pytest
from playwright.sync_api import expect

from .conftest import ADMIN_PASSWORD, ADMIN_USERNAME, ARTIFACTS, DaphneServer
from .test_demo import create_room, guest_login, send, wait_live

#: Upper bound of one wait (ms): processes report every OPS_INTERVAL (5 s by default).
WAIT = 20_000
PAGE = "/admin/rtdelivery/ops/"
#: The first test also starts the demo server (migrate, createsuperuser): minutes on a busy
#: machine, beyond the suite's default 120 s.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def new_page(browser: Any, demo_server: DaphneServer) -> Iterator[Callable[[], Any]]:
    """Pages in fresh contexts (one user each); no uncaught errors on any of them."""
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


def staff_login(page: Any) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", ADMIN_USERNAME)
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    expect(page).to_have_url(re.compile(r"/admin/$"))


def connections(ops: Any, transport: str) -> int:
    return int(ops.locator(f'[data-connections="{transport}"]').inner_text())


def expect_connections(ops: Any, transport: str, n: int) -> None:
    expect(ops.locator(f'[data-connections="{transport}"]')).to_have_text(str(n), timeout=WAIT)


def test_staff_see_the_live_page_and_others_get_the_login_page(
    new_page: Callable[[], Any],
) -> None:
    staff = new_page()
    staff_login(staff)
    # The admin's front page links to it.
    staff.click("text=Live operations")
    expect(staff).to_have_url(re.compile(re.escape(PAGE) + "$"))
    expect(staff.locator("h1")).to_have_text("Real-time operations")
    # Numbers arrive, and the feed is live on the ops topic.
    expect(staff.locator('[data-connections="ws"]')).to_have_text(re.compile(r"^\d+$"))
    expect(staff.locator("#rtops-feed")).to_have_text(re.compile(r"^live \("))
    expect(staff.locator("#rtops-processes tbody tr")).not_to_have_count(0)
    staff.screenshot(path=str(ARTIFACTS / "ops-page.png"), full_page=True)

    anonymous = new_page()
    anonymous.goto(PAGE)
    expect(anonymous).to_have_url(re.compile(r"/admin/login/\?next="))
    expect(anonymous.locator("#login-form")).to_be_visible()

    user = new_page()
    guest_login(user)  # signed in, not staff
    user.goto(PAGE)
    expect(user).to_have_url(re.compile(r"/admin/login/\?next="))
    expect(user.locator("#login-form")).to_be_visible()
    response = user.request.get(PAGE + "state.json", max_redirects=0)
    assert response.status == 302


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_chat_opened_elsewhere_shows_up_by_transport(
    new_page: Callable[[], Any], transport: str
) -> None:
    ops = new_page()
    staff_login(ops)
    ops.goto(PAGE)
    expect(ops.locator("#rtops-feed")).to_have_text(re.compile(r"^live \("))
    expect(ops.locator(f'[data-connections="{transport}"]')).to_have_text(re.compile(r"^\d+$"))
    before = connections(ops, transport)

    chat = new_page()
    name = guest_login(chat)
    slug = create_room(chat, f"Ops {transport} {uuid4().hex[:8]}")
    query = "" if transport == "ws" else f"?transport={transport}"
    chat.goto(f"/chat/{slug}/{query}")
    wait_live(chat, transport)

    # Within seconds: one more connection of that transport, the room's topic with one
    # subscriber and the guest present.
    expect_connections(ops, transport, before + 1)
    row = ops.locator(f'#rtops-topics tr[data-topic="chat.{slug}"]')
    expect(row.locator("td").nth(1)).to_have_text("1", timeout=WAIT)
    expect(ops.locator(f'[data-presence="chat.{slug}"]')).to_contain_text(name, timeout=WAIT)

    # Two messages: the topic's last seq and retained history say so.
    send(chat, f"one {uuid4().hex[:6]}")
    send(chat, f"two {uuid4().hex[:6]}")
    expect(row.locator("td").nth(2)).to_have_text("2", timeout=WAIT)
    expect(row.locator("td").nth(3)).to_have_text("2", timeout=WAIT)
    ops.screenshot(path=str(ARTIFACTS / f"ops-chat-{transport}.png"), full_page=True)

    # Closing the chat takes it off again.
    chat.close()
    expect_connections(ops, transport, before)


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_one_connection_of_a_user_is_disconnected_from_the_page(
    new_page: Callable[[], Any], transport: str
) -> None:
    """The page lists a signed-in user's connection (by transport); its Disconnect link
    asks for confirmation, then ends that connection only: the chat says it was ended."""
    ops = new_page()
    staff_login(ops)
    chat = new_page()
    name = guest_login(chat)
    slug = create_room(chat, f"Ops end {transport} {uuid4().hex[:8]}")
    query = "" if transport == "ws" else f"?transport={transport}"
    chat.goto(f"/chat/{slug}/{query}")
    wait_live(chat, transport)
    # The guest's pk, as the page lists users, from the admin's user list.
    users = ops.request.get(f"/admin/auth/user/?q={name}").text()
    (pk,) = set(re.findall(r"/admin/auth/user/(\d+)/change/", users))

    ops.goto(PAGE)
    expect(ops.locator("#rtops-feed")).to_have_text(re.compile(r"^live \("))
    row = ops.locator(f'#rtops-user-connections tr[data-user="{pk}"][data-transport="{transport}"]')
    expect(row).to_have_count(1, timeout=WAIT)
    connection = row.get_attribute("data-connection")
    row.locator("text=Disconnect…").click()
    expect(ops.locator(".rtops-confirm")).to_contain_text(
        f"End connection {connection}", timeout=WAIT
    )
    ops.click("#rtops-confirm")
    expect(ops).to_have_url(re.compile(re.escape(PAGE) + "$"))
    expect(ops.locator(".messagelist")).to_contain_text(f"end connection {connection}")

    # Ended with the access-ended close (not a drop): the client stays down.
    expect(chat.locator("#conn-status")).to_have_attribute("data-state", "ended", timeout=WAIT)
    expect(
        ops.locator(f'#rtops-user-connections tr[data-connection="{connection}"]')
    ).to_have_count(0, timeout=WAIT)
