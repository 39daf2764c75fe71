"""A django-eventstream project's own pieces, as the tests' servers use them."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django_eventstream import send_event
from django_eventstream.channelmanager import DefaultChannelManager

#: Who can_read_channel was last asked about, per channel (in-process tests).
ASKED: dict[str, Any] = {}


class ChannelManager(DefaultChannelManager):
    """Channels starting with ``denied`` are refused to everyone; ``private.<name>``
    only to the user called ``<name>``; the rest are open."""

    def can_read_channel(self, user: Any, channel: str) -> bool:
        ASKED[channel] = user
        if channel.startswith("denied"):
            return False
        if channel.startswith("private."):
            return user is not None and user.get_username() == channel.split(".", 1)[1]
        return True


def send_sync(request: HttpRequest) -> JsonResponse:
    """A sync view calling send_event, as a project's views do."""
    send_event(request.GET["channel"], request.GET.get("type", "message"), {"n": request.GET["n"]})
    return JsonResponse({"ok": True})


async def send_async(request: HttpRequest) -> JsonResponse:
    """An async view calling send_event directly (it blocks the loop for the publish)."""
    send_event(request.GET["channel"], request.GET.get("type", "message"), {"n": request.GET["n"]})
    return JsonResponse({"ok": True})
