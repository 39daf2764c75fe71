"""Each serving process reports a small snapshot of itself every ``OPS_INTERVAL`` seconds.

Started by the first hub of the process (:meth:`rtdelivery.hub.Hub.start`, i.e. with the
first subscription), never at import. Each round, one pipeline to Redis:

- ``SET <prefix>{rtdelivery:ops}:p:<process id> <json> EX <3 intervals>``: the snapshot
  (connections by transport, held requests, subscriptions, its busiest topics, counter
  totals and rates, recent slow-consumer ends and gaps), gone on its own when the process is;
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

#: This process, as the page names it.
PROCESS_ID = f"{socket.gethostname()}:{os.getpid()}"
STARTED = time.time()
#: Topics per process snapshot (the busiest by local subscribers).
MAX_TOPICS = 100
#: How long the page counts as open after its last look (seconds).
VIEWER_TTL = 30

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
    """Start reporting on the running loop unless a reporter already runs (the hub that
    started it owns the task: closing the hub stops it)."""
    global _task
    interval = get_settings().ops_interval
    if not interval:
        return None
    if _task is not None and not _task.done():
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
    return {
        "id": PROCESS_ID,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": STARTED,
        "time": now,
        "interval": conf.ops_interval,
        "connections": connections,
        "held": limits.held(),
        "held_limit": conf.max_held_requests,
        "subscriptions": int(sum(values.get("subscriptions", {}).values())),
        "topics": dict(busiest),
        "topic_count": len(topics),
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

        await apublish(OPS_TOPIC, {"process": PROCESS_ID, "time": snap["time"]}, type="process")
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
        _viewers_until = time.monotonic() + VIEWER_TTL
        return
    from ..connections import get_redis

    await get_redis().set(keys(conf)[2], "1", ex=VIEWER_TTL)


def reset() -> None:
    """Forget the in-memory snapshots (tests)."""
    global _viewers_until
    _local.clear()
    _viewers_until = 0.0
