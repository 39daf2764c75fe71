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

from ...conf import get_settings
from ...policy import SUBSCRIBE, allowed, effective_user
from ...tokens import token_claims

#: The TOPICS rule that asks the ChannelManager (rtdelivery.contrib.eventstream.TOPICS).
CHANNEL_MANAGER_RULE = "rtdelivery.contrib.eventstream.policy.can_read_channel"


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


def default_read(manager: Any) -> bool:
    return type(manager).can_read_channel is DefaultChannelManager.can_read_channel


async def unreadable(user: Any, topics: dict[str, str]) -> tuple[list[str], str]:
    """The channels (``topics``: topic -> channel) ``user`` may not read, and the
    refusal's code (``token_topics`` when a connection token's topic limits made the
    difference, else ``forbidden``).

    As on every rtdelivery transport, a client authenticated by a connection token limited
    to other topics is anonymous on a channel's topic. The ChannelManager's
    ``can_read_channel`` decides; when ``RTDELIVERY["TOPICS"]`` has a pattern matching the
    channel's topic, its subscribe rule must allow too (deny by default).
    """
    manager = get_channelmanager()
    conf = get_settings()
    claims = token_claims(user)
    refused: list[str] = []
    limited = False
    ask: list[tuple[str, Any, bool]] = []  # (channel, user as its topic sees it, limited)
    for topic, channel in topics.items():
        narrowed = claims is not None and not claims.allows(topic)
        options = conf.topic_options(topic)
        if options.pattern is not None:
            if not await allowed(user, topic, SUBSCRIBE):
                refused.append(channel)
                limited = limited or narrowed
                continue
            if options.subscribe == CHANNEL_MANAGER_RULE:
                continue  # that rule was the ChannelManager's answer
        if not default_read(manager):
            ask.append((channel, effective_user(user, topic), narrowed))

    def check() -> list[tuple[str, bool]]:
        return [(c, n) for c, who, n in ask if not manager.can_read_channel(es_user(who), c)]

    if ask:
        for channel, narrowed in await sync_to_async(check)():
            refused.append(channel)
            limited = limited or narrowed
    return sorted(refused, key=list(topics.values()).index), (
        "token_topics" if limited else "forbidden"
    )


def can_read(user: Any, channel: str) -> bool:
    """``can_read_channel`` of the project's ChannelManager (sync)."""
    manager = get_channelmanager()
    return bool(manager.can_read_channel(es_user(user), channel))
