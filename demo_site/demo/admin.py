from __future__ import annotations

from typing import Any

from django.contrib import admin, messages

from rtdelivery.ops.site import register as register_ops

from .models import Announcement, FeedItem, Message, Room

# The live operations page (admin/rtdelivery/ops/), listed on the admin's front page.
register_ops(admin.site)


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["room", "author", "text", "created"]
    list_filter = ["room"]
    search_fields = ["text"]


@admin.register(FeedItem)
class FeedItemAdmin(admin.ModelAdmin):
    list_display = ["title", "created"]
    search_fields = ["title", "body"]
    actions = ["broadcast"]

    @admin.action(description="Broadcast the selected items as announcements")
    def broadcast(self, request: Any, queryset: Any) -> None:
        # Stored announcements: pages opened later still show them (until dismissed).
        for item in queryset:
            Announcement.objects.create(text=item.title[:280])
        self.message_user(
            request, f"Announced {queryset.count()} item(s) to every client.", messages.SUCCESS
        )


@admin.register(Announcement)
class AnnouncementAdmin(admin.ModelAdmin):
    """Adding an announcement broadcasts it to every connected client (after commit); pages
    opened later show it too, until it expires, is deleted or the visitor dismisses it."""

    list_display = ["text", "created", "expires"]
