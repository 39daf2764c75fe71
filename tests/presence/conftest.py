"""Fixtures for the presence tests: both stores, settings, identities, cleanup.

Every test ends by stopping the loop's presence refresh task, closing the loop's hub
and Redis client and forgetting the store instances, so nothing outlives the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

import rtdelivery.hub
from rtdelivery.subscriber import Item, Notice, Subscriber
from rtdelivery.testing import (
    areset,
    wait_until,  # noqa: F401  (re-exported for the tests)
)

#: Upper bound for any single wait (seconds); a healthy run needs far less.
WAIT = 10.0
BACKENDS = ("memory", "redis")

TOPICS: dict[str, dict[str, Any]] = {
    "room.*": {"subscribe": "anyone", "publish": "anyone", "presence": True},
    "plain.*": {"subscribe": "anyone", "publish": "anyone"},
    "staffroom.*": {"subscribe": "staff", "presence": True},
}


def _uses_redis(request: pytest.FixtureRequest) -> bool:
    callspec = getattr(request.node, "callspec", None)
    return "redis_settings" in request.fixturenames or (
        callspec is not None and callspec.params.get("backend") == "redis"
    )


@pytest.fixture(autouse=True)
async def _cleanup(settings: Any, request: pytest.FixtureRequest) -> AsyncIterator[None]:
    # Set up `settings` (and, for Redis tests, `key_prefix`) before this fixture, so its
    # teardown runs first: tasks stop while the test's settings apply and before the
    # test's keys are deleted (so no refresh recreates them).
    if _uses_redis(request):
        request.getfixturevalue("key_prefix")
    yield
    await areset()


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest,
    settings: Any,
    redis_layer_settings: Callable[[str], dict[str, Any]],
) -> str:
    """Runs the test with the memory store (in-memory layer) and the Redis store (Redis
    history and presence, Redis channel layer)."""
    name: str = request.param
    settings.ALLOWED_HOSTS = ["testserver"]
    if name == "redis":
        base = dict(request.getfixturevalue("redis_settings"))
        redis_layer_settings("redis")
    else:
        base = {"HISTORY_BACKEND": "memory"}
        redis_layer_settings("memory")
    settings.RTDELIVERY = {**base, "TAIL_CHECK_INTERVAL": 0, "TOPICS": TOPICS}
    return name


@pytest.fixture
def configure(settings: Any, backend: str) -> Callable[..., dict[str, Any]]:
    """configure(**extra): this backend's RTDELIVERY plus ``extra``."""
    base = dict(settings.RTDELIVERY)

    def apply(**extra: Any) -> dict[str, Any]:
        config = {**base, **extra}
        settings.RTDELIVERY = config
        return config

    return apply


def session_cookie(user: Any) -> str:
    """The session id of a fresh session logged in as ``user``."""
    client = Client()
    client.force_login(user)
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


def headers_for(user: Any = None, *, origin: bool = True) -> list[tuple[bytes, bytes]]:
    headers = [(b"host", b"testserver")]
    if origin:
        headers.append((b"origin", b"http://testserver"))
    if user is not None:
        cookie = f"{django_settings.SESSION_COOKIE_NAME}={session_cookie(user)}"
        headers.append((b"cookie", cookie.encode()))
    return headers


class Watcher:
    """A hub subscriber of some topics whose presence notices a test reads in order."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.sub = Subscriber(maxsize)
        self._buffer: list[Item] = []

    async def watch(self, topic: str) -> Watcher:
        await rtdelivery.hub.get_hub().subscribe(self.sub, topic, None)
        return self

    async def notice(self, within: float = WAIT) -> dict[str, Any]:
        """The data of the next presence notice (other items are skipped)."""
        deadline = time.monotonic() + within
        while True:
            while self._buffer:
                item = self._buffer.pop(0)
                if isinstance(item, Notice) and item.kind == "presence":
                    assert isinstance(item.data, dict), item
                    return item.data
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no presence notice within {within}s")
            try:
                self._buffer += await asyncio.wait_for(self.sub.get(), remaining)
            except TimeoutError:
                pytest.fail(f"no presence notice within {within}s")
