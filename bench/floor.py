"""The raw Python floor: Redis pub/sub fanned out by a bare asyncio server.

``--kind ws``: a ``websockets`` server broadcasting each message to every socket.
``--kind sse``: an asyncio HTTP server writing each message as one SSE frame, encoded
once, to every open stream. Nothing else: no auth, no history, no cursor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
from typing import Any

import redis.asyncio as aioredis

CHANNEL = "rtdbench-floor"


async def _pubsub(url: str, on_message: Any) -> None:
    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL)
    async for message in pubsub.listen():
        if message["type"] == "message":
            on_message(message["data"])


async def serve_ws(port: int, url: str) -> None:
    from websockets.asyncio.server import broadcast, serve

    clients: set[Any] = set()

    async def handler(ws: Any) -> None:
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    async with serve(
        handler, "127.0.0.1", port, compression=None, ping_interval=None, backlog=4096
    ):
        await _pubsub(url, lambda data: broadcast(clients, data.decode()))


async def serve_sse(port: int, url: str) -> None:
    streams: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        streams.add(writer)
        try:
            await reader.read()  # until the client goes away
        finally:
            streams.discard(writer)
            writer.close()

    def fan_out(data: bytes) -> None:
        frame = b"data: " + data + b"\n\n"
        chunk = b"%x\r\n%s\r\n" % (len(frame), frame)  # encoded once for every stream
        for writer in streams:
            writer.write(chunk)

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await _pubsub(url, fan_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", choices=["ws", "sse"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--redis",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis to subscribe to (default: $REDIS_URL, else redis://127.0.0.1:6379/0)",
    )
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    coro = (
        serve_ws(args.port, args.redis) if args.kind == "ws" else serve_sse(args.port, args.redis)
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(coro)
    else:
        uvloop.run(coro)


if __name__ == "__main__":
    main()
