"""Fixtures: rtdelivery on the real Redis (history and layer) with the bridge configured."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from rtdelivery.connections import aclose_redis
from rtdelivery.contrib.eventstream import TOPICS
from rtdelivery.hub import aclose_hub
from rtdelivery.publishing import close_publisher

STORAGE = "rtdelivery.contrib.eventstream.storage.RTDeliveryStorage"


@pytest.fixture
def es_settings(
    settings: Any,
    redis_settings: dict[str, Any],
    redis_layer_settings: Callable[[str], dict[str, Any]],
) -> Iterator[dict[str, Any]]:
    """Redis history and layer, EVENTSTREAM_STORAGE_CLASS and the bridge's TOPICS rule."""
    redis_layer_settings("redis")
    settings.RTDELIVERY = {**redis_settings, "TOPICS": dict(TOPICS)}
    settings.EVENTSTREAM_STORAGE_CLASS = STORAGE
    settings.EVENTSTREAM_CHANNELMANAGER_CLASS = "tests.contrib.eventstream.project.ChannelManager"
    yield settings.RTDELIVERY
    close_publisher()


@pytest.fixture
async def closing(es_settings: dict[str, Any]) -> AsyncIterator[None]:
    """For async tests: close the loop's hub and Redis client afterwards."""
    yield
    await aclose_hub()
    await aclose_redis()
