"""The demo's data: chat rooms and messages, feed items and announcements."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

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


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    text = models.CharField(max_length=1000)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created"]

    def __str__(self) -> str:
        return f"{self.author}: {self.text[:40]}"

    def as_event(self) -> dict[str, object]:
        return {
            "id": self.pk,
            "room": self.room.slug,
            "author": {"id": self.author_id, "name": self.author.get_username()},
            "text": self.text,
            "created": self.created.isoformat(),
        }


class FeedItem(models.Model):
    title = models.CharField(max_length=120)
    body = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)

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
        }


class Announcement(models.Model):
    text = models.CharField(max_length=280)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.text
