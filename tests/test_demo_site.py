"""The demo site's views, signals, admin action and management command.

Django test cases only, so they run under ``python manage.py test`` (the proof that
rtdelivery.testing works there) as well as under pytest.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import timedelta
from io import StringIO

from django.contrib.admin.sites import site
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import TestCase, TransactionTestCase, override_settings
from django.utils import timezone

from demo_site.demo.admin import FeedItemAdmin
from demo_site.demo.models import Announcement, FeedItem, Message, Room
from demo_site.settings import RTDELIVERY as DEMO_RTDELIVERY
from rtdelivery.testing import RTDeliveryTestMixin, capture_events

SETTINGS = {**DEMO_RTDELIVERY, "HISTORY_BACKEND": "memory", "REDIS_URL": None}


@override_settings(RTDELIVERY=SETTINGS)
class PageTests(TestCase):
    def test_public_pages_render(self) -> None:
        for path, marker in [
            ("/", "Real-time delivery for Django"),
            ("/chat/", "Chat rooms"),
            ("/feed/", "Live feed"),
            ("/dashboard/", "What each transport costs"),
            ("/login/", "Continue as a guest"),
        ]:
            with self.subTest(path=path):
                response = self.client.get(path)
                self.assertContains(response, marker)
                self.assertContains(response, "rtdelivery/rtdelivery.js")

    def test_room_needs_a_signed_in_user(self) -> None:
        Room.objects.create(slug="lobby", name="Lobby")
        response = self.client.get("/chat/lobby/")
        self.assertRedirects(response, "/login/?next=/chat/lobby/", fetch_redirect_response=False)

    def test_guest_login_creates_and_signs_in_a_user(self) -> None:
        response = self.client.post("/guest/", {"next": "/feed/"})
        self.assertRedirects(response, "/feed/", fetch_redirect_response=False)
        user = get_user_model().objects.get()
        self.assertTrue(user.username.startswith("guest-"))
        self.assertFalse(user.has_usable_password())
        self.assertContains(self.client.get("/feed/"), user.username)

    def test_guest_login_refuses_an_offsite_redirect(self) -> None:
        response = self.client.post("/guest/", {"next": "//evil.example/"})
        self.assertRedirects(response, "/", fetch_redirect_response=False)

    def test_signup_refuses_an_offsite_redirect(self) -> None:
        response = self.client.post(
            "/signup/?next=//evil.example/",
            {"username": "erin", "password1": "a-Long-pass-123", "password2": "a-Long-pass-123"},
        )
        self.assertRedirects(response, "/chat/", fetch_redirect_response=False)

    def test_favicon(self) -> None:
        response = self.client.get("/favicon.ico")
        self.assertRedirects(
            response, "/static/demo/favicon.svg", status_code=301, fetch_redirect_response=False
        )
        self.assertContains(self.client.get("/"), 'rel="icon" href="/static/demo/favicon.svg"')

    def test_signup(self) -> None:
        response = self.client.post(
            "/signup/",
            {"username": "carol", "password1": "a-Long-pass-123", "password2": "a-Long-pass-123"},
        )
        self.assertRedirects(response, "/chat/", fetch_redirect_response=False)
        self.assertTrue(get_user_model().objects.filter(username="carol").exists())

    def test_creating_a_room(self) -> None:
        self.client.force_login(get_user_model().objects.create_user("dan"))
        response = self.client.post("/chat/", {"name": "Team Room!"})
        self.assertRedirects(response, "/chat/team-room/", fetch_redirect_response=False)
        self.assertContains(self.client.get("/chat/team-room/"), 'data-topic="chat.team-room"')


@override_settings(RTDELIVERY=SETTINGS)
class ChatPublishingTests(RTDeliveryTestMixin, TestCase):
    def setUp(self) -> None:
        self.room = Room.objects.create(slug="lobby", name="Lobby")
        users = get_user_model().objects
        self.alice = users.create_user("alice")
        self.bob = users.create_user("bob")
        self.client.force_login(self.alice)

    def send(self, payload: object) -> object:
        return self.client.post(
            "/chat/lobby/send", json.dumps(payload), content_type="application/json"
        )

    def test_message_is_stored_then_published_on_commit(self) -> None:
        with capture_events("chat.lobby") as captured:
            with self.captureOnCommitCallbacks(execute=True):
                response = self.send({"text": "hello"})
                captured.assert_no_event()  # nothing before the commit
            event = captured.next()
        self.assertEqual(response.status_code, 201)  # type: ignore[attr-defined]
        message = Message.objects.get()
        self.assertEqual(event.type, "chat.message")
        self.assertEqual(event.data["text"], "hello")
        self.assertEqual(event.data["id"], message.pk)
        self.assertEqual(event.data["author"], {"id": self.alice.pk, "name": "alice"})

    def test_a_mention_notifies_the_user_privately(self) -> None:
        with capture_events(f"user.{self.bob.pk}") as captured:
            with self.captureOnCommitCallbacks(execute=True):
                self.send({"text": "hi @bob and @nobody and @alice"})
            event = captured.next()
            captured.assert_no_event()
        self.assertEqual(event.type, "notification")
        self.assertIn("alice mentioned you in Lobby", event.data["text"])

    def test_a_send_retried_with_its_key_is_stored_and_published_once(self) -> None:
        with capture_events("chat.lobby") as captured:
            with self.captureOnCommitCallbacks(execute=True):
                first = self.send({"text": "hello", "key": "k-1:a.b_c"})
            with self.captureOnCommitCallbacks(execute=True):
                # Published again under the message's key: nothing new goes out.
                again = self.send({"text": "hello", "key": "k-1:a.b_c"})
            captured.next()
            captured.assert_no_event()
        self.assertEqual(first.status_code, 201)  # type: ignore[attr-defined]
        self.assertEqual(again.status_code, 200)  # type: ignore[attr-defined]
        message = Message.objects.get()
        self.assertEqual(message.key, "k-1:a.b_c")
        body = again.json()  # type: ignore[attr-defined]
        self.assertEqual((body["id"], body["duplicate"]), (message.pk, True))
        self.assertEqual(body["message"], message.as_event())
        self.assertNotIn("duplicate", first.json())  # type: ignore[attr-defined]
        # The key is the sender's own: another user's same key is another message.
        self.client.force_login(self.bob)
        self.assertEqual(self.send({"text": "hi", "key": "k-1:a.b_c"}).status_code, 201)  # type: ignore[attr-defined]
        # Reused in another room: refused, not mixed up.
        Room.objects.create(slug="other", name="Other")
        response = self.client.post(
            "/chat/other/send",
            json.dumps({"text": "hi", "key": "k-1:a.b_c"}),
            content_type="application/json",
        )
        self.assertEqual(response.status_code, 409)
        self.assertEqual(response.json()["error"]["code"], "key_reused")
        self.assertEqual(Message.objects.count(), 2)

    def test_a_retry_publishes_a_message_whose_publish_was_lost(self) -> None:
        with capture_events("chat.lobby") as captured:
            # Stored, but its publish never ran (as when Redis is down at the commit).
            with self.captureOnCommitCallbacks(execute=False):
                self.send({"text": "hello", "key": "lost-publish"})
            captured.assert_no_event()
            with self.captureOnCommitCallbacks(execute=True):
                response = self.send({"text": "hello", "key": "lost-publish"})
            event = captured.next()
        self.assertEqual(response.json()["duplicate"], True)  # type: ignore[attr-defined]
        self.assertEqual(event.data, Message.objects.get().as_event())

    def test_bad_keys_are_refused(self) -> None:
        for key in ["", "x" * 129, "has space", "é", 12, "line\n"]:
            with self.subTest(key=key):
                response = self.send({"text": "hello", "key": key})
                if key == "":
                    self.assertEqual(response.status_code, 201)  # type: ignore[attr-defined]
                    continue
                self.assertEqual(response.status_code, 400)  # type: ignore[attr-defined]
                self.assertIn("key", response.json()["error"]["message"])  # type: ignore[attr-defined]
        self.assertEqual(Message.objects.count(), 1)

    def test_bad_messages_are_refused_with_json_errors(self) -> None:
        for payload in ["not an object", {"text": ""}, {"text": "x" * 1001}, {}]:
            with self.subTest(payload=payload):
                response = self.send(payload)
                self.assertEqual(response.status_code, 400)  # type: ignore[attr-defined]
                self.assertEqual(response.json()["error"]["code"], "bad_request")  # type: ignore[attr-defined]
        self.assertFalse(Message.objects.exists())


@override_settings(RTDELIVERY=SETTINGS)
class FeedAndAnnouncementTests(RTDeliveryTestMixin, TestCase):
    def test_feed_item_is_published_on_commit(self) -> None:
        with capture_events("feed") as captured:
            with self.captureOnCommitCallbacks(execute=True):
                item = FeedItem.objects.create(title="Deploy finished", body="v1")
            event = captured.next()
        self.assertEqual(event.type, "feed.created")
        self.assertEqual(event.data["id"], item.pk)
        self.assertEqual(event.data["title"], "Deploy finished")

    def test_announcement_reaches_the_announcements_topic(self) -> None:
        with capture_events("announcements") as captured:
            with self.captureOnCommitCallbacks(execute=True):
                announcement = Announcement.objects.create(text="Maintenance at noon")
            event = captured.next()
        self.assertEqual(event.type, "announcement")
        self.assertEqual(event.data, announcement.as_event())
        self.assertEqual(event.data["text"], "Maintenance at noon")
        self.assertIsNone(event.data["expires"])

    def test_announcement_edit_and_removal_are_published(self) -> None:
        announcement = Announcement.objects.create(text="Maintenance at noon")
        pk = announcement.pk
        with capture_events("announcements") as captured:
            with self.captureOnCommitCallbacks(execute=True):
                announcement.expires = timezone.now() + timedelta(hours=1)
                announcement.save()
            edited = captured.next()
            with self.captureOnCommitCallbacks(execute=True):
                announcement.delete()
            removed = captured.next()
        self.assertEqual((edited.type, edited.data["id"]), ("announcement", pk))
        self.assertIsNotNone(edited.data["expires"])
        self.assertEqual((removed.type, removed.data), ("announcement.removed", {"id": pk}))

    def test_late_visitors_get_the_active_announcements(self) -> None:
        soon = timezone.now() + timedelta(hours=1)
        Announcement.objects.create(text="Expired", expires=timezone.now() - timedelta(seconds=1))
        Announcement.objects.create(text="Until soon", expires=soon)
        Announcement.objects.create(text="No expiry")
        self.assertEqual(
            [a.text for a in Announcement.objects.active()], ["No expiry", "Until soon"]
        )
        response = self.client.get("/feed/")
        self.assertContains(response, 'id="demo-announcements"')
        self.assertContains(response, "Until soon")
        self.assertNotContains(response, "Expired")

    def test_feed_item_edit_is_published_as_updated(self) -> None:
        item = FeedItem.objects.create(title="Deploy started")
        with capture_events("feed") as captured:
            with self.captureOnCommitCallbacks(execute=True):
                item.title = "Deploy finished"
                item.save()
            event = captured.next()
        self.assertEqual(event.type, "feed.updated")
        self.assertEqual((event.data["id"], event.data["title"]), (item.pk, "Deploy finished"))
        self.assertGreaterEqual(event.data["updated"], event.data["created"])

    def test_admin_action_broadcasts_items(self) -> None:
        admin_user = get_user_model().objects.create_superuser("root", password="x")
        FeedItem.objects.create(title="Big news")
        self.client.force_login(admin_user)
        with capture_events("announcements") as captured:
            with self.captureOnCommitCallbacks(execute=True):
                response = self.client.post(
                    "/admin/demo/feeditem/",
                    {"action": "broadcast", "_selected_action": [FeedItem.objects.get().pk]},
                )
            self.assertEqual(captured.next().data["text"], "Big news")
        # Stored, so pages opened later show it too.
        self.assertEqual(Announcement.objects.get().text, "Big news")
        self.assertEqual(response.status_code, 302)
        self.assertIsInstance(site._registry[FeedItem], FeedItemAdmin)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@override_settings(RTDELIVERY=SETTINGS)
class DemoFeedCommandTests(RTDeliveryTestMixin, TransactionTestCase):
    def test_bounds_are_checked(self) -> None:
        for options in ({"count": 0}, {"count": 1001}, {"interval": -1}, {"interval": 61}):
            with self.subTest(options=options), self.assertRaises(CommandError):
                call_command("demo_feed", stdout=StringIO(), **options)

    def test_in_memory_layer_publishes_through_the_server(self) -> None:
        # Another process's in-memory layer is out of reach: it must go over HTTP, and say
        # clearly when no server answers.
        server = f"http://127.0.0.1:{_closed_port()}"
        with capture_events("feed") as captured:
            with self.assertRaisesMessage(CommandError, f"Could not publish through {server}"):
                call_command("demo_feed", count=1, interval=0, server=server, stdout=StringIO())
            captured.assert_no_event()  # not published in-process: the server was the way
        self.assertEqual(FeedItem.objects.count(), 1)
        # The publish-on-save receiver is back afterwards.
        with capture_events("feed") as captured:
            FeedItem.objects.create(title="after")
            self.assertEqual(captured.next().data["title"], "after")

    def test_redis_layer_publishes_directly(self) -> None:
        url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        layers = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {
                    "hosts": [{"address": url, "socket_timeout": None}],
                    "prefix": f"rtdtest-demo-{os.getpid()}",
                },
            }
        }
        out = StringIO()
        with override_settings(CHANNEL_LAYERS=layers), capture_events("feed") as captured:
            call_command("demo_feed", count=3, interval=0, stdout=out)
            events = captured.wait(3)
        self.assertEqual([e.type for e in events], ["feed.created"] * 3)
        self.assertEqual(FeedItem.objects.count(), 3)
        self.assertEqual(out.getvalue().count("feed item"), 3)
