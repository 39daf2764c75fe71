"""The demo's data: chat rooms and messages, feed items and announcements."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

slug_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9-]{0,39}$", "Use 1-40 lowercase letters, digits and hyphens."
)


class Room(models.Model):
    slug = models.CharField(max_length=40, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=80)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def topic(self) -> str:
        return f"chat.{self.slug}"


#: An idempotency key as the wire takes it (docs/protocol.md): 1-128 of [A-Za-z0-9_.:-].
KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    text = models.CharField(max_length=1000)
    created = models.DateTimeField(auto_now_add=True)
    # The sender's idempotency key: a retried send with the same key stores nothing new.
    key = models.CharField(max_length=128, blank=True, default="")

    class Meta:
        ordering = ["created"]
        constraints = [
            models.UniqueConstraint(
                fields=["author", "key"], condition=~Q(key=""), name="demo_message_author_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.author}: {self.text[:40]}"

    def as_event(self) -> dict[str, object]:
        return {
            "id": self.pk,
            "room": self.room.slug,
            "author": {"id": self.author_id, "name": self.author.get_username()},
            "text": self.text,
            "created": self.created.isoformat(),
            # Lets the sender's page match the event to the message it shows as pending.
            "key": self.key,
        }


class FeedItem(models.Model):
    title = models.CharField(max_length=120)
    body = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.title

    def as_event(self) -> dict[str, object]:
        return {
            "id": self.pk,
            "title": self.title,
            "body": self.body,
            "created": self.created.isoformat(),
            "updated": self.updated.isoformat(),
        }


class AnnouncementQuerySet(models.QuerySet["Announcement"]):
    def active(self) -> AnnouncementQuerySet:
        """The announcements a visitor arriving now still sees."""
        return self.filter(Q(expires__isnull=True) | Q(expires__gt=timezone.now()))


class Announcement(models.Model):
    text = models.CharField(max_length=280)
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Shown to every visitor until then (empty: until deleted or dismissed).",
    )

    objects = AnnouncementQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.text

    def as_event(self) -> dict[str, object]:
        return {
            "id": self.pk,
            "text": self.text,
            "created": self.created.isoformat(),
            "expires": self.expires.isoformat() if self.expires else None,
        }
