"""The dashboard's live data: simulated sensors and the server's own delivery stats.

Runs as one asyncio task in the server process, started with the first request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from typing import Any

from django.conf import settings

from rtdelivery import apublish, metrics
from rtdelivery.transports import limits

logger = logging.getLogger("demo.simulator")

SENSORS_TOPIC = "dashboard.sensors"
STATS_TOPIC = "dashboard.stats"


async def run(interval: float = 1.0) -> None:
    started = time.monotonic()
    tick = 0
    while True:
        tick += 1
        t = time.monotonic() - started
        try:
            await apublish(
                SENSORS_TOPIC,
                {
                    "temperature": round(21 + 3 * math.sin(t / 20) + random.uniform(-0.3, 0.3), 2),
                    "humidity": round(45 + 8 * math.cos(t / 35) + random.uniform(-1, 1), 1),
                    "load": round(max(0.0, random.gauss(0.4, 0.15)), 3),
                },
                type="sensors",
            )
            if tick % 2 == 0:
                counters = metrics.snapshot()
                await apublish(
                    STATS_TOPIC,
                    {
                        "published": counters.get("events_published", 0),
                        "queued": counters.get("events_queued", 0),
                        "gaps_filled": counters.get("gaps_filled", 0),
                        "slow_consumers": counters.get("slow_consumers", 0),
                        "held_requests": limits.held(),
                    },
                    type="stats",
                )
        except Exception:
            logger.warning("Simulator publish failed", exc_info=True)
        await asyncio.sleep(interval)


class SimulatorMiddleware:
    """ASGI wrapper starting the simulator task once, inside the server's event loop."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.task is None and scope["type"] in ("http", "websocket"):
            if getattr(settings, "DEMO_SIMULATOR", False):
                self.task = asyncio.create_task(run(), name="demo-simulator")
            else:
                self.task = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
        await self.app(scope, receive, send)
