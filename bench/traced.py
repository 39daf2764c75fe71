"""Where the bytes of an idle connection go: tracemalloc in a Uvicorn server.

    python -m bench.traced --transport ws --clients 1000 [--ws websockets-sansio] [--top 25]

Runs the benchmark's ASGI application (``bench.asgi``, Redis history and layer) in this
process under Uvicorn with :mod:`tracemalloc` on, opens ``--clients`` idle subscribed
connections from a load generator process (``bench.loadgen --hold``), and prints the
Python allocations that appeared, per connection: by package, then the biggest lines.
A warm-up round of connections first, so that imports and caches filled on first use are
not counted. Traced bytes are Python's own allocations: RSS adds the allocator's
overhead and what C extensions allocate (uvloop's transports, used here as Uvicorn
uses them by default); the kernel's socket structures are in neither.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket
import subprocess
import sys
import time
import tracemalloc
import uuid
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Packages the allocations are grouped by (the first path part that names one).
GROUPS = ("rtdelivery", "uvicorn", "websockets", "wsproto", "asyncio", "channels", "django")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _group(filename: str) -> str:
    path = filename.replace("\\", "/")
    parts = path.split("site-packages/")[-1].replace(ROOT + "/", "").split("/")
    if parts[0] in GROUPS:
        return parts[0]
    if "asyncio" in parts[:-1]:
        return "asyncio"
    return "other (" + parts[-1] + ")"


def _spawn(port: int, transport: str, n: int) -> subprocess.Popen[str]:
    cmd = [
        sys.executable, "-m", "bench.loadgen", "--target", "rtdelivery",
        "--transport", transport, "--url", f"http://127.0.0.1:{port}", "--topic", "bench",
        "--clients", str(n), "--expect", "1", "--timeout", "0.1", "--hold",
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ
    )


async def _clients(port: int, transport: str, n: int) -> subprocess.Popen[str]:
    """A load generator holding ``n`` subscribed connections (stop: close its stdin)."""
    proc = _spawn(port, transport, n)
    assert proc.stdout is not None
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = await loop.run_in_executor(None, proc.stdout.readline)
        if line.startswith("READY"):
            ready = int(line.split()[1])
            if ready != n:
                raise RuntimeError(f"expected {n} connections ready, got {ready}")
            return proc
        if not line:
            break
    proc.kill()
    proc.wait(5)
    raise RuntimeError("the load generator did not get its connections ready")


async def _stop(proc: subprocess.Popen[str]) -> None:
    """Close the load generator's stdin and let it close its connections: the server runs
    on this loop, so wait without blocking it (the close handshakes need answers)."""
    if proc.stdin:
        proc.stdin.close()
    try:
        await asyncio.to_thread(proc.wait, 15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


async def _settle(server: Any, expected: int, within: float = 30.0) -> None:
    """Wait until the server holds ``expected`` connections (it lags the client's READY)."""
    deadline = time.monotonic() + within
    while len(server.server_state.connections) != expected:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"expected {expected} open connections, "
                f"the server has {len(server.server_state.connections)}"
            )
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the last subscriptions' replies are written


async def main(args: argparse.Namespace) -> None:
    import uvicorn

    port = _free_port()
    kwargs: dict[str, Any] = {"ws": args.ws} if args.ws else {}
    config = uvicorn.Config(
        "bench.asgi:application",
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        backlog=4096,
        **kwargs,
    )
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.05)
    try:
        warm = await _clients(port, args.transport, min(args.clients, 50))
        await _stop(warm)
        await _settle(server, 0)
        gc.collect()
        before = tracemalloc.take_snapshot()
        proc = await _clients(port, args.transport, args.clients)
        try:
            await _settle(server, args.clients)
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            await _stop(proc)
    finally:
        server.should_exit = True
        await serving
        from rtdelivery.hub import aclose_hub

        await aclose_hub()  # its background tasks end with it, not at the loop's close
    report(before, after, args.clients, args.top)


def report(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int, top: int) -> None:
    stats = after.compare_to(before, "lineno")
    groups: dict[str, int] = {}
    for stat in stats:
        name = _group(stat.traceback[0].filename)
        groups[name] = groups.get(name, 0) + stat.size_diff
    total = sum(groups.values())
    print(f"traced bytes per connection: {total / n:.0f} ({n} connections)")
    print()
    print("| package | bytes per connection |")
    print("|---|---|")
    for name, size in sorted(groups.items(), key=lambda kv: -kv[1]):
        if abs(size / n) >= 16:
            print(f"| {name} | {size / n:.0f} |")
    print()
    print("| bytes per connection | objects per connection | where |")
    print("|---|---|---|")
    for stat in stats[:top]:
        frame = stat.traceback[0]
        where = frame.filename.split("site-packages/")[-1].replace(ROOT + "/", "")
        print(f"| {stat.size_diff / n:.0f} | {stat.count_diff / n:.2f} | {where}:{frame.lineno} |")


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.traced", description=__doc__)
    parser.add_argument("--transport", choices=["ws", "sse"], default="ws")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--ws", default="", help="Uvicorn's --ws (default: Uvicorn's)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    os.environ.setdefault("RTD_BENCH_PREFIX", f"rtdbench:{uuid.uuid4().hex[:8]}:")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    sys.path.insert(0, ROOT)
    tracemalloc.start(1)
    try:  # the loop Uvicorn itself picks by default (its C objects are not traced)
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main(args))


if __name__ == "__main__":
    cli()
