"""The metrics view's protection, the live page's views and actions (Django test client),
the ops topic's policy, and the counters in process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client, TestCase, override_settings

from demo_site.settings import RTDELIVERY as DEMO_RTDELIVERY
from rtdelivery import metrics
from rtdelivery.conf import validate
from rtdelivery.history import get_history
from rtdelivery.ops import OPS_TOPIC, reporter
from rtdelivery.policy import PUBLISH, SUBSCRIBE, allowed
from rtdelivery.publishing import publish
from rtdelivery.testing import capture_events

TOKEN = "ops-view-tests-metrics-token"
SETTINGS = {
    **DEMO_RTDELIVERY,
    "HISTORY_BACKEND": "memory",
    "REDIS_URL": None,
    "METRICS_TOKENS": [TOKEN],
}
PAGE = "/admin/rtdelivery/ops/"


@override_settings(RTDELIVERY=SETTINGS)
class MetricsViewTests(TestCase):
    def setUp(self) -> None:
        users = get_user_model()
        self.staff = users.objects.create_user("staff", password="pw", is_staff=True)
        self.user = users.objects.create_user("user", password="pw")

    def test_a_token_or_a_staff_session_may_scrape(self) -> None:
        response = self.client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        self.assertEqual(response.status_code, 200)
        self.assertTrue(response["Content-Type"].startswith("text/plain"))
        self.assertIn(b"rtdelivery_events_published_total", response.content)
        self.client.force_login(self.staff)
        self.assertEqual(self.client.get("/metrics").status_code, 200)

    def test_anyone_else_is_refused(self) -> None:
        response = self.client.get("/metrics")
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response["WWW-Authenticate"], 'Bearer realm="metrics"')
        wrong = self.client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
        self.assertEqual(wrong.status_code, 403)
        self.client.force_login(self.user)
        self.assertEqual(self.client.get("/metrics").status_code, 403)
        self.assertEqual(self.client.post("/metrics").status_code, 405)

    def test_values_move_as_events_are_published(self) -> None:
        before = metrics.value("events_published")
        publish("feed", {"n": 1})
        publish("feed", {"n": 2})
        response = self.client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        line = next(
            ln
            for ln in response.content.decode().splitlines()
            if ln.startswith("rtdelivery_events_published_total ")
        )
        self.assertEqual(float(line.split()[1]), before + 2)


@override_settings(RTDELIVERY=SETTINGS)
class OpsPageTests(TestCase):
    def setUp(self) -> None:
        users = get_user_model()
        # Staff who may act: the rtdelivery.manage_realtime permission.
        self.staff = users.objects.create_user("staff", password="pw", is_staff=True)
        self.staff.user_permissions.add(
            Permission.objects.get(content_type__app_label="rtdelivery", codename="manage_realtime")
        )
        self.user = users.objects.create_user("user", password="pw")
        reporter.reset()

    def test_staff_only(self) -> None:
        response = self.client.get(PAGE)
        self.assertEqual(response.status_code, 302)
        self.assertTrue(response["Location"].startswith("/admin/login/"))
        self.client.force_login(self.user)
        self.assertTrue(self.client.get(PAGE)["Location"].startswith("/admin/login/"))
        self.assertTrue(
            self.client.get(PAGE + "state.json")["Location"].startswith("/admin/login/")
        )
        self.client.force_login(self.staff)
        page = self.client.get(PAGE)
        self.assertEqual(page.status_code, 200)
        self.assertContains(page, 'data-topic="rtdelivery.ops"')
        self.assertContains(page, "rtdelivery.js")

    def test_the_admin_front_page_links_to_it(self) -> None:
        self.client.force_login(self.staff)
        index = self.client.get("/admin/")
        self.assertContains(index, f'href="{PAGE}"')
        self.assertContains(index, "Live operations")

    def test_state_lists_this_process_and_its_counters(self) -> None:
        self.client.force_login(self.staff)
        publish("feed", {"n": 1})
        state = self.client.get(PAGE + "state.json").json()
        self.assertEqual(len(state["processes"]), 1)
        self.assertEqual(state["processes"][0]["id"], reporter.PROCESS_ID)
        self.assertGreaterEqual(state["totals"]["events_published"], 1)
        self.assertEqual(set(state["connections"]), {"ws", "sse", "longpoll", "poll"})
        self.assertEqual(state["held_limit"], 20000)

    def test_announce_asks_for_confirmation_then_publishes(self) -> None:
        self.client.force_login(self.staff)
        url = PAGE + "announce/"
        confirm = self.client.get(url, {"topic": "announcements", "text": "Maintenance at 6"})
        self.assertContains(confirm, "Are you sure?")
        self.assertContains(confirm, "csrfmiddlewaretoken")
        with capture_events("announcements") as captured:
            # Without confirm: the confirmation page again, nothing published.
            self.client.post(url, {"topic": "announcements", "text": "Maintenance at 6"})
            captured.assert_no_event()
            done = self.client.post(
                url, {"topic": "announcements", "text": "Maintenance at 6", "confirm": "yes"}
            )
            event = captured.next()
        self.assertRedirects(done, PAGE, fetch_redirect_response=False)
        self.assertEqual((event.type, event.data), ("announcement", {"text": "Maintenance at 6"}))

    def test_actions_need_csrf(self) -> None:
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.staff)
        response = client.post(PAGE + "trim/", {"topic": "feed", "keep": "0", "confirm": "yes"})
        self.assertEqual(response.status_code, 403)

    def test_trim_drops_old_events(self) -> None:
        for n in range(5):
            publish("feed", {"n": n})
        self.client.force_login(self.staff)
        self.client.post(PAGE + "trim/", {"topic": "feed", "keep": "2", "confirm": "yes"})
        latest = asyncio.run(get_history().latest("feed", 10))
        self.assertEqual([e.data["n"] for e in latest.events], [3, 4])

    def test_bad_input_is_shown_not_acted_on(self) -> None:
        self.client.force_login(self.staff)
        response = self.client.post(
            PAGE + "trim/", {"topic": "no spaces allowed", "keep": "-1", "confirm": "yes"}
        )
        self.assertEqual(response.status_code, 400)
        self.assertContains(response, "Check the form", status_code=400)
        self.assertEqual(self.client.get(PAGE + "unknown/").status_code, 404)

    def test_disconnect_confirms_and_sends(self) -> None:
        self.client.force_login(self.staff)
        url = PAGE + "disconnect/"
        self.assertContains(self.client.get(url, {"user": "42"}), "End the connections of 42")
        done = self.client.post(url, {"user": "42", "confirm": "yes"}, follow=True)
        self.assertContains(done, "end the connections of user 42")

    def test_disconnect_one_connection_confirms_and_sends(self) -> None:
        self.client.force_login(self.staff)
        url = PAGE + "disconnect/"
        query = {"user": "42", "connection": "123.7", "process": "web-1:123"}
        confirm = self.client.get(url, query)
        self.assertContains(confirm, "End connection 123.7 on web-1:123 of user 42")
        self.assertContains(confirm, 'name="connection" value="123.7"')
        sent: list[Any] = []

        async def record(*args: Any, **kwargs: Any) -> None:
            sent.append((args, kwargs))

        with mock.patch("rtdelivery.access.adisconnect", record):
            done = self.client.post(url, {**query, "confirm": "yes"}, follow=True)
        self.assertContains(done, "end connection 123.7 of user 42")
        self.assertEqual(
            sent,
            [(("42",), {"session": None, "connection": "123.7", "process": "web-1:123"})],
        )
        bad = self.client.get(url, {"user": "42", "connection": "not an id"})
        self.assertContains(bad, "Check the form")
        self.assertContains(self.client.get(PAGE), 'id="rtops-user-connections"')

    def test_staff_without_the_permission_see_the_page_but_cannot_act(self) -> None:
        viewer = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
        for n in range(3):
            publish("feed", {"n": n})
        self.client.force_login(viewer)
        page = self.client.get(PAGE)
        self.assertEqual(page.status_code, 200)
        self.assertContains(page, "rtdelivery.manage_realtime")
        self.assertNotContains(page, 'id="rtops-trim"')
        self.assertEqual(self.client.get(PAGE + "state.json").status_code, 200)
        with capture_events("announcements") as captured:
            for name, data in [
                ("trim", {"topic": "feed", "keep": "0"}),
                ("announce", {"topic": "announcements", "text": "hi"}),
                ("disconnect", {"user": "42"}),
            ]:
                self.assertEqual(self.client.get(PAGE + f"{name}/", data).status_code, 403)
                done = self.client.post(PAGE + f"{name}/", {**data, "confirm": "yes"})
                self.assertEqual(done.status_code, 403)
            captured.assert_no_event()
        latest = asyncio.run(get_history().latest("feed", 10))
        self.assertEqual(len(latest.events), 3)  # not trimmed

    def test_superusers_may_act(self) -> None:
        admin = get_user_model().objects.create_superuser("admin", password="pw")
        self.client.force_login(admin)
        self.assertContains(self.client.get(PAGE), 'id="rtops-trim"')
        done = self.client.post(PAGE + "trim/", {"topic": "feed", "keep": "0", "confirm": "yes"})
        self.assertRedirects(done, PAGE, fetch_redirect_response=False)

    def test_an_action_that_takes_too_long_is_an_error_message_not_a_500(self) -> None:
        from rtdelivery.ops import views

        async def hang(*args: Any, **kwargs: Any) -> None:
            await asyncio.sleep(30)

        self.client.force_login(self.staff)
        with (
            mock.patch.object(views, "TIMEOUT", 0.05),
            mock.patch("rtdelivery.access.adisconnect", hang),
        ):
            done = self.client.post(
                PAGE + "disconnect/", {"user": "42", "confirm": "yes"}, follow=True
            )
        self.assertEqual(done.status_code, 200)
        self.assertContains(done, "Could not disconnect: No answer within 0.05 s")
        with (
            mock.patch.object(views, "TIMEOUT", 0.05),
            mock.patch.object(views.state, "collect", hang),
        ):
            state = self.client.get(PAGE + "state.json")
        self.assertEqual(state.status_code, 503)
        self.assertEqual(state.json()["error"]["code"], "unavailable")


# -- units ---------------------------------------------------------------------------------


def test_the_ops_topic_is_staff_only_whatever_the_wildcards(settings: Any) -> None:
    settings.RTDELIVERY = {"TOPICS": {"*": {"subscribe": "anyone", "publish": "anyone"}}}

    class Staff:
        is_authenticated = True
        is_staff = True
        pk = 1

    class Someone(Staff):
        is_staff = False

    assert asyncio.run(allowed(Staff(), OPS_TOPIC, SUBSCRIBE))
    assert not asyncio.run(allowed(Someone(), OPS_TOPIC, SUBSCRIBE))
    assert not asyncio.run(allowed(Staff(), OPS_TOPIC, PUBLISH))
    assert asyncio.run(allowed(Someone(), "other", SUBSCRIBE))


def test_metrics_tokens_are_validated() -> None:
    (problem,) = validate({"METRICS_TOKENS": ["short"]})
    assert problem.check_id == "rtdelivery.E002"
    assert "METRICS_TOKENS" in problem.message
    assert "short" not in problem.message
    (problem,) = validate({"OPS_INTERVAL": 0})
    assert "OPS_INTERVAL" in problem.message
    assert validate({"OPS_INTERVAL": None, "METRICS_TOKENS": ["x" * 16]}) == []


def test_deliveries_are_flushed_once() -> None:
    before = metrics.value("events_delivered", transport="sse")
    metrics.delivered["sse"].n += 3
    assert metrics.value("events_delivered", transport="sse") == before + 3
    assert metrics.value("events_delivered", transport="sse") == before + 3  # not twice


def test_refusals_are_told_apart() -> None:
    throttled = metrics.value("throttled", transport="sse", code="too_many_connections")
    refused = metrics.value("refusals", transport="ws", code="forbidden")
    metrics.refused("sse", 429, "too_many_connections")
    metrics.refused("ws", 403, "forbidden")
    metrics.refused("ws", 400, "invalid_topic")  # a bad request is neither
    assert metrics.value("throttled", transport="sse", code="too_many_connections") == (
        throttled + 1
    )
    assert metrics.value("refusals", transport="ws", code="forbidden") == refused + 1
    assert metrics.value("refusals", transport="ws", code="invalid_topic") == 0


def test_a_snapshot_carries_totals_and_rates() -> None:
    first = reporter.snapshot()
    metrics.events_published.inc(10)
    later = reporter.snapshot((first["time"] - 1.0, first["counters"]))
    assert later["counters"]["events_published"] == first["counters"]["events_published"] + 10
    assert later["rates"]["events_published"] == pytest.approx(10, rel=0.5)
    assert later["id"] == reporter.PROCESS_ID


def test_a_missing_multiprocess_directory_is_a_clear_error(tmp_path: Any) -> None:
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "missing"),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
    }
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); import rtdelivery.metrics"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert done.returncode != 0
    assert "ImproperlyConfigured: PROMETHEUS_MULTIPROC_DIR is" in done.stderr
    assert "not a directory" in done.stderr
