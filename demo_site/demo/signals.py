"""Publish feed items and announcements when they are saved (after commit)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from . import live
from .models import Announcement, FeedItem


@receiver(post_save, sender=FeedItem, dispatch_uid="demo.feed_item_saved")
def feed_item_saved(sender: Any, instance: FeedItem, created: bool, **kwargs: Any) -> None:
    live.publish_on_commit(
        live.FEED_TOPIC, instance.as_event(), type="feed.created" if created else "feed.updated"
    )


@receiver(post_save, sender=Announcement, dispatch_uid="demo.announcement_saved")
def announcement_saved(sender: Any, instance: Announcement, created: bool, **kwargs: Any) -> None:
    if created:
        live.announce(instance.text)
