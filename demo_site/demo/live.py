"""How the demo publishes: always after the transaction commits."""

from __future__ import annotations

from typing import Any

from rtdelivery import publish_on_commit

FEED_TOPIC = "feed"
ANNOUNCE_TOPIC = "announcements"


def notify_user(user_id: int, data: dict[str, Any]) -> None:
    """A private notification on the user's own topic (only they may subscribe)."""
    publish_on_commit(f"user.{user_id}", data, type="notification")


def announce(data: dict[str, Any], *, removed: bool = False) -> None:
    """An announcement (``Announcement.as_event()``) to every page, or its removal.

    Pages that open later get the active ones from the database (``active_announcements``).
    """
    publish_on_commit(
        ANNOUNCE_TOPIC, data, type="announcement.removed" if removed else "announcement"
    )
