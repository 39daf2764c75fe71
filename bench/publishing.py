"""Publish throughput: what one publisher process pays per event.

One process publishes ``--count`` events round-robin over ``--topics`` topics, one at a time
(``--concurrency 1``) or that many at once (``asyncio.gather``), and reports its own CPU time
(user + system) and Redis round trips (requests written to a Redis connection, a pipeline
counting once) per publish. Targets: ``rtdelivery`` (``apublish``) or ``raw`` (redis-py
asyncio ``PUBLISH`` of the same JSON, the baseline). ``--subscribe`` runs the other side: a
process that subscribes to every topic (rtdelivery's hub, or Redis pub/sub for ``raw``) and
counts what arrives, so the publisher's groups have a member.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

#: The first publishes open connections and load scripts: not measured.
WARMUP = 200


def topics(n: int) -> list[str]:
    return [f"bench.p{i}" for i in range(n)]


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()


class _RoundTrips:
    """Counts requests written to Redis connections (one per command, one per pipeline)."""

    def __init__(self) -> None:
        from redis.asyncio.connection import AbstractConnection

        self.count = 0
        original = AbstractConnection.send_packed_command
        counter = self

        async def counted(self: Any, command: Any, check_health: bool = True) -> None:
            counter.count += 1
            await original(self, command, check_health)

        AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]


def _sender(args: argparse.Namespace) -> tuple[Callable[[str, str], Awaitable[Any]], Any]:
    if args.target == "rtdelivery":
        _django()
        from rtdelivery import apublish

        async def send(topic: str, text: str) -> Any:
            return await apublish(topic, text, type="bench")

        return send, None
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(args.redis)

    async def send_raw(topic: str, text: str) -> Any:
        # The data as rtdelivery's event would carry it: the same JSON text.
        return await client.publish(args.prefix + topic, json.dumps(text))

    return send_raw, client


async def publish(args: argparse.Namespace) -> dict[str, Any]:
    trips = _RoundTrips()
    send, client = _sender(args)
    names = topics(args.topics)
    pad = "x" * args.pad

    async def run(start: int, count: int) -> None:
        step = max(1, args.concurrency)
        for base in range(start, start + count, step):
            batch = range(base, min(base + step, start + count))
            if step == 1:
                await send(names[base % len(names)], f"{base}:{pad}")
            else:
                await asyncio.gather(*(send(names[i % len(names)], f"{i}:{pad}") for i in batch))

    await run(0, WARMUP)
    trips.count = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await run(WARMUP, args.count)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if client is not None:
        await client.aclose()
    return {
        "publishes": args.count,
        "cpu_us_per_publish": round(cpu * 1e6 / args.count, 1),
        "round_trips_per_publish": round(trips.count / args.count, 3),
        "publishes_per_s": round(args.count / wall, 1),
        "seconds": round(wall, 3),
    }


async def subscribe(args: argparse.Namespace) -> dict[str, Any]:
    """Subscribe to every topic; count events until ``--expect`` arrived or ``--timeout``."""
    names = topics(args.topics)
    received = 0
    deadline = time.monotonic() + args.timeout
    if args.target == "rtdelivery":
        _django()
        from rtdelivery.hub import get_hub
        from rtdelivery.subscriber import Subscriber

        hub = get_hub()
        sub = Subscriber(maxsize=1_000_000)
        for name in names:
            await hub.subscribe(sub, name)
        print("READY", flush=True)

        async def take() -> int:
            return sum(1 for item in await sub.get() if getattr(item, "seq", None))

    else:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(args.redis)
        pubsub = client.pubsub()
        await pubsub.subscribe(*(args.prefix + name for name in names))
        for _ in names:  # the subscribe confirmations
            await pubsub.get_message(timeout=5)
        print("READY", flush=True)

        async def take() -> int:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            return 1 if message else 0

    while received < args.expect and time.monotonic() < deadline:
        try:
            received += await asyncio.wait_for(take(), max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break
    return {"received": received}


# -- the scenario (run by bench.runner: ``python -m bench --only publish``) ---------------------


@dataclass
class PublishCase:
    target: str  # rtdelivery | raw
    topics: int
    subscribers: int  # subscriber processes (0 or 1)
    concurrency: int
    count: int
    timeout: float = 600.0


def cases(quick: bool) -> list[PublishCase]:
    count = 3000 if not quick else 30
    rows = []
    for subscribers in (0, 1):
        for concurrency in (1, 32):
            for target in ("raw", "rtdelivery"):
                rows.append(PublishCase(target, 100, subscribers, concurrency, count))
    return rows


def _cmd(case: PublishCase, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.publishing",
        "--target",
        case.target,
        "--topics",
        str(case.topics),
        *extra,
    ]


def _result(proc: subprocess.Popen[str], deadline: float) -> dict[str, Any]:
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bench.publishing exited ({proc.wait()}) without a RESULT")
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise RuntimeError("no RESULT in time")


def run_case(case: PublishCase, env: dict[str, str]) -> dict[str, Any]:
    """Run one case: the subscriber process (if any), then the publisher; by PID, bounded."""
    deadline = time.monotonic() + case.timeout
    subs: list[subprocess.Popen[str]] = []
    expect = WARMUP + case.count
    try:
        for _ in range(case.subscribers):
            sub = subprocess.Popen(
                _cmd(case, "--subscribe", "--expect", str(expect), "--timeout", str(case.timeout)),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            subs.append(sub)
            assert sub.stdout is not None
            if sub.stdout.readline().strip() != "READY":
                raise RuntimeError("the subscriber process did not get ready")
        pub = subprocess.run(
            _cmd(case, "--count", str(case.count), "--concurrency", str(case.concurrency)),
            env=env,
            capture_output=True,
            text=True,
            timeout=case.timeout,
            check=False,
        )
        line = next((x for x in pub.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"the publisher failed: {pub.stderr[-800:]}")
        result: dict[str, Any] = {**asdict(case), **json.loads(line[7:])}
        result["delivered"] = sum(_result(sub, deadline)["received"] for sub in subs)
        result["expected"] = expect * case.subscribers
        return result
    finally:
        for sub in subs:
            if sub.poll() is None:
                sub.terminate()
                try:
                    sub.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    sub.kill()
                    sub.wait(timeout=10)
            if sub.stdout is not None:
                sub.stdout.close()


COLUMNS = [
    ("target", "target"),
    ("topics", "topics"),
    ("subscribers", "subscriber procs"),
    ("concurrency", "concurrency"),
    ("publishes", "publishes"),
    ("publishes_per_s", "publishes/s"),
    ("cpu_us_per_publish", "CPU µs/publish"),
    ("round_trips_per_publish", "round trips/publish"),
    ("cpu_vs_raw", "CPU vs raw"),
    ("delivered", "delivered"),
    ("expected", "expected"),
]


def with_ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's CPU per publish over raw PUBLISH's with the same subscribers/concurrency."""
    raw = {
        (r["subscribers"], r["concurrency"]): r["cpu_us_per_publish"]
        for r in results
        if r.get("target") == "raw" and "error" not in r
    }
    for r in results:
        base = raw.get((r.get("subscribers"), r.get("concurrency")))
        if "error" not in r and base:
            r["cpu_vs_raw"] = round(r["cpu_us_per_publish"] / base, 2)
    return results


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['target']} | ERROR: {r['error']} |")
            continue
        cells = ["-" if r.get(k) is None else str(r[k]) for k, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(results: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in results:
        if r.get("target") == "rtdelivery" and r.get("cpu_vs_raw") is not None:
            out.append(
                f"publisher CPU vs raw PUBLISH, {r['subscribers']} subscriber process(es), "
                f"concurrency {r['concurrency']}: {r['cpu_vs_raw']:.2f}x (target <= 2x)"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", choices=["rtdelivery", "raw"], required=True)
    parser.add_argument("--topics", type=int, default=100)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--pad", type=int, default=64)
    parser.add_argument("--subscribe", action="store_true", help="be the subscriber process")
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--prefix", default=os.environ.get("RTD_BENCH_PREFIX", "rtdbench:"))
    args = parser.parse_args()
    result = asyncio.run(subscribe(args) if args.subscribe else publish(args))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
