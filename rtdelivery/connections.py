"""Redis clients for rtdelivery's own use (history, presence), one per event loop.

redis-py's asyncio clients belong to the loop that created them, so the cache is
keyed by loop; a server process has one loop and therefore one connection pool.

Three kinds of target (``RTDELIVERY["REDIS_URL"]`` or ``RTDELIVERY["REDIS"]``,
:class:`~rtdelivery.redis_config.RedisTarget`):

- one server by URL: a ``Redis`` on a blocking pool;
- Redis Sentinel: the ``Redis`` of the service's current master (redis-py's
  ``Sentinel.master_for``), on a blocking Sentinel pool, so after a failover the next
  connection goes to the promoted replica;
- Redis Cluster: a ``RedisCluster`` whose commands wait for a free slot instead of
  failing past ``max_connections`` (redis-py's cluster pools never wait).

Every key rtdelivery uses in one command or script shares its topic's hash tag, so each
call touches one cluster slot; redis-py routes EVAL/EVALSHA by their keys and sends
SCRIPT LOAD to every primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from .conf import Settings, get_settings
from .redis_config import RedisTarget

try:  # pragma: no branch
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
    from redis.asyncio.connection import BlockingConnectionPool
    from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisClusterException
except ImportError:  # pragma: no cover - redis is a dependency
    aioredis = None  # type: ignore[assignment]

#: What :func:`get_redis` returns: the history and presence code uses the commands
#: both have (``evalsha``, ``eval``, ``script_load``, ``pipeline``, ``hmget``, …).
Client: TypeAlias = "aioredis.Redis | RedisCluster"

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

#: Options of the connections to the Sentinels themselves (short: they answer at once).
SENTINEL_DEFAULTS: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 2}


@dataclass(eq=False)
class _Entry:
    client: Client
    #: Extra clients to close with it (the Sentinel connections).
    extras: list[Any] = field(default_factory=list)


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Entry] = weakref.WeakKeyDictionary()


def get_redis() -> Client:
    """The running loop's Redis client for ``RTDELIVERY["REDIS_URL"]`` / ``["REDIS"]``."""
    loop = asyncio.get_running_loop()
    entry = _clients.get(loop)
    if entry is None:
        entry = _clients[loop] = _connect(get_settings())
    return entry.client


async def aclose_redis() -> None:
    """Close the running loop's client (tests, shutdown)."""
    entry = _clients.pop(asyncio.get_running_loop(), None)
    if entry is not None:
        await entry.client.aclose()
        for extra in entry.extras:
            await extra.aclose()


def forget_clients(**kwargs: Any) -> None:
    """``setting_changed`` receiver: new settings mean new clients."""
    if kwargs.get("setting") in (None, "RTDELIVERY"):
        _clients.clear()


# -- building clients ---------------------------------------------------------------------------


def _target(conf: Settings) -> RedisTarget:
    if conf.redis is None:
        raise ImproperlyConfigured(
            "RTDELIVERY['REDIS_URL'] (or RTDELIVERY['REDIS']) is required for the Redis "
            "history backend (e.g. 'redis://127.0.0.1:6379/0'), got None."
        )
    return conf.redis


def _connect(conf: Settings) -> _Entry:
    target = _target(conf)
    options = {**DEFAULT_OPTIONS, **conf.redis_options}
    if target.kind == "sentinel":
        return _connect_sentinel(target, options)
    if target.kind == "cluster":
        return _Entry(_connect_cluster(target, options))
    assert target.url is not None
    pool = aioredis.BlockingConnectionPool.from_url(target.url, **options)
    return _Entry(aioredis.Redis.from_pool(pool))


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's Sentinel pool (connections go to the service's current master) with
    the blocking pool's wait for a free connection (``max_connections``, ``timeout``)."""


def _connect_sentinel(target: RedisTarget, options: dict[str, Any]) -> _Entry:
    # The Sentinels get their own options (REDIS_OPTIONS are the master's): short timeouts,
    # so a Sentinel that does not answer is soon passed over for the next one.
    sentinel_options = {**SENTINEL_DEFAULTS, **target.sentinel_options}
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_options)
    assert target.service is not None
    client = sentinel.master_for(
        target.service, connection_pool_class=BlockingSentinelConnectionPool, **options
    )
    return _Entry(client, list(sentinel.sentinels))


class _ClusterGate:
    """At most ``size`` commands (or pipelines) of one client in flight; the rest wait up
    to ``timeout`` seconds, like a blocking pool (redis-py's cluster pools raise instead)."""

    def __init__(self, size: int, timeout: float | None) -> None:
        self.semaphore = asyncio.Semaphore(size)
        self.timeout = timeout

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self.timeout):
                await self.semaphore.acquire()
        except TimeoutError as exc:
            raise RedisConnectionError("No connection available.") from exc
        try:
            yield
        except RedisClusterException as exc:
            # "Cannot connect to any node", "slot not covered": an outage, not a bug.
            # RedisClusterException is no RedisError, so say it in redis-py's terms.
            raise RedisConnectionError(str(exc)) from exc
        finally:
            self.semaphore.release()


class GatedRedisCluster(RedisCluster):
    """``RedisCluster`` whose commands and pipelines pass through a :class:`_ClusterGate`."""

    def __init__(self, *args: Any, gate: _ClusterGate, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.gate.slot():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        return GatedClusterPipeline(self, transaction)  # type: ignore[abstract]


class GatedClusterPipeline(ClusterPipeline):
    """A cluster pipeline through the gate, with EVALSHA allowed.

    redis-py blocks EVALSHA in cluster pipelines because a script may touch keys of
    several slots and may be missing on some node. rtdelivery's scripts touch one topic's
    keys (one hash tag, one slot; redis-py routes EVALSHA by its keys) and every caller
    handles NOSCRIPT by loading the script (SCRIPT LOAD goes to every primary) and
    running the command again.
    """

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        client: GatedRedisCluster = self.cluster_client  # type: ignore[assignment]
        async with client.gate.slot():
            return await super().execute(raise_on_error, allow_redirections)


def _connect_cluster(target: RedisTarget, options: dict[str, Any]) -> RedisCluster:
    options = dict(options)
    size = int(options.pop("max_connections"))
    timeout = options.pop("timeout")
    # RedisCluster retries connection errors and timeouts itself (and takes no such flag).
    options.pop("retry_on_timeout", None)
    first, *others = target.nodes
    startup = [ClusterNode(*_host_port(url)) for url in others]
    # Per node: room for the gate's commands plus the cluster's own topology queries.
    return GatedRedisCluster.from_url(
        first,
        startup_nodes=startup or None,
        max_connections=size * 2,
        gate=_ClusterGate(size, timeout),
        **options,
    )


# -- a synchronous PING (system check W004) -------------------------------------------------------


def ping(conf: Settings, timeout: float = 2.0) -> None:
    """PING the configured Redis once, synchronously (raises what redis-py raises).

    For Sentinel this asks the Sentinels for the master and pings it; for a Cluster it
    discovers the nodes from the given ones and pings the cluster's primaries.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.cluster import ClusterNode as SyncClusterNode
    from redis.cluster import RedisCluster as SyncRedisCluster
    from redis.retry import Retry
    from redis.sentinel import Sentinel as SyncSentinel

    target = _target(conf)
    # One try, bounded: a check answers within about `timeout`, not after retries.
    limits = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    once = {**limits, "retry": Retry(NoBackoff(), 0)}
    closers: list[Callable[[], Any]] = []
    try:
        if target.kind == "sentinel":
            sentinel = SyncSentinel(
                list(target.sentinels), sentinel_kwargs={**target.sentinel_options, **once}
            )
            closers.extend(s.close for s in sentinel.sentinels)
            master = sentinel.master_for(
                target.service, **{**_sync_options(conf.redis_options), **once}
            )
            closers.append(master.close)
            master.ping()
        elif target.kind == "cluster":
            first, *others = target.nodes
            cluster = SyncRedisCluster.from_url(
                first,
                startup_nodes=[SyncClusterNode(*_host_port(u)) for u in others] or None,
                **{**_sync_options(conf.redis_options), **once},
            )
            closers.append(cluster.close)
            cluster.ping(target_nodes=SyncRedisCluster.PRIMARIES)
        else:
            assert target.url is not None
            client = redis.Redis.from_url(target.url, **once)
            closers.append(client.close)
            client.ping()
    finally:
        for close in closers:
            close()


def _host_port(url: str) -> tuple[str, int]:
    """Host and port of a cluster node URL (conf.validate() made sure both are there)."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def _sync_options(options: Any) -> dict[str, Any]:
    return {
        k: v
        for k, v in dict(options).items()
        if k not in ("max_connections", "timeout", "retry_on_timeout")
    }
