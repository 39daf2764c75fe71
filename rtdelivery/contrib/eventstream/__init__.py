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


__all__ = [
    "TOPICS",
    "TOPIC_PREFIX",
    "InvalidChannel",
    "asend_event",
    "channel_to_topic",
    "topic_to_channel",
]
