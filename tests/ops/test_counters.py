"""Counters the review found never moved: rtdelivery_publish_duplicates_total, on both
publish paths (in-memory history, and the Redis batcher)."""

from __future__ import annotations

from typing import Any

from rtdelivery import metrics
from rtdelivery.connections import aclose_redis
from rtdelivery.publishing import apublish, publish


def test_a_repeated_key_counts_a_duplicate_in_memory(settings: Any) -> None:
    settings.RTDELIVERY = {"HISTORY_BACKEND": "memory", "REDIS_URL": None}
    before = metrics.value("publish_duplicates")
    first = publish("feed", {"n": 1}, key="once-in-memory")
    again = publish("feed", {"n": 1}, key="once-in-memory")
    assert again.duplicate
    assert again.seq == first.seq
    assert metrics.value("publish_duplicates") == before + 1
    publish("feed", {"n": 2}, key="another-key")  # not a duplicate
    assert metrics.value("publish_duplicates") == before + 1


async def test_a_repeated_key_counts_a_duplicate_on_redis(
    redis_settings: dict[str, Any],
) -> None:
    try:
        before = metrics.value("publish_duplicates")
        published = metrics.value("events_published")
        await apublish("feed", {"n": 1}, key="once-on-redis")
        again = await apublish("feed", {"n": 1}, key="once-on-redis")
        assert again.duplicate
        assert metrics.value("publish_duplicates") == before + 1
        assert metrics.value("events_published") == published + 1
    finally:
        await aclose_redis()
