"""The project's django-eventstream ChannelManager, called without blocking the loop.

``EVENTSTREAM_CHANNELMANAGER_CLASS`` (django-eventstream's setting; its
``DefaultChannelManager`` when unset) says which channels a request asks for
(``get_channels_for_request``) and who may read them (``can_read_channel``, with
``None`` for an anonymous user, as django-eventstream passes it). A project's own
methods may use the ORM: they run in a worker thread. The default ones only read the
URL and allow everyone: they run inline.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest
from django_eventstream.channelmanager import DefaultChannelManager
from django_eventstream.utils import get_channelmanager


def es_user(user: Any) -> Any:
    """The user as django-eventstream passes it to a ChannelManager: None when anonymous."""
    return user if getattr(user, "is_authenticated", False) else None


async def channels_for_request(request: HttpRequest, view_kwargs: dict[str, Any]) -> list[str]:
    """The channels the request asks for, in a stable order."""
    manager = get_channelmanager()
    method = type(manager).get_channels_for_request
    if method is DefaultChannelManager.get_channels_for_request:
        channels = manager.get_channels_for_request(request, view_kwargs)
    else:
        channels = await sync_to_async(manager.get_channels_for_request)(request, view_kwargs)
    return sorted(channels, key=str)


def _default_read(manager: Any) -> bool:
    return type(manager).can_read_channel is DefaultChannelManager.can_read_channel


async def unreadable(user: Any, channels: list[str]) -> list[str]:
    """The channels ``user`` may not read (``can_read_channel`` False)."""
    manager = get_channelmanager()
    if _default_read(manager):
        return []

    def check() -> list[str]:
        who = es_user(user)
        return [c for c in channels if not manager.can_read_channel(who, c)]

    refused: list[str] = await sync_to_async(check)()
    return refused


def can_read(user: Any, channel: str) -> bool:
    """``can_read_channel`` of the project's ChannelManager (sync)."""
    manager = get_channelmanager()
    return bool(manager.can_read_channel(es_user(user), channel))
