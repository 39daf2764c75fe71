"""A TOPICS rule that asks the project's django-eventstream ChannelManager.

    RTDELIVERY = {
        "TOPICS": {
            "es.*": {
                "subscribe": "rtdelivery.contrib.eventstream.policy.can_read_channel",
                "publish": "nobody",
            },
        },
    }

Then WebSocket, long polling, polling and rtdelivery's own SSE endpoint let a client
subscribe to a bridged channel's topic exactly when the bridge's django-eventstream URL
would: ``can_read_channel(user or None, channel)``.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django_eventstream.utils import get_channelmanager

from .channels import can_read, default_read
from .names import InvalidChannel, topic_to_channel


async def can_read_channel(user: Any, topic: str, action: str) -> bool:
    """rtdelivery policy hook: subscribe as ``can_read_channel`` says; never publish
    (django-eventstream's clients only read; servers publish with ``send_event``).
    A project's ``can_read_channel`` may use the ORM: it runs in a worker thread (the
    default one, which allows everyone, inline)."""
    if action != "subscribe":
        return False
    try:
        channel = topic_to_channel(topic)
    except InvalidChannel:
        return False
    if default_read(get_channelmanager()):
        return True
    return bool(await sync_to_async(can_read)(user, channel))
