"""rtdelivery.testing from Django test cases.

Runs under `python manage.py test tests.test_django_runner --settings=tests.settings` and
under pytest alike: only django.test classes and the stdlib's unittest API here.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import TestCase, TransactionTestCase, override_settings

from rtdelivery import apublish, publish, publish_on_commit
from rtdelivery.testing import (
    HandshakeRefused,
    RTDeliveryTestMixin,
    capture_events,
    subscribe,
    ws_client,
)

TOPICS = {
    "feed": {"subscribe": "anyone", "publish": "staff"},
    "room.*": {"subscribe": "authenticated", "publish": "authenticated"},
}
SETTINGS = {"HISTORY_BACKEND": "memory", "TOPICS": TOPICS}


@override_settings(RTDELIVERY=SETTINGS)
class SyncCaptureTests(RTDeliveryTestMixin, TestCase):
    def test_capture_records_sync_publishes(self) -> None:
        with capture_events("feed") as captured:
            publish("feed", {"n": 1})
            publish("feed", {"n": 2}, type="update")
            events = captured.wait(2)
            captured.assert_no_event()
        self.assertEqual([e.data for e in events], [{"n": 1}, {"n": 2}])
        self.assertEqual([e.type for e in events], ["message", "update"])

    def test_history_is_fresh_in_each_test(self) -> None:
        # The mixin resets the in-memory history: every test starts at seq 1.
        self.assertEqual(publish("feed", "first").seq, 1)

    def test_wait_fails_when_nothing_is_published(self) -> None:
        with (
            capture_events("feed") as captured,
            self.assertRaisesMessage(AssertionError, "Expected 1 events on ['feed']"),
        ):
            captured.wait(1, timeout=0.1)

    def test_publish_on_commit_in_a_test_case(self) -> None:
        # TestCase wraps each test in a transaction that never commits:
        # captureOnCommitCallbacks(execute=True) runs the on-commit publish.
        with capture_events("feed") as captured:
            with self.captureOnCommitCallbacks(execute=True) as callbacks:
                publish_on_commit("feed", {"saved": True})
                captured.assert_no_event()
            self.assertEqual(len(callbacks), 1)
            self.assertEqual(captured.next().data, {"saved": True})


@override_settings(RTDELIVERY=SETTINGS)
class OnCommitTests(RTDeliveryTestMixin, TransactionTestCase):
    def test_event_is_captured_only_after_commit(self) -> None:
        with capture_events("feed") as captured:
            with transaction.atomic():
                get_user_model().objects.create_user("writer")
                publish_on_commit("feed", {"user": "writer"})
                captured.assert_no_event()  # not before the commit
            self.assertEqual(captured.next().data, {"user": "writer"})

    def test_nothing_is_published_when_rolled_back(self) -> None:
        with capture_events("feed") as captured:
            with self.assertRaises(RuntimeError), transaction.atomic():
                get_user_model().objects.create_user("ghost")
                publish_on_commit("feed", {"user": "ghost"})
                raise RuntimeError("roll back")
            captured.assert_no_event()
        self.assertFalse(get_user_model().objects.filter(username="ghost").exists())


@override_settings(RTDELIVERY=SETTINGS)
class AsyncTests(RTDeliveryTestMixin, TestCase):
    async def test_subscribe_records_async_publishes(self) -> None:
        async with subscribe("feed") as rec:
            await apublish("feed", {"n": 1})
            event = await rec.next()
        self.assertEqual((event.topic, event.seq, event.data), ("feed", 1, {"n": 1}))

    async def test_next_fails_when_nothing_is_published(self) -> None:
        async with subscribe("feed") as rec:
            with self.assertRaisesMessage(AssertionError, "No event on ['feed'] within 0.1s"):
                await rec.next(timeout=0.1)

    async def test_ws_client_receives_server_events(self) -> None:
        async with ws_client() as ws:
            subscribed = await ws.subscribe("feed")
            self.assertTrue(subscribed["recovered"])
            await apublish("feed", {"n": 1})
            event = await ws.receive_event()
            self.assertEqual((event["topic"], event["data"]), ("feed", {"n": 1}))
            with self.assertRaisesMessage(AssertionError, "publish feed was refused: forbidden"):
                await ws.publish("feed", "anonymous may not publish")

    async def test_ws_client_refused_origin(self) -> None:
        with self.assertRaises(HandshakeRefused) as refused:
            async with ws_client(origin="http://evil.example"):
                pass  # pragma: no cover
        self.assertEqual(refused.exception.code, 1008)


@override_settings(RTDELIVERY=SETTINGS)
class WebSocketUserTests(RTDeliveryTestMixin, TestCase):
    user: Any

    @classmethod
    def setUpTestData(cls) -> None:
        cls.user = get_user_model().objects.create_user("member", password="pw")

    async def test_logged_in_user_may_use_a_members_topic(self) -> None:
        async with ws_client() as anonymous:
            with self.assertRaisesMessage(AssertionError, "forbidden"):
                await anonymous.subscribe("room.1")
        await self.async_client.aforce_login(self.user)
        async with ws_client(cookies=self.async_client.cookies) as member:
            await member.subscribe("room.1")
            ack = await member.publish("room.1", {"text": "hi"})
            event = await member.receive_event()
        self.assertEqual((event["seq"], event["data"]), (ack["seq"], {"text": "hi"}))
