"""Publisher process: N events at R per second (0: as fast as possible).

Each event's data is ``{"i": n, "t": publish time, "pad": "..."}`` so receivers can
check order and completeness and measure publish → receive latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any


async def run(args: argparse.Namespace) -> dict[str, Any]:
    pad = "x" * args.pad
    if args.target == "rtdelivery":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
        import django

        django.setup()
        from rtdelivery import apublish

        async def send(data: dict[str, Any]) -> None:
            await apublish(args.topic, data, type="bench")

    elif args.target == "naive":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
        import django

        django.setup()
        from channels.layers import get_channel_layer

        from .naive import GROUP

        layer = get_channel_layer("naive")

        async def send(data: dict[str, Any]) -> None:
            await layer.group_send(GROUP, {"type": "bench.event", "text": json.dumps(data)})

    elif args.target in ("eventstream", "bridge"):
        from .eventstream import channel, configure

        configure(args.target)
        import django

        django.setup()
        from django_eventstream import send_event

        es_channel = channel()

        async def send(data: dict[str, Any]) -> None:
            # As a project calls it (sync); off the loop, as from a worker.
            await asyncio.to_thread(send_event, es_channel, "message", data)

    else:
        import redis.asyncio as aioredis

        from .floor import CHANNEL

        client = aioredis.Redis.from_url(args.redis)

        async def send(data: dict[str, Any]) -> None:
            await client.publish(CHANNEL, json.dumps(data))

    start = time.monotonic()
    for i in range(args.count):
        if args.rate > 0:
            delay = start + i / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await send({"i": i, "t": time.time(), "pad": pad})
    return {"published": args.count, "seconds": round(time.monotonic() - start, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--target",
        choices=["rtdelivery", "naive", "floor", "eventstream", "bridge"],
        required=True,
    )
    parser.add_argument("--topic", default="bench")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--pad", type=int, default=64)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    print("RESULT " + json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
