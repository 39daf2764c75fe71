"""Create feed items on a timer: a bounded simulator for the live feed page."""

from __future__ import annotations

import json
import random
import time
import urllib.request
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db.models.signals import post_save
from django.urls import reverse

from demo_site.demo import signals
from demo_site.demo.models import FeedItem
from rtdelivery.conf import get_settings

HEADLINES = [
    "Deploy finished",
    "New comment on the roadmap",
    "Build is green again",
    "Coffee machine back online",
    "Weekly report ready",
    "Sensor 7 recalibrated",
]


def _in_memory_layer() -> bool:
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    return backend.endswith("InMemoryChannelLayer")


def _token() -> str:
    tokens = get_settings().publish_tokens
    if not tokens:
        raise CommandError("Publishing through the server needs RTDELIVERY['PUBLISH_TOKENS'].")
    return tokens[0]


def _publish_url(server: str) -> str:
    return server.rstrip("/") + reverse("rtdelivery:publish")


class Command(BaseCommand):
    help = "Create COUNT feed items, one every INTERVAL seconds (bounded; stops by itself)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--count", type=int, default=10)
        parser.add_argument("--interval", type=float, default=2.0)
        parser.add_argument(
            "--server",
            default="http://127.0.0.1:8000",
            help="With the in-memory layer, publish through this running server's publish URL.",
        )

    def handle(self, *args: Any, count: int, interval: float, server: str, **options: Any) -> None:
        if not 0 < count <= 1000:
            raise CommandError(f"Expected --count from 1 to 1000, got {count}.")
        if not 0 <= interval <= 60:
            raise CommandError(f"Expected --interval from 0 to 60 seconds, got {interval}.")
        via_http = _in_memory_layer()
        if not via_http:
            self._create(count, interval, None)
            return
        # Another process's in-memory layer is out of reach: go through the server.
        self.stdout.write(f"In-memory layer: publishing through {_publish_url(server)}")
        post_save.disconnect(sender=FeedItem, dispatch_uid="demo.feed_item_saved")
        try:
            self._create(count, interval, server)
        finally:
            post_save.connect(
                signals.feed_item_saved, sender=FeedItem, dispatch_uid="demo.feed_item_saved"
            )

    def _create(self, count: int, interval: float, server: str | None) -> None:
        for n in range(count):
            item = FeedItem.objects.create(
                title=random.choice(HEADLINES), body=f"Simulated item {n + 1} of {count}."
            )
            if server is not None:
                self._post(server, item)
            self.stdout.write(f"feed item {item.pk}: {item.title}")
            if n + 1 < count:
                time.sleep(interval)

    def _post(self, server: str, item: FeedItem) -> None:
        body = json.dumps(
            {"topic": "feed", "type": "feed.created", "data": item.as_event()}
        ).encode()
        request = urllib.request.Request(
            _publish_url(server),
            data=body,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {_token()}",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except OSError as exc:
            raise CommandError(f"Could not publish through {server}: {exc}") from exc
