"""Fixtures and helpers for the hub and subscriber tests.

Every test here ends by closing the loop's hub and Redis client and forgetting the
history instance, so no task or connection outlives the test's event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from rtdelivery.backplane import group_name
from rtdelivery.core.events import Event
from rtdelivery.subscriber import Item, Subscriber
from rtdelivery.testing import (
    areset,
    wait_until,  # noqa: F401  (re-exported for the tests)
)
from tests.conftest import sync_redis

#: Upper bound for any single wait in these tests (seconds); a healthy run needs far less.
WAIT = 10.0


@pytest.fixture(autouse=True)
async def _close_hub_after_test(settings: Any, key_prefix: str) -> AsyncIterator[None]:
    # Depending on `settings` and `key_prefix` makes this teardown run before theirs:
    # the hub and its Redis client are closed while the test's settings are still in
    # place and before the test's Redis keys are deleted (so nothing recreates them).
    yield
    await areset()


@pytest.fixture
def rt_settings(
    settings: Any, request: pytest.FixtureRequest, layer_backend: str
) -> Callable[..., dict[str, Any]]:
    """configure(**extra): RTDELIVERY for this layer; Redis history when the layer is Redis."""

    def configure(**extra: Any) -> dict[str, Any]:
        if layer_backend == "memory":
            base: dict[str, Any] = {"HISTORY_BACKEND": "memory"}
        else:
            base = dict(request.getfixturevalue("redis_settings"))
        config = {**base, **extra}
        settings.RTDELIVERY = config
        return config

    configure()
    return configure


async def collect(sub: Subscriber, count: int, seconds: float = WAIT) -> list[Item]:
    """Exactly the next ``count`` items of ``sub`` (fails on fewer within ``seconds``,
    and on more if they arrive in the same batch)."""
    items: list[Item] = []
    deadline = time.monotonic() + seconds
    while len(items) < count:  # each get() returns at least one item
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            items += await asyncio.wait_for(sub.get(), remaining)
        except TimeoutError:
            break
    assert len(items) == count, f"expected {count} items, got {len(items)}: {items!r}"
    return items


async def collect_until(sub: Subscriber, seq: int, seconds: float = WAIT) -> list[Item]:
    """Items of ``sub`` up to and including the event with ``seq``."""
    items: list[Item] = []
    deadline = time.monotonic() + seconds
    while not any(isinstance(i, Event) and i.seq == seq for i in items):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no event #{seq} within {seconds}s; got {items!r}"
        try:
            items += await asyncio.wait_for(sub.get(), remaining)
        except TimeoutError:
            pytest.fail(f"no event #{seq} within {seconds}s; got {items!r}")
    return items


def events(items: list[Item]) -> list[Event]:
    """``items``, which must all be events (no Reset, no Notice)."""
    assert all(isinstance(i, Event) for i in items), items
    return [i for i in items if isinstance(i, Event)]


def seqs(items: list[Item]) -> list[int]:
    return [e.seq for e in events(items)]


def group_members(layer_backend: str, layer: Any, topic: str, redis_url: str) -> set[str]:
    """The layer's real members of ``topic``'s group (in Redis for the Redis layers)."""
    group = group_name(topic)
    if layer_backend == "memory":
        return set(layer.groups.get(group, {}))
    if layer_backend == "redis":
        with sync_redis(redis_url) as client:
            return {m.decode() for m in client.zrange(layer._group_key(group), 0, -1)}
    # Pub/sub layer: membership is process-local; it counts once Redis has the subscription.
    loop_layer = layer._get_layer()
    channel = loop_layer._get_group_channel_name(group)
    with sync_redis(redis_url) as client:
        ((_, subscribers),) = client.pubsub_numsub(channel)
    return set(loop_layer.groups.get(channel, set())) if subscribers else set()
