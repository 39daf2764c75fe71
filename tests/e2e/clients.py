"""Async client adapters for the four transports, with one interface for the e2e tests.

    async with make_client("sse", base_url, ["e2e.x"], cursor=None) as c:
        events = await c.next_events(10, timeout=5)
        resume_from = c.cursor
        await c.drop()  # abrupt: no goodbye, in-flight data is lost
        await c.reconnect()  # resumes from c.cursor (SSE: Last-Event-ID)

``connect()`` returns once the subscription is live (poll/longpoll: first answer received;
SSE: ``rt.open`` received; WebSocket: every ``subscribed`` frame received), so an event
published afterwards must reach the client. ``events`` accumulates the event dicts of every
connection (wire fields only), so a test can check the union for loss and duplicates.
Every wait is bounded by a timeout; every loop ends when the client is dropped or closed.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from websockets.asyncio.client import ClientConnection, connect

TRANSPORTS = ("poll", "longpoll", "sse", "ws")

#: Short polling interval: the client's timer (short polling *is* "ask again later").
POLL_INTERVAL = 0.05
#: Hold time asked for by the long-poll client (the server bounds it too).
LONGPOLL_HOLD = 5.0
#: Upper bound for connecting/handshakes (seconds).
CONNECT_TIMEOUT = 10.0


def http_client(**kwargs: Any) -> httpx.AsyncClient:
    """An httpx client for loopback servers (no proxies from the environment)."""
    kwargs.setdefault("timeout", httpx.Timeout(30.0, connect=CONNECT_TIMEOUT))
    kwargs.setdefault("verify", False)  # plain HTTP on loopback: skip loading CA certificates
    return httpx.AsyncClient(trust_env=False, **kwargs)


def ws_url(base_url: str, path: str = "/rt/ws") -> str:
    return "ws" + base_url[len("http") :] + path


async def ws_connect(
    base_url: str, *, origin: str | None = "same", **kwargs: Any
) -> ClientConnection:
    """A WebSocket to ``base_url``'s ws route with the server's own Origin by default."""
    if origin == "same":
        origin = base_url
    kwargs.setdefault("open_timeout", CONNECT_TIMEOUT)
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("close_timeout", 2)
    return await connect(
        ws_url(base_url, kwargs.pop("path", "/rt/ws")),
        origin=origin,  # type: ignore[arg-type]
        proxy=None,
        **kwargs,
    )


async def http_publish(
    client: httpx.AsyncClient,
    base_url: str,
    token: str,
    topic: str,
    data: Any,
    type: str = "message",  # noqa: A002
) -> dict[str, Any]:
    """POST /rt/publish with a Bearer token; returns the 201 body."""
    response = await client.post(
        f"{base_url}/rt/publish",
        json={"topic": topic, "type": type, "data": data},
        headers={"authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, (response.status_code, response.text)
    body: dict[str, Any] = response.json()
    return body


class ClientError(AssertionError):
    """The client saw something the protocol does not allow, or a wait timed out."""


class BaseClient:
    transport = ""

    def __init__(
        self,
        base_url: str,
        topics: Sequence[str],
        cursor: str | dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url
        self.topics = list(topics)
        self.initial_cursor = cursor
        #: Every event received, over every connection, in arrival order.
        self.events: list[dict[str, Any]] = []
        #: One entry per (re)connection: {"recovered", "lost", "cursor"} as the server said.
        self.opens: list[dict[str, Any]] = []
        #: Mid-stream resets and closes announced by the server (rt.reset, rt.close, ...).
        self.notices: list[dict[str, Any]] = []
        self.connections = 0
        self._read = 0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    # -- common interface ------------------------------------------------------------
    @property
    def cursor(self) -> str | None:
        raise NotImplementedError

    @property
    def recovered(self) -> bool | None:
        """What the server said about the latest (re)connection."""
        return self.opens[-1]["recovered"] if self.opens else None

    async def __aenter__(self) -> BaseClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open (or re-open from ``cursor``) and return once the subscription is live."""
        raise NotImplementedError

    async def reconnect(self) -> None:
        await self.drop()
        await self.connect()

    async def drop(self) -> None:
        """Abruptly end the current connection (no clean shutdown)."""
        await self._stop_task()

    async def close(self) -> None:
        await self.drop()

    # The timeout parameters are the interface: every wait in these tests is bounded.
    async def next_events(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """The next ``n`` events not yet returned by this method."""
        start = self._read
        await self.wait_for(lambda: len(self.events) >= start + n, timeout, f"{n} more events")
        self._read = start + n
        return self.events[start : start + n]

    async def wait_total(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """Wait until ``n`` events were received in all; returns all of them."""
        await self.wait_for(lambda: len(self.events) >= n, timeout, f"{n} events in all")
        return list(self.events)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        async with self._changed:
            while not predicate():
                if self._failure is not None:
                    raise ClientError(f"{self.transport} client failed") from self._failure
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ClientError(
                        f"{self.transport}: timed out after {timeout}s waiting for {what}; "
                        f"have {len(self.events)} events, opens={self.opens}, "
                        f"notices={self.notices}"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    # -- helpers for subclasses ------------------------------------------------------
    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _start(self, run: Callable[..., Awaitable[None]], *args: Any) -> None:
        """Run ``run(*args)`` as the connection's task (created lazily: cancel-safe)."""
        self._failure = None
        self._task = asyncio.create_task(self._guard(run, *args))

    async def _guard(self, run: Callable[..., Awaitable[None]], *args: Any) -> None:
        try:
            await run(*args)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._failure = exc
        finally:
            await self._notify()

    async def _stop_task(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _cursor_text(self, topic: str | None = None) -> str | None:
        cursor = self.initial_cursor
        if isinstance(cursor, dict):
            return cursor.get(topic) if topic else None
        return cursor


class _HttpPollingClient(BaseClient):
    """Shared by short and long polling: GET with the cursor, again and again."""

    path = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cursor: str | None = self._cursor_text()
        self._http: httpx.AsyncClient | None = None
        self.requests = 0

    @property
    def cursor(self) -> str | None:
        return self._cursor

    def _url(self, extra: dict[str, Any]) -> str:
        params: list[tuple[str, Any]] = [("topic", t) for t in self.topics]
        if self._cursor:
            params.append(("cursor", self._cursor))
        params.extend(extra.items())
        return f"{self.base_url}/rt/{self.path}?{urlencode(params)}"

    async def _get(
        self, extra: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        assert self._http is not None
        self.requests += 1
        return await self._http.get(self._url(extra), headers=headers)

    async def _apply(self, response: httpx.Response, *, first: bool) -> None:
        if response.status_code != 200:
            raise ClientError(f"{self.path}: {response.status_code} {response.text}")
        body = response.json()
        if set(body) != {"events", "cursor", "recovered", "lost"}:
            raise ClientError(f"{self.path}: unexpected body keys {sorted(body)}")
        info = {"recovered": body["recovered"], "lost": body["lost"], "cursor": body["cursor"]}
        if first:
            self.opens.append(info)
        elif not body["recovered"]:
            self.notices.append({"event": "lost", **info})
        self.events.extend(body["events"])
        self._cursor = body["cursor"]
        await self._notify()

    async def connect(self) -> None:
        await self.drop()
        self._http = http_client()
        self.connections += 1
        await self._apply(await self._get(self._first_params()), first=True)
        self._start(self._loop)

    def _first_params(self) -> dict[str, Any]:
        return {}

    async def _loop(self) -> None:
        raise NotImplementedError

    async def drop(self) -> None:
        await self._stop_task()
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()


class PollClient(_HttpPollingClient):
    transport = "poll"
    path = "poll"

    async def _loop(self) -> None:
        etag: str | None = None
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            response = await self._get({}, {"if-none-match": etag} if etag else None)
            if response.status_code == 304:
                continue
            etag = response.headers.get("etag")
            await self._apply(response, first=False)


class LongPollClient(_HttpPollingClient):
    transport = "longpoll"
    path = "longpoll"

    def _first_params(self) -> dict[str, Any]:
        # Answered at once: learn where we are (and whether we recovered) before going live.
        return {"timeout": 0}

    async def _loop(self) -> None:
        while True:
            # Re-request at once with the new cursor: no timer.
            await self._apply(await self._get({"timeout": LONGPOLL_HOLD}), first=False)


class SSEParser:
    """The event-stream interpretation of the HTML standard (server-sent events, 9.2.6)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._data: list[str] = []
        self._event = ""
        self.last_event_id = ""
        self.retry: int | None = None
        self.comments = 0

    def feed(self, chunk: bytes) -> list[dict[str, str]]:
        """Dispatched events ({"event", "data", "id"}) completed by ``chunk``."""
        self._buffer += self._decoder.decode(chunk)
        if not self._started and self._buffer:
            self._started = True
            if self._buffer.startswith("\ufeff"):
                self._buffer = self._buffer[1:]
        out: list[dict[str, str]] = []
        while True:
            cr, lf = self._buffer.find("\r"), self._buffer.find("\n")
            ends = [i for i in (cr, lf) if i >= 0]
            if not ends:
                return out
            end = min(ends)
            if end == cr and end == len(self._buffer) - 1:
                return out  # a CR at the end may be the first half of CRLF: wait
            line = self._buffer[:end]
            skip = 2 if self._buffer[end : end + 2] == "\r\n" else 1
            self._buffer = self._buffer[end + skip :]
            event = self._line(line)
            if event is not None:
                out.append(event)

    def _line(self, line: str) -> dict[str, str] | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> dict[str, str] | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return {"event": event or "message", "data": "\n".join(data), "id": self.last_event_id}


class SSEClient(BaseClient):
    transport = "sse"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The browser's "last event ID": sent as Last-Event-ID on reconnect.
        self.last_event_id: str | None = None
        self._http: httpx.AsyncClient | None = None
        self._response: httpx.Response | None = None
        #: The id: line of each received event (aligned with ``events``).
        self.ids: list[str] = []
        self.retry: int | None = None

    @property
    def cursor(self) -> str | None:
        return self.last_event_id or self._cursor_text()

    async def connect(self) -> None:
        await self.drop()
        self._http = http_client()
        params: list[tuple[str, str]] = [("topic", t) for t in self.topics]
        initial = self._cursor_text()
        if initial:
            # Like a browser: the URL stays the same on reconnect; Last-Event-ID wins.
            params.append(("cursor", initial))
        headers = {"accept": "text/event-stream"}
        if self.last_event_id:
            headers["last-event-id"] = self.last_event_id
        request = self._http.build_request(
            "GET", f"{self.base_url}/rt/sse?{urlencode(params)}", headers=headers
        )
        response = await self._http.send(request, stream=True)
        if response.status_code != 200:
            body = await response.aread()
            await response.aclose()
            raise ClientError(f"sse: {response.status_code} {body!r}")
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("text/event-stream"):
            raise ClientError(f"sse: content-type {content_type!r}")
        self._response = response
        self.connections += 1
        opens = len(self.opens)
        self._start(self._read_stream, response)
        await self.wait_for(lambda: len(self.opens) > opens, CONNECT_TIMEOUT, "rt.open")

    async def _read_stream(self, response: httpx.Response) -> None:
        parser = SSEParser()
        first = True
        async for chunk in response.aiter_raw():
            for message in parser.feed(chunk):
                if first and message["event"] != "rt.open":
                    raise ClientError(f"sse: first frame is {message['event']!r}, not rt.open")
                first = False
                self._handle(message)
            self.retry = parser.retry
            await self._notify()
        self.notices.append({"event": "eof"})

    def _handle(self, message: dict[str, str]) -> None:
        if message["id"]:
            self.last_event_id = message["id"]
        data = json.loads(message["data"])
        kind = message["event"]
        if kind == "rt.open":
            self.opens.append(data)
        elif kind.startswith("rt."):
            self.notices.append({"event": kind, **data})
        else:
            if data.get("type") != kind:
                raise ClientError(f"sse: event: {kind!r} but data type {data.get('type')!r}")
            self.events.append(data)
            self.ids.append(message["id"])

    async def drop(self) -> None:
        await self._stop_task()
        response, self._response = self._response, None
        if response is not None:
            await response.aclose()
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()


class WSClient(BaseClient):
    transport = "ws"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Per-topic resume points: the subscribed cursor, then each event's id.
        self.cursors: dict[str, str] = {}
        for topic in self.topics:
            text = self._cursor_text(topic)
            if text:
                self.cursors[topic] = text
        self.ws: ClientConnection | None = None
        self.errors: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._refs = 0

    @property
    def cursor(self) -> str | None:
        if len(self.topics) != 1:
            raise ClientError("ws: one cursor per topic; use .cursors")
        return self.cursors.get(self.topics[0])

    async def connect(self) -> None:
        await self.drop()
        self.ws = await ws_connect(self.base_url)
        self.connections += 1
        self._start(self._reader, self.ws)
        replies = []
        for topic in self.topics:
            frame: dict[str, Any] = {"op": "subscribe", "topic": topic}
            if topic in self.cursors:
                frame["since"] = self.cursors[topic]
            replies.append(self.request(frame))
        for reply in await asyncio.gather(*replies):
            if reply.get("op") != "subscribed":
                raise ClientError(f"ws: subscribe answered {reply}")

    def request(self, frame: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        """Send ``frame`` with a fresh ``ref``; the future resolves to the reply frame."""
        assert self.ws is not None
        self._refs += 1
        ref = f"r{self._refs}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ref] = future
        ws = self.ws

        async def run() -> dict[str, Any]:
            await ws.send(json.dumps({**frame, "ref": ref}))
            return await asyncio.wait_for(future, CONNECT_TIMEOUT)

        return asyncio.ensure_future(run())

    async def publish(self, topic: str, data: Any, type: str = "message") -> dict[str, Any]:  # noqa: A002
        reply = await self.request({"op": "publish", "topic": topic, "type": type, "data": data})
        if reply.get("op") != "ack":
            raise ClientError(f"ws: publish answered {reply}")
        return reply

    async def _reader(self, ws: ClientConnection) -> None:
        try:
            async for text in ws:
                frame = json.loads(text)
                op = frame.get("op")
                if op == "event":
                    frame.pop("op")
                    self.events.append(frame)
                    self.cursors[frame["topic"]] = frame["id"]
                elif op == "subscribed":
                    self.cursors[frame["topic"]] = frame["cursor"]
                    info = {k: frame[k] for k in ("recovered", "cursor", "topic")}
                    if "ref" in frame:
                        self.opens.append(
                            {**info, "lost": [] if frame["recovered"] else [frame["topic"]]}
                        )
                    else:
                        self.notices.append({"event": "subscribed", **info})
                elif op == "error" and "ref" not in frame:
                    self.errors.append(frame)
                ref = frame.get("ref")
                if ref is not None and ref in self._waiting:
                    future = self._waiting.pop(ref)
                    if not future.done():
                        future.set_result(frame)
                await self._notify()
        finally:
            self.close_code = ws.close_code

    async def drop(self) -> None:
        ws, self.ws = self.ws, None
        await self._stop_task()
        if ws is not None and ws.transport is not None:
            ws.transport.abort()  # no closing handshake: like a lost network
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.wait_closed(), CONNECT_TIMEOUT)

    async def close(self) -> None:
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), CONNECT_TIMEOUT)
        await self.drop()


#: Raw sockets: connects in flight at once (listen backlogs are small) and the wait bound.
RAW_CONNECTING = 32
RAW_WAIT = 30.0


@dataclass
class Raw:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    received: bytes = b""

    async def read_until(self, marker: bytes) -> bytes:
        deadline = time.monotonic() + RAW_WAIT
        while marker not in self.received:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {marker!r} in {self.received[-300:]!r}")
            chunk = await asyncio.wait_for(self.reader.read(65536), remaining)
            if not chunk:
                raise AssertionError(f"EOF before {marker!r}: {self.received[-300:]!r}")
            self.received += chunk
        return self.received

    async def read_to_eof(self) -> bytes:
        async with asyncio.timeout(RAW_WAIT):
            while chunk := await self.reader.read(65536):
                self.received += chunk
        return self.received

    def close(self) -> None:
        self.writer.transport.abort()


@contextlib.asynccontextmanager
async def open_raw(port: int, paths: list[str]) -> AsyncIterator[list[Raw]]:
    """One raw HTTP/1.1 GET per path (``Connection: close``); all aborted at exit.

    All connections are established first, then every request is written at once, so
    the server receives them as one burst.
    """
    gate = asyncio.Semaphore(RAW_CONNECTING)
    opened: list[Raw] = []

    async def one() -> Raw:
        async with gate:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), RAW_WAIT
            )
        raw = Raw(reader, writer)
        opened.append(raw)
        return raw

    try:
        conns = list(await asyncio.gather(*(one() for _ in paths)))
        for raw, path in zip(conns, paths, strict=True):
            raw.writer.write(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
        await asyncio.gather(*(raw.writer.drain() for raw in conns))
        yield conns
    finally:
        for raw in opened:
            raw.close()


CLIENTS: dict[str, type[BaseClient]] = {
    "poll": PollClient,
    "longpoll": LongPollClient,
    "sse": SSEClient,
    "ws": WSClient,
}


def make_client(
    transport: str,
    base_url: str,
    topics: Sequence[str] | str,
    cursor: str | dict[str, str] | None = None,
) -> BaseClient:
    """A client of ``transport`` ("poll", "longpoll", "sse" or "ws")."""
    if isinstance(topics, str):
        topics = [topics]
    return CLIENTS[transport](base_url, topics, cursor)


def seqs(events: Sequence[dict[str, Any]], topic: str | None = None) -> list[int]:
    return [e["seq"] for e in events if topic is None or e["topic"] == topic]
