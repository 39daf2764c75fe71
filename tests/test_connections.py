"""rtdelivery.connections and RTDELIVERY["REDIS"]: one server by URL, Redis Sentinel and
Redis Cluster for the history and presence stores.

The settings are validated by ``conf.validate()`` (E004). The Sentinel and Cluster tests run
against real private processes (tests/redis_topologies.py): a 3-master Redis Cluster, and a
master + replica + 3 Sentinels. Every Lua script and multi-key command of the history and
presence stores runs there on topics spread over every node's slots; SCRIPT FLUSH on every
node is survived (NOSCRIPT); a cluster that cannot be reached is an outage (``Unavailable``),
not a crash.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest
from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.cluster import RedisCluster

from rtdelivery import connections
from rtdelivery.checks import check_redis_reachable
from rtdelivery.conf import E_REDIS, RedisTarget, build, get_settings, validate
from rtdelivery.connections import (
    BlockingSentinelConnectionPool,
    GatedRedisCluster,
    aclose_redis,
    get_redis,
)
from rtdelivery.core.cursors import Position
from rtdelivery.core.errors import Unavailable
from rtdelivery.history import get_history, reset_history
from rtdelivery.presence import get_presence
from rtdelivery.testing import areset
from tests.conftest import find_free_port
from tests.redis_topologies import SERVICE, Cluster, SentinelGroup
from tests.redis_topologies import redis_cluster as redis_cluster  # fixture
from tests.redis_topologies import sentinel_group as sentinel_group  # fixture

PREFIX = "rtdconn:"
SENTINELS = [("10.0.0.1", 26379), ("10.0.0.2", 26379)]
NODES = ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]


@pytest.fixture(autouse=True)
async def _close_per_loop_resources(settings: Any) -> AsyncIterator[None]:
    yield
    await areset()


def problems_of(config: dict[str, Any]) -> list[str]:
    return [str(p) for p in validate(config) if p.check_id == E_REDIS]


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("redis_setting", "expected"),
    [
        ({"url": "redis://h:6379/1"}, RedisTarget("url", url="redis://h:6379/1")),
        (
            {"sentinels": SENTINELS, "service": "mymaster"},
            RedisTarget("sentinel", sentinels=tuple(SENTINELS), service="mymaster"),
        ),
        (
            # JSON-shaped: lists instead of tuples.
            {
                "sentinels": [list(p) for p in SENTINELS],
                "service": "m",
                "sentinel_options": {"password": "s"},
            },
            RedisTarget(
                "sentinel",
                sentinels=tuple(SENTINELS),
                service="m",
                sentinel_options={"password": "s"},
            ),
        ),
        ({"cluster": NODES}, RedisTarget("cluster", nodes=tuple(NODES))),
        (
            {"cluster": ["rediss://:pw@h:7000/0"]},
            RedisTarget("cluster", nodes=("rediss://:pw@h:7000/0",)),
        ),
    ],
)
def test_redis_setting_accepted(redis_setting: dict[str, Any], expected: RedisTarget) -> None:
    config = {"HISTORY_BACKEND": "redis", "REDIS": redis_setting}
    assert validate(config) == []
    assert build(config).redis == expected


def test_redis_url_still_works_and_means_a_url_target() -> None:
    built = build({"HISTORY_BACKEND": "redis", "REDIS_URL": "redis://h:6379/0"})
    assert built.redis == RedisTarget("url", url="redis://h:6379/0")
    assert built.redis_url == "redis://h:6379/0"
    assert build({"HISTORY_BACKEND": "redis", "REDIS": {"url": "unix:///r.sock"}}).redis_url == (
        "unix:///r.sock"
    )
    assert build({}).redis is None


@pytest.mark.parametrize(
    ("redis_setting", "message"),
    [
        ("redis://h", "RTDELIVERY['REDIS'] must be a dict or None, got str."),
        ({}, "must have exactly one of 'url', 'sentinels' or 'cluster', got none."),
        (
            {"url": "redis://h", "cluster": NODES},
            "must have exactly one of 'url', 'sentinels' or 'cluster', got 'url' and 'cluster'.",
        ),
        ({"sentinel": SENTINELS}, "unknown key(s) 'sentinel' (did you mean 'sentinels'?)"),
        ({"url": "redis://h", "service": "m"}, "['service'] only applies with 'sentinels'"),
        ({"url": "http://h"}, "RTDELIVERY['REDIS']['url'] must be a URL with the scheme"),
        ({"url": 7}, "RTDELIVERY['REDIS']['url'] must be a redis:// URL string, got 7."),
        (
            {"sentinels": [], "service": "m"},
            "['sentinels'] must be a non-empty list of (host, port)",
        ),
        (
            {"sentinels": [("h", "26379")], "service": "m"},
            "pairs, got ('h', '26379') at index 0.",
        ),
        ({"sentinels": ["h:26379"], "service": "m"}, "got 'h:26379' at index 0."),
        ({"sentinels": SENTINELS}, "['service'] must be the name Sentinel monitors"),
        ({"sentinels": SENTINELS, "service": ""}, "['service'] must be the name"),
        (
            {"sentinels": SENTINELS, "service": "m", "sentinel_options": []},
            "['sentinel_options'] must be a dict",
        ),
        ({"cluster": []}, "['cluster'] must be a non-empty list of node URLs"),
        ({"cluster": "redis://h:7000"}, "['cluster'] must be a non-empty list of node URLs"),
        (
            {"cluster": ["unix:///s"]},
            "['cluster'][0] must be a URL with the scheme redis://, rediss://",
        ),
        ({"cluster": ["redis://h"]}, "(no host and port)"),
        ({"cluster": ["redis://h:7000/2"]}, "must not select a database"),
        ({"cluster": ["redis://:hunter2@h:x"]}, "'redis://:***@h:x' (no host and port)"),
    ],
)
def test_redis_setting_problems(redis_setting: Any, message: str) -> None:
    problems = problems_of({"HISTORY_BACKEND": "redis", "REDIS": redis_setting})
    assert len(problems) == 1, problems
    assert message in problems[0]
    assert "hunter2" not in problems[0]
    # The same words at runtime.
    with pytest.raises(ImproperlyConfigured, match=r"RTDELIVERY\['REDIS"):
        build({"HISTORY_BACKEND": "redis", "REDIS": redis_setting})


def test_redis_setting_checked_whatever_the_backend() -> None:
    assert problems_of({"REDIS": {"cluster": []}})
    assert problems_of({"REDIS": {"url": "redis://h"}}) == []


def test_redis_and_redis_url_together_are_ambiguous() -> None:
    assert problems_of({"REDIS_URL": "redis://a", "REDIS": {"url": "redis://b"}}) == [
        "RTDELIVERY['REDIS_URL'] and RTDELIVERY['REDIS'] are both set; expected one. "
        "Keep REDIS_URL for one server, or move it into REDIS as {'url': ...}."
    ]


def test_cluster_refuses_a_database_in_redis_options() -> None:
    config = {"REDIS": {"cluster": NODES}, "REDIS_OPTIONS": {"db": 3}}
    assert problems_of(config) == [
        "RTDELIVERY['REDIS_OPTIONS']['db'] must be 0 or absent with Redis Cluster "
        "(it has only db 0), got 3."
    ]
    assert problems_of({**config, "REDIS_OPTIONS": {"db": 0}}) == []


def test_descriptions_redact_passwords() -> None:
    assert RedisTarget("url", url="redis://:pw@h:1/0").describe() == "redis://:***@h:1/0"
    assert (
        RedisTarget("sentinel", sentinels=(("a", 1), ("b", 2)), service="m").describe()
        == "Sentinel service 'm' via a:1, b:2"
    )
    assert (
        RedisTarget("cluster", nodes=("redis://:pw@a:1", "redis://b:2")).describe()
        == "Redis Cluster via redis://:***@a:1, redis://b:2"
    )


# -- clients ----------------------------------------------------------------------------------


async def test_url_client_is_a_blocking_pool_per_loop(settings: Any, redis_url: str) -> None:
    for config in ({"REDIS_URL": redis_url}, {"REDIS": {"url": redis_url}}):
        await aclose_redis()
        settings.RTDELIVERY = {
            "HISTORY_BACKEND": "redis",
            **config,
            "REDIS_OPTIONS": {"max_connections": 7},
        }
        client = get_redis()
        assert get_redis() is client
        pool = client.connection_pool
        assert type(pool).__name__ == "BlockingConnectionPool"
        assert pool.max_connections == 7
        assert await client.ping()
    await aclose_redis()


async def test_memory_history_has_no_redis(settings: Any) -> None:
    settings.RTDELIVERY = {}
    with pytest.raises(
        ImproperlyConfigured, match="REDIS_URL'\\] \\(or RTDELIVERY\\['REDIS'\\]\\)"
    ):
        get_redis()


def cluster_settings(settings: Any, cluster: Cluster, **extra: Any) -> str:
    """Settings on the cluster under a fresh key prefix (the cluster is the module's)."""
    prefix = f"{PREFIX}{uuid4().hex[:8]}:"
    settings.RTDELIVERY = {
        "HISTORY_BACKEND": "redis",
        "REDIS": {"cluster": cluster.urls[:2]},  # the third node is discovered
        "KEY_PREFIX": prefix,
        "TOPICS": {"*": {"subscribe": "anyone", "publish": "anyone", "presence": True}},
        "TAIL_CHECK_INTERVAL": 0,
        **extra,
    }
    reset_history()
    return prefix


def topics_on_every_node(cluster: Cluster, per_node: int = 3) -> list[str]:
    """Topics whose keys ({topic} hash tag) live on each node, ``per_node`` per node."""
    found: dict[int, list[str]] = {i: [] for i in range(len(cluster.nodes))}
    index = 0
    while any(len(t) < per_node for t in found.values()):
        topic = f"room.t{index}"
        owner = cluster.slot_owner(topic)
        if len(found[owner]) < per_node:
            found[owner].append(topic)
        index += 1
    return [t for topics in found.values() for t in topics]


async def test_cluster_history_and_presence(settings: Any, redis_cluster: Cluster) -> None:
    prefix = cluster_settings(settings, redis_cluster)
    client = get_redis()
    assert isinstance(client, GatedRedisCluster)
    history = get_history()
    topics = topics_on_every_node(redis_cluster)
    now = int(time.time() * 1000)
    for topic in topics:
        for i in range(3):
            event = await history.append(topic, "message", json.dumps({"i": i}), now)
            assert event.seq == i + 1
    assert len(client.get_primaries()) == 3  # the third node was discovered
    # One pipeline over every node (heads), scripts on every node (read, latest).
    heads = await history.heads(topics)
    assert all(heads[t] is not None and heads[t].seq == 3 for t in topics)
    for topic in topics:
        head = heads[topic]
        assert head is not None
        result = await history.read(topic, Position(head.epoch, 1))
        assert [e.seq for e in result.events] == [2, 3]
        assert [e.seq for e in (await history.latest(topic, 2)).events] == [2, 3]
    # Each topic's keys are on the node that owns its hash tag.
    for topic in topics:
        node = redis_cluster.nodes[redis_cluster.slot_owner(topic)]
        with node.client() as direct:
            assert direct.exists(f"{prefix}{{{topic}}}:m", f"{prefix}{{{topic}}}:l") == 2

    # Presence: the touch script (pipelined over every node) and the leave transaction.
    presence = get_presence()
    for n, topic in enumerate(topics):
        await presence.join(topic, f"c{n}", None)
    for topic in topics:
        assert (await presence.snapshot(topic))["count"] == 1
    await presence.refresh()  # type: ignore[attr-defined]
    for n, topic in enumerate(topics):
        await presence.leave(topic, f"c{n}")
        assert (await presence.snapshot(topic))["count"] == 0


async def test_cluster_survives_script_flush(settings: Any, redis_cluster: Cluster) -> None:
    """NOSCRIPT on any node (restarted, failed over, SCRIPT FLUSH): the script is sent again."""
    cluster_settings(settings, redis_cluster)
    history, presence = get_history(), get_presence()
    topics = topics_on_every_node(redis_cluster, per_node=1)
    now = int(time.time() * 1000)
    for topic in topics:
        await history.append(topic, "message", "1", now)
        await presence.join(topic, "c1", None)
    for node in redis_cluster.nodes:
        with node.client() as direct:
            direct.script_flush()
    for topic in topics:
        assert (await history.append(topic, "message", "2", now)).seq == 2
        assert (await history.read(topic, None)).position.seq == 2
        assert (await presence.snapshot(topic))["count"] == 1
    await presence.refresh()  # type: ignore[attr-defined]


async def test_cluster_gate_waits_instead_of_failing(settings: Any, redis_cluster: Cluster) -> None:
    """More concurrent commands than max_connections wait for a slot (redis-py's own
    cluster pool would raise MaxConnectionsError)."""
    cluster_settings(settings, redis_cluster, REDIS_OPTIONS={"max_connections": 2})
    history = get_history()
    topics = topics_on_every_node(redis_cluster, per_node=2)
    now = int(time.time() * 1000)
    events = await asyncio.gather(
        *(history.append(t, "message", str(i), now) for i in range(20) for t in topics)
    )
    assert len(events) == 20 * len(topics)
    heads = await history.heads(topics)
    assert {h.seq for h in heads.values() if h is not None} == {20}


async def test_cluster_unreachable_is_an_outage(settings: Any) -> None:
    dead = [f"redis://127.0.0.1:{find_free_port()}"]
    settings.RTDELIVERY = {
        "HISTORY_BACKEND": "redis",
        "REDIS": {"cluster": dead},
        "KEY_PREFIX": PREFIX,
        "REDIS_OPTIONS": {"socket_connect_timeout": 0.5},
    }
    reset_history()
    with pytest.raises(Unavailable):
        await get_history().read("room.x", None)


def sentinel_settings(settings: Any, group: SentinelGroup, **extra: Any) -> None:
    settings.RTDELIVERY = {
        "HISTORY_BACKEND": "redis",
        "REDIS": {"sentinels": group.addresses, "service": SERVICE},
        "KEY_PREFIX": PREFIX,
        "TOPICS": {"*": {"subscribe": "anyone", "publish": "anyone", "presence": True}},
        "TAIL_CHECK_INTERVAL": 0,
        **extra,
    }
    reset_history()


async def test_sentinel_client_is_the_masters(settings: Any, sentinel_group: SentinelGroup) -> None:
    sentinel_settings(
        settings,
        sentinel_group,
        REDIS_OPTIONS={"max_connections": 3},
        REDIS={
            "sentinels": sentinel_group.addresses,
            "service": SERVICE,
            "sentinel_options": {"socket_timeout": 1.5},
        },
    )
    client = get_redis()
    # The Sentinels' own connections: rtdelivery's short defaults and sentinel_options.
    extras = connections._clients[asyncio.get_running_loop()].extras
    assert len(extras) == 3
    kwargs = extras[0].connection_pool.connection_kwargs
    assert (kwargs["socket_connect_timeout"], kwargs["socket_timeout"]) == (2, 1.5)
    assert not isinstance(client, RedisCluster)
    pool = client.connection_pool
    assert isinstance(pool, BlockingSentinelConnectionPool)
    assert pool.max_connections == 3
    history, presence = get_history(), get_presence()
    now = int(time.time() * 1000)
    # More concurrent appends than connections: they wait for one (blocking pool).
    events = await asyncio.gather(
        *(history.append("room.s", "message", str(i), now) for i in range(12))
    )
    assert sorted(e.seq for e in events) == list(range(1, 13))
    await presence.join("room.s", "c1", None)
    assert (await presence.snapshot("room.s"))["count"] == 1
    with sentinel_group.master.client() as master:
        assert master.hget(f"{PREFIX}{{room.s}}:m", "seq") == b"12"


async def test_close_closes_the_sentinel_connections(
    settings: Any, sentinel_group: SentinelGroup
) -> None:
    sentinel_settings(settings, sentinel_group)
    await get_redis().ping()
    await aclose_redis()  # no ResourceWarning (warnings are errors) for the Sentinel clients
    assert connections._clients.get(asyncio.get_running_loop()) is None


# -- W004 through Sentinel and Cluster --------------------------------------------------------


def test_w004_quiet_when_sentinel_and_cluster_answer(
    settings: Any, sentinel_group: SentinelGroup, redis_cluster: Cluster
) -> None:
    settings.RTDELIVERY = {
        "HISTORY_BACKEND": "redis",
        "REDIS": {"sentinels": sentinel_group.addresses, "service": SERVICE},
    }
    assert check_redis_reachable(databases=["default"]) == []
    settings.RTDELIVERY = {"HISTORY_BACKEND": "redis", "REDIS": {"cluster": redis_cluster.urls[:1]}}
    assert check_redis_reachable(databases=["default"]) == []


@pytest.mark.parametrize("kind", ["sentinel", "cluster"])
def test_w004_when_sentinel_or_cluster_do_not_answer(settings: Any, kind: str) -> None:
    port = find_free_port()
    if kind == "sentinel":
        redis_setting: dict[str, Any] = {"sentinels": [("127.0.0.1", port)], "service": "m"}
        where = f"Sentinel service 'm' via 127.0.0.1:{port}"
    else:
        redis_setting = {"cluster": [f"redis://127.0.0.1:{port}"]}
        where = f"Redis Cluster via redis://127.0.0.1:{port}"
    settings.RTDELIVERY = {"HISTORY_BACKEND": "redis", "REDIS": redis_setting}
    (warning,) = check_redis_reachable(databases=["default"])
    assert warning.id == "rtdelivery.W004"
    assert warning.msg.startswith(f"Redis for rtdelivery's history at {where!r} did not answer: ")
    assert warning.hint == "Start Redis or fix RTDELIVERY['REDIS']."


def test_get_settings_exposes_the_target(settings: Any) -> None:
    settings.RTDELIVERY = {
        "HISTORY_BACKEND": "redis",
        "REDIS": {"sentinels": SENTINELS, "service": "m"},
    }
    assert get_settings().redis == RedisTarget("sentinel", sentinels=tuple(SENTINELS), service="m")
