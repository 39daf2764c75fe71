"""Raw-socket clients that can stop reading, for the slow-client and shutdown faults.

A client here reads only when told to: between reads, the bytes the server sends pile up
in the kernel (a small ``SO_RCVBUF``) and then in the server, which is the point. Each one
parses its transport itself (chunked SSE over HTTP/1.1, WebSocket frames), so nothing on
the client side buffers behind the test's back. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
from typing import Any
from urllib.parse import urlencode

from tests.e2e.clients import SSEParser

#: Kernel receive buffer of a raw client (Linux doubles it).
RCVBUF = 4096
#: How much a raw client's StreamReader holds before it stops reading the socket.
READER_LIMIT = 4096
#: Upper bound for one wait of a raw client (seconds).
RAW_TIMEOUT = 60.0


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """The resident set size of process ``pid`` (``VmRSS`` in /proc/<pid>/status), or
    its peak so far (``VmHWM``)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for pid {pid}")


async def _open(port: int, rcvbuf: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), RAW_TIMEOUT)
    return await asyncio.open_connection(sock=sock, limit=READER_LIMIT)


class RawClient:
    """The common part: events received, the server's closing word, reading on demand."""

    transport = ""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.events: list[dict[str, Any]] = []
        #: ("too_slow" | "going_away" | ..., cursor) once the server said it ends.
        self.closing: tuple[str, str | None] | None = None
        #: The stream/socket is over (EOF, end of body, close frame).
        self.ended = False
        self.error: BaseException | None = None
        self._buffer = b""

    async def _read_some(self, deadline: float) -> bytes:
        assert self.reader is not None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        try:
            return await asyncio.wait_for(self.reader.read(65536), remaining)
        except ConnectionError as exc:  # reset by the server: like an EOF
            self.error = exc
            return b""

    async def read_until_end(self, timeout: float = RAW_TIMEOUT) -> None:  # noqa: ASYNC109
        """Read (and parse) until the server ends the stream or the socket."""
        deadline = time.monotonic() + timeout
        while not self.ended:
            try:
                chunk = await self._read_some(deadline)
            except TimeoutError:
                raise AssertionError(
                    f"{self.transport}: not ended after {timeout}s; {len(self.events)} events, "
                    f"closing={self.closing}"
                ) from None
            if not chunk:
                self.ended = True
                break
            self._feed(chunk)

    async def read_events(self, n: int, timeout: float = RAW_TIMEOUT) -> None:  # noqa: ASYNC109
        """Read until ``n`` events in all were received."""
        deadline = time.monotonic() + timeout
        while len(self.events) < n:
            if self.ended:
                raise AssertionError(f"{self.transport}: ended with {len(self.events)}/{n} events")
            try:
                chunk = await self._read_some(deadline)
            except TimeoutError:
                raise AssertionError(
                    f"{self.transport}: {len(self.events)}/{n} events after {timeout}s"
                ) from None
            if not chunk:
                self.ended = True
            else:
                self._feed(chunk)

    def _feed(self, chunk: bytes) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()


class RawSSE(RawClient):
    """``GET sse`` over HTTP/1.1; the chunked body is decoded and parsed here."""

    transport = "sse"

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.parser = SSEParser()
        self.opened: dict[str, Any] | None = None
        #: The id of the last event dispatched (a browser's Last-Event-ID).
        self.last_id: str | None = None
        self._headers_done = False
        self._chunk_left = 0  # bytes left in the current chunk (+2 for its CRLF)

    async def connect(self, topic: str, cursor: str | None = None, rcvbuf: int = RCVBUF) -> None:
        self.reader, self.writer = await _open(self.port, rcvbuf)
        query = [("topic", topic)] + ([("cursor", cursor)] if cursor else [])
        self.writer.write(
            f"GET /rt/sse?{urlencode(query)} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        await self.writer.drain()
        deadline = time.monotonic() + RAW_TIMEOUT
        while self.opened is None:
            chunk = await self._read_some(deadline)
            if not chunk:
                raise AssertionError(f"sse: EOF before rt.open: {self._buffer[:300]!r}")
            self._feed(chunk)

    def _feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        if not self._headers_done:
            head, sep, rest = self._buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            status = head.split(b"\r\n", 1)[0]
            if b" 200 " not in status + b" " or b"chunked" not in head.lower():
                raise AssertionError(f"sse: expected a chunked 200, got {head[:300]!r}")
            self._headers_done = True
            self._buffer = rest
        self._dechunk()

    def _dechunk(self) -> None:
        while self._buffer and not self.ended:
            if self._chunk_left == 0:
                size_line, sep, rest = self._buffer.partition(b"\r\n")
                if not sep:
                    return
                size = int(size_line.split(b";")[0], 16)
                self._buffer = rest
                if size == 0:
                    self.ended = True  # the last chunk: the response is over
                    return
                self._chunk_left = size + 2
            take = self._buffer[: self._chunk_left]
            self._buffer = self._buffer[len(take) :]
            self._chunk_left -= len(take)
            data = take if self._chunk_left >= 2 else take[: len(take) - (2 - self._chunk_left)]
            for message in self.parser.feed(data):
                self._message(message)

    def _message(self, message: dict[str, str]) -> None:
        data = json.loads(message["data"])
        kind = message["event"]
        if kind == "rt.open":
            self.opened = data
        elif kind == "rt.close":
            self.closing = (data["reason"], data["cursor"])
        elif not kind.startswith("rt."):
            self.events.append(data)
            self.last_id = message["id"]


class RawWS(RawClient):
    """A WebSocket on a raw socket: handshake, masked client frames, frame parsing."""

    transport = "ws"

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.frames: list[dict[str, Any]] = []
        self.close_code: int | None = None
        #: Per-topic resume points: each event's id (or the subscribed cursor).
        self.cursors: dict[str, str] = {}
        self._message = b""

    async def connect(
        self, topic: str, since: str | None = None, rcvbuf: int = RCVBUF
    ) -> dict[str, Any]:
        """Open, subscribe and return the ``subscribed`` frame."""
        self.reader, self.writer = await _open(self.port, rcvbuf)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(
            f"GET /rt/ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{self.port}\r\n\r\n".encode()
        )
        await self.writer.drain()
        deadline = time.monotonic() + RAW_TIMEOUT
        while b"\r\n\r\n" not in self._buffer:
            chunk = await self._read_some(deadline)
            if not chunk:
                raise AssertionError(f"ws: EOF in the handshake: {self._buffer[:300]!r}")
            self._buffer += chunk
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0] + b" ":
            raise AssertionError(f"ws: handshake answered {head[:300]!r}")
        frame: dict[str, Any] = {"op": "subscribe", "topic": topic, "ref": "sub"}
        if since:
            frame["since"] = since
        self.send_text(json.dumps(frame))
        self._feed(b"")
        while not any(f.get("ref") == "sub" for f in self.frames):
            if self.ended:
                raise AssertionError(f"ws: closed before subscribed: {self.frames}")
            chunk = await self._read_some(deadline)
            if not chunk:
                raise AssertionError(f"ws: EOF before subscribed: {self.frames}")
            self._feed(chunk)
        reply = next(f for f in self.frames if f.get("ref") == "sub")
        if reply.get("op") != "subscribed":
            raise AssertionError(f"ws: subscribe answered {reply}")
        return reply

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        assert self.writer is not None
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if not self.writer.is_closing():
            self.writer.write(header + mask + masked)

    def send_text(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def _feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        while not self.ended:
            buf = self._buffer
            if len(buf) < 2:
                return
            first, second = buf[0], buf[1]
            length, offset = second & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, offset = struct.unpack("!H", buf[2:4])[0], 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, offset = struct.unpack("!Q", buf[2:10])[0], 10
            if len(buf) < offset + length:
                return
            payload = buf[offset : offset + length]
            self._buffer = buf[offset + length :]
            self._frame(first & 0x80, first & 0x0F, payload)

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode == 0x9:  # ping: answer, as any client does
            self._send_frame(0xA, payload)
        elif opcode == 0x8:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            self._send_frame(0x8, payload[:2])
            self.ended = True
        elif opcode in (0x1, 0x0):
            self._message += payload
            if fin:
                text, self._message = self._message.decode(), b""
                self._text(json.loads(text))

    def _text(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)
        op = frame.get("op")
        if op == "event":
            self.events.append(frame)
            self.cursors[frame["topic"]] = frame["id"]
        elif op == "subscribed":
            self.cursors[frame["topic"]] = frame["cursor"]
        elif op == "error" and frame.get("code") in ("too_slow", "going_away"):
            self.closing = (frame["code"], frame.get("cursor"))
