"""Redis clients for rtdelivery's own use (history, presence), one per event loop.

redis-py's asyncio clients belong to the loop that created them, so the cache is
keyed by loop; a server process has one loop and therefore one connection pool.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from .conf import get_settings

try:  # pragma: no branch
    import redis.asyncio as aioredis
except ImportError:  # pragma: no cover - redis is a dependency
    aioredis = None  # type: ignore[assignment]

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
    weakref.WeakKeyDictionary()
)

DEFAULT_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 5,
    "socket_timeout": 10,
    "health_check_interval": 30,
    # Retries are safe: appends carry a publish id and are idempotent (history/redis.py).
    "retry_on_timeout": True,
    # A bounded, *blocking* pool: past max_connections concurrent commands wait (up to
    # `timeout` seconds) for a free connection, where redis-py's default pool raises
    # "Too many connections" at 100 and the request would fail with 503.
    "max_connections": 50,
    "timeout": 20,
}


def get_redis() -> aioredis.Redis:
    """The running loop's Redis client for ``RTDELIVERY["REDIS_URL"]``."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        conf = get_settings()
        if not conf.redis_url:
            raise ImproperlyConfigured(
                "RTDELIVERY['REDIS_URL'] is required for the Redis history backend "
                "(e.g. 'redis://127.0.0.1:6379/0'), got None."
            )
        options = {**DEFAULT_OPTIONS, **conf.redis_options}
        pool = aioredis.BlockingConnectionPool.from_url(conf.redis_url, **options)
        client = aioredis.Redis.from_pool(pool)
        _clients[loop] = client
    return client


async def aclose_redis() -> None:
    """Close the running loop's client (tests, shutdown)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


def forget_clients(**kwargs: Any) -> None:
    """``setting_changed`` receiver: new settings mean new clients."""
    if kwargs.get("setting") in (None, "RTDELIVERY"):
        _clients.clear()
