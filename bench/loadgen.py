"""Load generator: many asyncio clients of one transport, in one process.

    python -m bench.loadgen --target rtdelivery --transport ws \
        --url http://127.0.0.1:8001 --topic bench --clients 500 --expect 200 --timeout 60

Prints ``READY`` once every client is subscribed, then one JSON line with the results
when every client has its ``--expect`` events or ``--timeout`` passes. HTTP is spoken
directly over asyncio streams (HTTP/1.1, keep-alive) so the generator stays light.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .eventstream import PATHS as ES_PATHS
from .eventstream import channel as es_channel


@dataclass
class ClientStats:
    received: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    requests: int = 0
    empty: int = 0
    bytes: int = 0
    last: int = -1
    seen: set[int] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None

    def record(self, data: dict[str, Any], expect: int, now: float) -> None:
        i = data.get("i")
        if not isinstance(i, int):
            return
        if i in self.seen:
            self.duplicates += 1
            return
        if i < self.last:
            self.out_of_order += 1
        self.seen.add(i)
        self.last = max(self.last, i)
        self.received += 1
        self.latencies.append(round((now - data["t"]) * 1000, 3))
        if self.received >= expect:
            self.done.set()


# -- plain HTTP/1.1 over asyncio streams ---------------------------------------------------
async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("server closed the connection")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            return status, headers
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()


async def _request(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: str,
    path: str,
    extra: str = "",
) -> tuple[int, dict[str, str], bytes, int]:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode())
    await writer.drain()
    status, headers = await _read_head(reader)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b"".join([chunk async for chunk in _chunks(reader)])
        await reader.readline()  # the blank line after the last chunk
    else:
        length = int(headers.get("content-length", "0"))
        body = await reader.readexactly(length) if length else b""
    return status, headers, body, len(body) + 200


async def _chunks(reader: asyncio.StreamReader) -> Any:
    """De-chunk a ``Transfer-Encoding: chunked`` body."""
    while True:
        size_line = await reader.readline()
        if not size_line:
            return
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return
        data = await reader.readexactly(size)
        await reader.readexactly(2)
        yield data


# -- transports -------------------------------------------------------------------------
class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        parts = urlsplit(args.url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.hostport = f"{self.host}:{self.port}"
        self.expect = args.expect

    def ws_url(self) -> str:
        base = f"ws://{self.hostport}"
        if self.args.target == "rtdelivery":
            return base + "/rt/ws"
        if self.args.target == "naive":
            return base + "/naive/ws"
        return base + "/"

    async def ws(self, stats: ClientStats) -> None:
        from websockets.asyncio.client import connect

        target = self.args.target
        async with connect(
            self.ws_url(),
            origin=f"http://{self.hostport}",  # type: ignore[arg-type]
            compression=None,
            max_queue=None,
            open_timeout=60,
            ping_interval=None,
        ) as ws:
            if target == "rtdelivery":
                await ws.send(json.dumps({"op": "subscribe", "topic": self.args.topic}))
            else:
                stats.ready.set()
            async for message in ws:
                now = time.time()
                stats.bytes += len(message)
                frame = json.loads(message)
                if target == "rtdelivery":
                    op = frame.get("op")
                    if op == "subscribed":
                        stats.ready.set()
                        continue
                    if op != "event":
                        continue
                    frame = frame["data"]
                stats.record(frame, self.expect, now)
                if stats.done.is_set() and not self.args.hold:
                    return

    async def sse(self, stats: ClientStats) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        path = f"/rt/sse?topic={self.args.topic}" if self.args.target == "rtdelivery" else "/sse"
        es = self.args.target in ES_PATHS  # django-eventstream's wire format
        if es:
            path = f"{ES_PATHS[self.args.target]}?channel={es_channel()}"
        try:
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {self.hostport}\r\nAccept: text/event-stream\r\n\r\n".encode()
            )
            await writer.drain()
            status, headers = await _read_head(reader)
            if status != 200:
                raise ConnectionError(f"SSE status {status}")
            if self.args.target != "rtdelivery" and not es:
                stats.ready.set()
            buffer = b""
            chunked = headers.get("transfer-encoding", "").lower() == "chunked"
            source = _chunks(reader) if chunked else _raw(reader)
            async for chunk in source:
                stats.bytes += len(chunk)
                buffer += chunk
                while b"\n\n" in buffer:
                    message, buffer = buffer.split(b"\n\n", 1)
                    now = time.time()
                    event = b""
                    data = []
                    for line in message.split(b"\n"):
                        if line.startswith(b"event:"):
                            event = line[6:].strip()
                        elif line.startswith(b"data:"):
                            data.append(line[5:].lstrip(b" ") if line[5:6] == b" " else line[5:])
                    if event in (b"rt.open", b"stream-open"):
                        stats.ready.set()
                        continue
                    if es and event != b"message":
                        continue  # keep-alive, stream-reset, stream-error
                    if not data or event.startswith(b"rt."):
                        continue
                    payload = json.loads(b"\n".join(data))
                    if self.args.target == "rtdelivery":
                        payload = payload["data"]
                    stats.record(payload, self.expect, now)
                if stats.done.is_set() and not self.args.hold:
                    return
        finally:
            writer.close()

    async def polling(self, stats: ClientStats, long: bool) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        cursor = ""
        topic = self.args.topic
        try:
            while not stats.done.is_set() or self.args.hold:
                if long:
                    path = f"/rt/longpoll?topic={topic}&timeout={self.args.longpoll_timeout}"
                else:
                    path = f"/rt/poll?topic={topic}"
                if cursor:
                    path += f"&cursor={cursor}"
                status, _, body, size = await _request(reader, writer, self.hostport, path)
                stats.requests += 1
                stats.bytes += size
                if status != 200:
                    raise ConnectionError(f"poll status {status}")
                answer = json.loads(body)
                cursor = answer["cursor"]
                stats.ready.set()
                now = time.time()
                if not answer["events"]:
                    stats.empty += 1
                for event in answer["events"]:
                    stats.record(event["data"], self.expect, now)
                if not long and not stats.done.is_set():
                    await asyncio.sleep(self.args.poll_interval)
        finally:
            writer.close()

    async def hammer(self, stats: ClientStats) -> None:
        """Back-to-back GETs of ``--path`` on one keep-alive connection."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        stats.ready.set()
        try:
            for _ in range(self.args.requests):
                status, _, _, size = await _request(reader, writer, self.hostport, self.args.path)
                stats.requests += 1
                stats.bytes += size
                if status != 200:
                    raise ConnectionError(f"status {status} for {self.args.path}")
            stats.received = self.expect
            stats.done.set()
        finally:
            writer.close()

    async def client(self, stats: ClientStats) -> None:
        transport = self.args.transport
        try:
            if transport == "get":
                await self.hammer(stats)
            elif transport == "ws":
                await self.ws(stats)
            elif transport == "sse":
                await self.sse(stats)
            else:
                await self.polling(stats, long=transport == "longpoll")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # reported, not raised: one failing client is a figure
            stats.error = f"{type(exc).__name__}: {exc}"
            stats.ready.set()


async def _raw(reader: asyncio.StreamReader) -> Any:
    while True:
        data = await reader.read(65536)
        if not data:
            return
        yield data


async def run(args: argparse.Namespace) -> dict[str, Any]:
    runner = Runner(args)
    stats = [ClientStats() for _ in range(args.clients)]
    tasks = []
    # Connect in waves so the listen backlog is not overrun.
    for i, s in enumerate(stats):
        tasks.append(asyncio.ensure_future(runner.client(s)))
        if i % 100 == 99:
            await asyncio.sleep(0.01)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(s.ready.wait() for s in stats)), timeout=args.connect_timeout
        )
    ready = sum(1 for s in stats if s.ready.is_set() and s.error is None)
    print(f"READY {ready}", flush=True)
    deadline = args.timeout
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(s.done.wait() for s in stats if s.error is None)), timeout=deadline
        )
    if args.hold:
        # Idle-capacity runs: keep the connections until told to stop (stdin closes).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    errors = [s.error for s in stats if s.error]
    return {
        "clients": args.clients,
        "ready": ready,
        "received": sum(s.received for s in stats),
        "complete": sum(1 for s in stats if s.received >= args.expect),
        "duplicates": sum(s.duplicates for s in stats),
        "out_of_order": sum(s.out_of_order for s in stats),
        "requests": sum(s.requests for s in stats),
        "empty": sum(s.empty for s in stats),
        "bytes": sum(s.bytes for s in stats),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "latencies": [lat for s in stats for lat in s.latencies],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--target",
        choices=["rtdelivery", "naive", "floor", "eventstream", "bridge"],
        required=True,
    )
    parser.add_argument(
        "--transport", choices=["ws", "sse", "longpoll", "poll", "get"], required=True
    )
    parser.add_argument("--path", default="/bare", help="for --transport get")
    parser.add_argument("--requests", type=int, default=100, help="for --transport get")
    parser.add_argument("--url", required=True)
    parser.add_argument("--topic", default="bench")
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--longpoll-timeout", type=float, default=25.0)
    parser.add_argument("--hold", action="store_true", help="keep connections until stdin closes")
    parser.add_argument("--out", help="write the JSON result to this file")
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        result = asyncio.run(run(args))
    else:
        result = uvloop.run(run(args))
    if args.out:
        # Large results go through a file: a pipe may be non-blocking after the loop ran.
        with open(args.out, "w") as f:
            json.dump(result, f)
        print("RESULT @" + args.out, flush=True)
    else:
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
