"""Tests of the test infrastructure itself: Redis access, key isolation, layer switching."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.conf import settings as django_settings

from tests.conftest import delete_prefixed_keys, sync_redis

LAYER_CLASSES = {
    "memory": "InMemoryChannelLayer",
    "redis": "RedisChannelLayer",
    "pubsub": "RedisPubSubChannelLayer",
}


def test_redis_answers(redis_url: str) -> None:
    with sync_redis(redis_url) as client:
        assert client.ping() is True


def test_key_prefix_shape(key_prefix: str) -> None:
    assert key_prefix.startswith("rtdtest:")
    assert key_prefix.endswith(":")
    assert len(key_prefix) == len("rtdtest:") + 12 + 1


def test_delete_prefixed_keys_removes_only_that_prefix(redis_url: str, key_prefix: str) -> None:
    sibling = key_prefix[:-1] + "-sibling:"  # shares all but the last character
    with sync_redis(redis_url) as client:
        client.mset({f"{key_prefix}{i}": i for i in range(1200)})  # several SCAN/DELETE batches
        client.set(sibling + "keep", 1)
        try:
            assert delete_prefixed_keys(redis_url, key_prefix) == 1200
            assert client.exists(key_prefix + "0", key_prefix + "1199") == 0
            assert client.get(sibling + "keep") == b"1"
        finally:
            client.delete(sibling + "keep")


@pytest.fixture
def prefix_left_behind(redis_url: str) -> Iterator[list[str]]:
    """Set up before key_prefix, so its teardown runs after key_prefix's cleanup."""
    prefixes: list[str] = []
    yield prefixes
    with sync_redis(redis_url) as client:
        for prefix in prefixes:
            assert list(client.scan_iter(match=prefix + "*")) == [], f"keys left under {prefix}"


def test_key_prefix_keys_are_deleted_after_the_test(
    prefix_left_behind: list[str], key_prefix: str, redis_url: str
) -> None:
    prefix_left_behind.append(key_prefix)
    with sync_redis(redis_url) as client:
        client.set(key_prefix + "a", 1)
        client.hset(key_prefix + "b", "field", 1)
        assert client.exists(key_prefix + "a", key_prefix + "b") == 2


def test_redis_settings(redis_settings: dict[str, Any], redis_url: str, key_prefix: str) -> None:
    assert redis_settings == django_settings.RTDELIVERY
    assert redis_settings == {
        "HISTORY_BACKEND": "redis",
        "REDIS_URL": redis_url,
        "KEY_PREFIX": key_prefix,
    }


def test_default_settings_are_in_memory() -> None:
    assert django_settings.RTDELIVERY == {"HISTORY_BACKEND": "memory"}
    layer = get_channel_layer()
    assert type(layer).__name__ == "InMemoryChannelLayer"


async def test_layer_backend_round_trip(layer_backend: str) -> None:
    layer = get_channel_layer()
    assert type(layer).__name__ == LAYER_CLASSES[layer_backend]
    channel = await layer.new_channel()
    await layer.group_add("rtdtest-group", channel)
    await layer.group_send("rtdtest-group", {"type": "rt.test", "n": 1})
    assert await layer.receive(channel) == {"type": "rt.test", "n": 1}
    await layer.group_discard("rtdtest-group", channel)


def test_switching_layers_drops_the_cached_instance(
    redis_layer_settings: Callable[[str], dict[str, Any]],
) -> None:
    redis_layer_settings("memory")
    first = get_channel_layer()
    assert get_channel_layer() is first  # cached
    config = redis_layer_settings("redis")
    second = get_channel_layer()
    assert type(second).__name__ == "RedisChannelLayer"
    assert second.prefix == config["CONFIG"]["prefix"]
    assert config["CONFIG"]["hosts"][0]["socket_timeout"] is None
    redis_layer_settings("memory")
    assert get_channel_layer() is not first


def test_free_port_is_bindable(free_port: Callable[[], int]) -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
