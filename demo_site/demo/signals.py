"""Publish feed items and announcements when they are saved or deleted (after commit)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from . import live
from .models import Announcement, FeedItem


@receiver(post_save, sender=FeedItem, dispatch_uid="demo.feed_item_saved")
def feed_item_saved(sender: Any, instance: FeedItem, created: bool, **kwargs: Any) -> None:
    # An edit is published too ("feed.updated"): open pages change the item in place, and a
    # page loading the backlog from history applies it after the item's "feed.created".
    live.publish_on_commit(
        live.FEED_TOPIC, instance.as_event(), type="feed.created" if created else "feed.updated"
    )


@receiver(post_save, sender=Announcement, dispatch_uid="demo.announcement_saved")
def announcement_saved(sender: Any, instance: Announcement, created: bool, **kwargs: Any) -> None:
    # Created or edited (a new text, an expiry): pages show it, or update the one they show.
    live.announce(instance.as_event())


@receiver(post_delete, sender=Announcement, dispatch_uid="demo.announcement_deleted")
def announcement_deleted(sender: Any, instance: Announcement, **kwargs: Any) -> None:
    live.announce({"id": instance.pk}, removed=True)
