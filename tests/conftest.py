"""Shared fixtures: Redis access with per-test key isolation, channel layer switching, ports.

Tests that need Redis fail (never skip) when it is unreachable: run them through
`make test` (scripts/with-redis.sh provides one) or set REDIS_URL.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

import pytest
import redis
from channels.layers import channel_layers

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
LAYER_BACKENDS = ("memory", "redis", "pubsub")


def find_free_port() -> int:
    """An unused loopback TCP port (free when asked; bind it soon)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sync_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)


def delete_prefixed_keys(url: str, prefix: str) -> int:
    """Delete every key starting with `prefix` (SCAN, fine in tests). Returns how many."""
    deleted = 0
    with sync_redis(url) as client:
        batch: list[bytes] = []
        for key in client.scan_iter(match=prefix + "*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += client.delete(*batch)
                batch.clear()
        if batch:
            deleted += client.delete(*batch)
    return deleted


def layer_config(name: str, redis_url: str = "", prefix: str = "") -> dict[str, Any]:
    """CHANNEL_LAYERS["default"] for one of LAYER_BACKENDS."""
    if name == "memory":
        return {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    if name == "redis":
        return {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # socket_timeout None: see DESIGN "Known traps" (redis-py 8.1 + channels-redis).
            "CONFIG": {
                "hosts": [{"address": redis_url, "socket_timeout": None}],
                "prefix": prefix + "layer",
            },
        }
    if name == "pubsub":
        return {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": redis_url}], "prefix": prefix + "layer"},
        }
    raise ValueError(f"unknown layer backend {name!r}; expected one of {LAYER_BACKENDS}")


def reset_channel_layers() -> None:
    """Forget channels' cached layer instances so the next get_channel_layer() builds anew.

    channels caches instances in `channel_layers.backends` (channels.layers.ChannelLayerManager);
    it also resets that dict on `setting_changed` for CHANNEL_LAYERS, but clearing explicitly
    keeps this independent of how the setting was changed. Redis connections of a dropped layer
    are closed by channels-redis when their event loop closes.
    """
    channel_layers.backends.clear()


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    error = None
    try:
        with sync_redis(url) as client:
            client.ping()
    except redis.RedisError as exc:
        error = f"{type(exc).__name__}: {exc}"
    if error is not None:  # outside the except block: no chained traceback in the report
        pytest.fail(
            f"Redis at {url} does not answer PING ({error}). These tests need Redis: run them "
            "with `make test` (it starts a private redis-server if needed), or start Redis, "
            "or set REDIS_URL to a reachable one.",
            pytrace=False,
        )
    return url


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix unique to this test; its keys are deleted afterwards."""
    prefix = f"rtdtest:{uuid4().hex[:12]}:"
    yield prefix
    delete_prefixed_keys(redis_url, prefix)


@pytest.fixture
def redis_settings(settings: Any, redis_url: str, key_prefix: str) -> dict[str, Any]:
    """RTDELIVERY on Redis history, isolated by key_prefix. Extend by assigning a new dict."""
    config = {"HISTORY_BACKEND": "redis", "REDIS_URL": redis_url, "KEY_PREFIX": key_prefix}
    settings.RTDELIVERY = config
    return config


@pytest.fixture
def redis_layer_settings(
    settings: Any, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], dict[str, Any]]]:
    """A function use(name) that points CHANNEL_LAYERS["default"] at one of LAYER_BACKENDS.

    Redis-backed layers get a per-test prefix (key_prefix + "layer"). Cached layer instances
    are dropped on every switch and after the test.
    """

    def use(name: str) -> dict[str, Any]:
        if name == "memory":
            config = layer_config(name)
        else:
            url = request.getfixturevalue("redis_url")
            prefix = request.getfixturevalue("key_prefix")
            config = layer_config(name, url, prefix)
        reset_channel_layers()
        settings.CHANNEL_LAYERS = {"default": config}
        reset_channel_layers()
        return config

    yield use
    reset_channel_layers()


@pytest.fixture(params=LAYER_BACKENDS)
def layer_backend(
    request: pytest.FixtureRequest, redis_layer_settings: Callable[[str], dict[str, Any]]
) -> str:
    """Runs the test once per channel layer backend ("memory", "redis", "pubsub")."""
    name: str = request.param
    redis_layer_settings(name)
    return name


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Call it for an unused loopback TCP port: `port = free_port()`."""
    return find_free_port
