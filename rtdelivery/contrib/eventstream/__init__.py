"""django-eventstream on rtdelivery (``pip install rtdelivery[eventstream]``).

Two lines in a django-eventstream project (see docs/migrating-from-django-eventstream.md):

    # settings.py
    EVENTSTREAM_STORAGE_CLASS = "rtdelivery.contrib.eventstream.storage.RTDeliveryStorage"

    # urls.py: instead of include(django_eventstream.urls)
    path("events/", include("rtdelivery.contrib.eventstream.urls"), {"channels": ["test"]}),

``django_eventstream.send_event()`` then publishes through rtdelivery (channel ``C`` is
topic ``es.<C escaped>``, :mod:`.names`), and the URL streams django-eventstream's wire
format from rtdelivery's history and hub.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .names import TOPIC_PREFIX, InvalidChannel, channel_to_topic, topic_to_channel

#: A TOPICS entry for the bridged channels on rtdelivery's own endpoints: the
#: ChannelManager decides who may subscribe; clients never publish.
TOPICS = {
    "es.*": {
        "subscribe": "rtdelivery.contrib.eventstream.policy.can_read_channel",
        "publish": "nobody",
    }
}


async def asend_event(channel: str, event_type: str, data: Any, json_encode: bool = True) -> Any:
    """``send_event`` for async code, without blocking the loop: publishes on the
    channel's topic and returns django-eventstream's ``Event`` (its ``id`` is the seq).
    (django-eventstream's own grip and local listeners are not involved.)"""
    from django.core.serializers.json import DjangoJSONEncoder
    from django_eventstream.event import Event as ESEvent

    from ...publishing import apublish
    from .data import to_stored

    text = json.dumps(data, cls=DjangoJSONEncoder) if json_encode else data
    event = await apublish(channel_to_topic(channel), to_stored(text), type=event_type)
    return ESEvent(channel, event_type, text, id=event.seq)


async def aget_current_event_id(channels: Iterable[str]) -> str:
    """django-eventstream's ``get_current_event_id(channels)`` for async code (no blocking
    call on the loop), with the epoch part: a page that renders it and resumes from it
    after Redis lost the history gets ``stream-reset``, never a silent skip."""
    from ...history import get_history
    from .ids import make_id

    topics = {channel_to_topic(channel): channel for channel in channels}
    heads = await get_history().heads(list(topics))
    return make_id((channel, heads.get(topic)) for topic, channel in topics.items())


def get_current_event_id(channels: Iterable[str]) -> str:
    """``aget_current_event_id`` for sync code (a view rendering the page): use it in place
    of ``django_eventstream.get_current_event_id``, whose ids have no epoch part."""
    from .storage import run

    channels = list(channels)
    return run(lambda: aget_current_event_id(channels))


__all__ = [
    "TOPICS",
    "TOPIC_PREFIX",
    "InvalidChannel",
    "aget_current_event_id",
    "asend_event",
    "channel_to_topic",
    "get_current_event_id",
    "topic_to_channel",
]
