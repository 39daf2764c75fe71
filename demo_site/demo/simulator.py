"""The dashboard's live data: simulated sensors at a rate the visitor chooses.

One asyncio task in the server process, started with the first request, publishes a
``sensors`` event on ``dashboard.sensors`` ``rate`` times per second (0: a quiet stream, where
polling's empty answers show). The rate is global to the process: the dashboard's rate control
(``dashboard_views.rate``) sets it for every open dashboard, and a ``rate`` event on the same
topic tells them. With several server processes each runs its own simulator and rate.
"""

from __future__ import annotations

import asyncio
import contextlib
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
#: Events per second a visitor may choose (0: quiet). Bounded: the demo is public.
RATES = (0.0, 0.2, 1.0, 5.0, 20.0)
DEFAULT_RATE = 1.0


class Simulator:
    """The rate and the loop publishing at it; ``set_rate`` wakes the loop at once."""

    def __init__(self) -> None:
        self.rate = DEFAULT_RATE
        self.running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._started = time.monotonic()

    def set_rate(self, rate: float) -> None:
        if rate not in RATES:
            raise ValueError(f"Expected a rate in {RATES}, got {rate!r}.")
        self.rate = rate
        loop, changed = self._loop, self._changed
        if loop is not None and changed is not None and not loop.is_closed():
            # Thread-safe: a sync view runs in a worker thread, the loop in the server's.
            loop.call_soon_threadsafe(changed.set)

    def sensors(self) -> dict[str, Any]:
        t = time.monotonic() - self._started
        return {
            "temperature": round(21 + 3 * math.sin(t / 20) + random.uniform(-0.3, 0.3), 2),
            "humidity": round(45 + 8 * math.cos(t / 35) + random.uniform(-1, 1), 1),
            "load": round(max(0.0, random.gauss(0.4, 0.15)), 3),
            "rate": self.rate,
            **self.server_stats(),
        }

    @staticmethod
    def server_stats() -> dict[str, int]:
        """This process's events published so far and requests held open (long polls, streams)."""
        try:
            published = int(metrics.snapshot().get("events_published", 0))
            return {"published": published, "held_requests": limits.held()}
        except Exception:  # the stats are a bonus: the sensors go out without them
            logger.debug("No server stats", exc_info=True)
            return {}

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._changed = changed = asyncio.Event()
        self.running = True
        due = time.monotonic()
        try:
            while True:
                rate = self.rate
                wait = None if rate <= 0 else due - time.monotonic()
                if wait is None or wait > 0:
                    with contextlib.suppress(TimeoutError):  # the time for the next event
                        await asyncio.wait_for(changed.wait(), wait)
                    if changed.is_set():
                        changed.clear()
                        due = time.monotonic()  # a new rate starts now
                        continue
                try:
                    await apublish(SENSORS_TOPIC, self.sensors(), type="sensors")
                except Exception:
                    logger.warning("Simulator publish failed", exc_info=True)
                # On schedule, without a burst to catch up after a slow publish.
                due = max(due + 1 / rate, time.monotonic())
        finally:
            self.running = False


#: The process's simulator (state only: nothing runs until the middleware starts it).
simulator = Simulator()


async def run() -> None:
    await simulator.run()


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
