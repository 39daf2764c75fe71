"""What the live page shows: every process's snapshot, aggregated, and its topics.

Read when a staff user looks (the page fetches it when an ``rtdelivery.ops`` event says a
process reported): the processes' snapshots from Redis (:mod:`rtdelivery.ops.reporter`),
this process's own fresh, then each listed topic's head and retained history (one
history read per topic) and, for topics with presence, who is there.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..conf import get_settings
from ..core.errors import RTDeliveryError
from ..history import get_history
from ..metrics import TRANSPORTS
from . import reporter

#: Topics the page lists (the most subscribed first), recent items and connections of
#: signed-in users it shows.
MAX_TOPICS = 50
RECENT = 20
MAX_CONNECTIONS = 200


async def topic_stats(topic: str) -> dict[str, Any]:
    """The head of ``topic`` (epoch, last seq) and how many events history retains."""
    result = await get_history().read(topic, None)
    head = result.position
    retained = max(0, head.seq - result.first_seq + 1) if head.seq else 0
    return {"epoch": head.epoch, "seq": head.seq, "retained": retained}


async def _presence(topic: str) -> dict[str, Any] | None:
    if not get_settings().topic_options(topic).presence:
        return None
    from ..presence import get_presence

    try:
        snapshot = await get_presence().snapshot(topic)
    except RTDeliveryError:
        return None
    return {
        "count": snapshot["count"],
        "anonymous": snapshot["anonymous"],
        "users": [
            {"id": u["id"], "name": u["name"], "connections": u["connections"]}
            for u in snapshot["users"]
        ],
    }


async def collect() -> dict[str, Any]:
    """The page's data (JSON-ready). Runs on a loop that may use Redis (the server's)."""
    conf = get_settings()
    processes = {snap["id"]: snap for snap in await reporter.load(conf)}
    # This process as it is now (it may not have reported yet).
    own = reporter.snapshot()
    processes[own["id"]] = {**processes.get(own["id"], {}), **own, "rates": _rates(processes, own)}
    procs = sorted(processes.values(), key=lambda s: (s.get("started", 0), s["id"]))
    connections = dict.fromkeys(TRANSPORTS, 0)
    totals: dict[str, float] = {}
    rates: dict[str, float] = {}
    subscribers: dict[str, int] = {}
    slow: list[dict[str, Any]] = []
    gaps: list[dict[str, Any]] = []
    user_connections: list[dict[str, Any]] = []
    for snap in procs:
        for transport, n in snap.get("connections", {}).items():
            connections[transport] = connections.get(transport, 0) + int(n)
        for key, value in snap.get("counters", {}).items():
            totals[key] = totals.get(key, 0.0) + value
        for key, value in snap.get("rates", {}).items():
            rates[key] = round(rates.get(key, 0.0) + value, 3)
        for topic, n in snap.get("topics", {}).items():
            subscribers[topic] = subscribers.get(topic, 0) + int(n)
        slow += [{**item, "process": snap["id"]} for item in snap.get("slow_ends", [])]
        gaps += [{**item, "process": snap["id"]} for item in snap.get("gaps", [])]
        user_connections += [
            {**item, "process": snap["id"]} for item in snap.get("user_connections", [])
        ]
    listed = sorted(subscribers, key=lambda t: (-subscribers[t], t))[:MAX_TOPICS]
    stats = await asyncio.gather(*(topic_stats(t) for t in listed), return_exceptions=True)
    presence = await asyncio.gather(*(_presence(t) for t in listed), return_exceptions=True)
    topics = []
    for topic, stat, present in zip(listed, stats, presence, strict=True):
        entry: dict[str, Any] = {"topic": topic, "subscribers": subscribers[topic]}
        entry.update(stat if isinstance(stat, dict) else {"seq": None, "retained": None})
        entry["presence"] = present if isinstance(present, dict) else None
        topics.append(entry)
    return {
        "time": time.time(),
        "interval": conf.ops_interval,
        "processes": procs,
        "connections": connections,
        "held": sum(int(s.get("held", 0)) for s in procs),
        "held_limit": conf.max_held_requests,
        "subscriptions": sum(int(s.get("subscriptions", 0)) for s in procs),
        "totals": totals,
        "rates": rates,
        "topics": topics,
        "slow_ends": sorted(slow, key=lambda i: -i["time"])[:RECENT],
        "gaps": sorted(gaps, key=lambda i: -i["time"])[:RECENT],
        "user_connections": sorted(
            user_connections, key=lambda c: (c["user"], c["opened"], c["process"])
        )[:MAX_CONNECTIONS],
        "user_connection_count": sum(int(s.get("user_connection_count", 0)) for s in procs),
        "redis_down": any(s.get("redis_down") for s in procs),
    }


def _rates(stored: dict[str, dict[str, Any]], own: dict[str, Any]) -> dict[str, float]:
    """This process's rates since its last report (its stored snapshot's counters)."""
    previous = stored.get(own["id"])
    if not previous:
        return {}
    elapsed = own["time"] - previous.get("time", own["time"])
    if elapsed < 1.0:  # too short to say: the rates of its last report
        return dict(previous.get("rates", {}))
    before = previous.get("counters", {})
    return {
        key: round((value - before.get(key, 0.0)) / elapsed, 3)
        for key, value in own["counters"].items()
        if value != before.get(key, 0.0)
    }
