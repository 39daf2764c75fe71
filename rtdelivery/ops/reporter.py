"""Each serving process reports a small snapshot of itself every ``OPS_INTERVAL`` seconds.

Started by the process's first rtdelivery request (:func:`rtdelivery.transports.serving.
run_handler`: a poll, a publish, a stream) or its first hub (a WebSocket's subscription),
whichever comes first, never at import. Each round, one pipeline to Redis:

- ``SET <prefix>{rtdelivery:ops}:p:<process id> <json> EX <3 intervals>``: the snapshot
  (connections by transport, held requests, subscriptions, its busiest topics, the first
  :data:`MAX_CONNECTIONS` connections of signed-in users, counter totals and rates, recent
  slow-consumer ends and gaps), gone on its own when the process is;
- ``ZADD <prefix>{rtdelivery:ops}:procs`` (the index the page reads, by expiry);
- ``GET <prefix>{rtdelivery:ops}:viewers``: set by the live page while it is open; only
  then does the process also publish a small ``process`` event on the ``rtdelivery.ops``
  topic, which makes the open pages refresh.

Nothing is written per event. With the in-memory history (one process) the snapshot
stays in memory. The round also flushes the delivery counts to Prometheus
(:func:`rtdelivery.metrics.flush`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from typing import Any

from .. import metrics, outage
from ..conf import Settings, get_settings
from . import OPS_TOPIC

logger = logging.getLogger("rtdelivery.ops")

#: Topics per process snapshot (the busiest by local subscribers).
MAX_TOPICS = 100
#: Connections of signed-in users per process snapshot (those the page can end one by one).
MAX_CONNECTIONS = 200
#: How long the page counts as open after its last look (seconds), at least: three
#: reporting intervals when that is longer (:func:`viewer_ttl`).
VIEWER_TTL = 30


class _Process:
    """This process's id and start time, computed again in a forked child (a worker of
    gunicorn or ``uvicorn --workers`` imports rtdelivery before the fork)."""

    def __init__(self) -> None:
        self.pid = -1
        self.id = ""
        self.started = 0.0

    def current(self) -> _Process:
        pid = os.getpid()
        if pid != self.pid:
            self.pid, self.started = pid, time.time()
            self.id = f"{socket.gethostname()}:{pid}"
        return self


_process = _Process()


def process_id() -> str:
    """This process, as the page names it: ``<host>:<pid>``."""
    return _process.current().id


def __getattr__(name: str) -> Any:
    # PROCESS_ID and STARTED as attributes, always this process's (not the parent's).
    if name == "PROCESS_ID":
        return process_id()
    if name == "STARTED":
        return _process.current().started
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def viewer_ttl(conf: Settings) -> int:
    """How long the page counts as open after its last look: processes report every
    ``OPS_INTERVAL``, so it must outlast a few of their rounds."""
    return int(max(VIEWER_TTL, 3 * (conf.ops_interval or 0)))


#: Counters whose totals and rates a snapshot carries (name, label to split by or None).
COUNTERS: tuple[tuple[str, str | None], ...] = (
    ("events_published", None),
    ("events_delivered", "transport"),
    ("connections_opened", "transport"),
    ("gaps_detected", None),
    ("gap_events_repaired", None),
    ("not_recovered", "source"),
    ("slow_consumer_ends", "transport"),
    ("throttled", "code"),
    ("refusals", "code"),
    ("redis_errors", None),
    ("redis_outages", None),
    ("history_reads", None),
    ("duplicates_dropped", None),
    ("publish_duplicates", None),
    ("broadcast_failures", None),
    ("delivery_latency_seconds_count", None),
    ("delivery_latency_seconds_sum", None),
)

_task: asyncio.Task[None] | None = None
#: The latest snapshot per process (in-memory history: this process only).
_local: dict[str, tuple[float, dict[str, Any]]] = {}
_viewers_until = 0.0


def keys(conf: Settings) -> tuple[str, str, str]:
    """(snapshot key prefix, index, viewers) under one hash tag: one cluster slot. The tag
    has a ``:``, which no topic name has, so it never meets a topic's history keys."""
    base = f"{conf.key_prefix}{{rtdelivery:ops}}"
    return base + ":p:", base + ":procs", base + ":viewers"


def uses_redis(conf: Settings) -> bool:
    return conf.history_backend == "redis"


def start() -> asyncio.Task[None] | None:
    """Start reporting on the running loop unless a reporter already runs; the new task,
    or None. Cheap enough for every request (one check when it runs). A hub that started
    it owns the task (closing the hub stops it); the next request or hub starts another."""
    global _task
    if _task is not None and not _task.done() and not _task.get_loop().is_closed():
        return None
    interval = get_settings().ops_interval
    if not interval:
        return None
    _task = asyncio.create_task(_run(interval), name="rtdelivery-ops-reporter")
    return _task


async def _run(interval: float) -> None:
    previous: tuple[float, dict[str, float]] | None = None
    while True:
        await asyncio.sleep(interval)
        try:
            previous = await report(previous)
        except asyncio.CancelledError:
            raise
        except outage.BACKEND_ERRORS as exc:
            outage.record_failure(exc, "ops report")
        except Exception:
            logger.warning("Could not report this process's snapshot", exc_info=True)


def totals() -> dict[str, float]:
    """Flat counter totals of this process: ``name`` and ``name.<label value>``."""
    values = metrics.read()
    flat: dict[str, float] = {}
    for name, split in COUNTERS:
        series = values.get(name, {})
        flat[name] = sum(series.values())
        if split is not None:
            for labels, value in series.items():
                part = dict(labels).get(split)
                if part is not None:
                    flat[f"{name}.{part}"] = flat.get(f"{name}.{part}", 0.0) + value
    return flat


def snapshot(previous: tuple[float, dict[str, float]] | None = None) -> dict[str, Any]:
    """This process now: what the page shows of it."""
    from ..hub import _hubs
    from ..transports import limits

    conf = get_settings()
    process = _process.current()
    now = time.time()
    metrics.held_requests_limit.set(conf.max_held_requests)
    counts = totals()
    rates: dict[str, float] = {}
    if previous is not None and now > previous[0]:
        elapsed = now - previous[0]
        rates = {
            k: round((v - previous[1].get(k, 0.0)) / elapsed, 3)
            for k, v in counts.items()
            if v != previous[1].get(k, 0.0)
        }
    values = metrics.read()
    connections = {
        dict(labels).get("transport", ""): int(v)
        for labels, v in values.get("connections", {}).items()
    }
    topics: dict[str, int] = {}
    for hub in list(_hubs.values()):
        for topic in hub.topics:
            topics[topic] = topics.get(topic, 0) + hub.local_subscribers(topic)
    busiest = sorted(topics.items(), key=lambda item: (-item[1], item[0]))[:MAX_TOPICS]
    from .. import access

    user_connections, user_connection_count = access.listed(MAX_CONNECTIONS)
    return {
        "id": process.id,
        "pid": process.pid,
        "host": socket.gethostname(),
        "started": process.started,
        "time": now,
        "interval": conf.ops_interval,
        "connections": connections,
        "held": limits.held(),
        "held_limit": conf.max_held_requests,
        "subscriptions": int(sum(values.get("subscriptions", {}).values())),
        "topics": dict(busiest),
        "topic_count": len(topics),
        "user_connections": user_connections,
        "user_connection_count": user_connection_count,
        "counters": counts,
        "rates": rates,
        "slow_ends": list(metrics.recent_slow_ends),
        "gaps": list(metrics.recent_gaps),
        "redis_down": outage.is_down(),
    }


async def report(
    previous: tuple[float, dict[str, float]] | None = None,
) -> tuple[float, dict[str, float]]:
    """Write this process's snapshot (and ping open pages); returns what the next round's
    rates are measured from."""
    conf = get_settings()
    snap = snapshot(previous)
    interval = conf.ops_interval or 5.0
    ttl = max(3 * interval, interval + 10)
    watched = await save(conf, snap, ttl)
    if watched:
        from ..publishing import apublish

        await apublish(OPS_TOPIC, {"process": snap["id"], "time": snap["time"]}, type="process")
    return snap["time"], snap["counters"]


async def save(conf: Settings, snap: dict[str, Any], ttl: float) -> bool:
    """Store ``snap`` for ``ttl`` seconds; whether a live page is open."""
    now = snap["time"]
    if not uses_redis(conf):
        _local[snap["id"]] = (now + ttl, snap)
        return _viewers_until > time.monotonic()
    from ..connections import get_redis

    prefix, index, viewers = keys(conf)
    client = get_redis()
    async with client.pipeline(transaction=False) as pipe:
        pipe.set(prefix + snap["id"], json.dumps(snap, separators=(",", ":")), ex=int(ttl))
        pipe.zadd(index, {snap["id"]: (now + ttl) * 1000})
        pipe.zremrangebyscore(index, "-inf", now * 1000)
        pipe.expire(index, int(ttl) * 2)
        pipe.get(viewers)
        replies = await pipe.execute()
    outage.record_success()
    return bool(replies[-1])


async def load(conf: Settings | None = None) -> list[dict[str, Any]]:
    """Every live process's latest snapshot, oldest started first."""
    conf = conf or get_settings()
    now = time.time()
    if not uses_redis(conf):
        snaps = [snap for until, snap in _local.values() if until > now]
    else:
        from ..connections import get_redis

        prefix, index, _ = keys(conf)
        client = get_redis()
        found: Any = await client.zrangebyscore(index, now * 1000, "+inf")
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in found]
        raw = await client.mget([prefix + i for i in ids]) if ids else []
        snaps = []
        for item in raw:
            if item:
                try:
                    snaps.append(json.loads(item))
                except ValueError:
                    continue
    return sorted(snaps, key=lambda s: (s.get("started", 0), s.get("id", "")))


async def mark_viewed(conf: Settings | None = None) -> None:
    """The live page is open: processes publish on the ops topic for the next while."""
    global _viewers_until
    conf = conf or get_settings()
    if not uses_redis(conf):
        _viewers_until = time.monotonic() + viewer_ttl(conf)
        return
    from ..connections import get_redis

    await get_redis().set(keys(conf)[2], "1", ex=viewer_ttl(conf))


def reset() -> None:
    """Forget the in-memory snapshots (tests)."""
    global _viewers_until
    _local.clear()
    _viewers_until = 0.0


def _after_fork() -> None:
    """In a forked child: the parent's reporter task (on a loop this process does not
    run) and snapshots are not this process's."""
    global _task
    _task = None
    reset()


os.register_at_fork(after_in_child=_after_fork)
