"""rtdelivery's Server-Sent Events stream in tests: :func:`sse_events` opens one, over a
real socket (``httpx``, e.g. to a :func:`~rtdelivery.testing.live_server`) or in-process
(an ASGI application), and its :class:`SSEReader` hands out the parsed frames."""

# Bounded waits with a `timeout` argument are this package's API (as on Channels'
# communicators): every helper fails after its timeout instead of hanging a test run.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

from ._common import _default_application, cookie_header
from ._streams import _ASGIStream, _HttpxStream, _Stream
from .waiting import DEFAULT_TIMEOUT, NO_EVENT_TIMEOUT

__all__ = ["SSEFrame", "SSEReader", "sse_events"]

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class SSEFrame:
    """One dispatched block of the stream (comment-only blocks are not frames)."""

    #: ``event:`` (``"message"`` when the block names none).
    event: str = "message"
    #: The ``data:`` lines joined with ``\n``; None when the block had none.
    data: str | None = None
    #: ``id:``, None when the block had none.
    id: str | None = None
    #: ``retry:`` in milliseconds, None when the block had none.
    retry: int | None = None

    def json(self) -> Any:
        """``data`` parsed as JSON."""
        if self.data is None:
            raise AssertionError(f"Expected a frame with data, got {self!r}.")
        return json.loads(self.data)


class _SSEParser:
    """Incremental text/event-stream parser (the WHATWG rules, minus dispatch semantics:
    every block with a field is a frame, so tests see ``retry:`` and ``rt.*`` frames)."""

    def __init__(self) -> None:
        self._buffer = ""
        self._fields: dict[str, Any] = {}
        self._data: list[str] = []
        #: Comment lines, without the leading ``:`` and one space (heartbeats).
        self.comments: list[str] = []

    def feed(self, text: str) -> list[SSEFrame]:
        text = self._buffer + text
        # A trailing "\r" may be the first half of a "\r\n" split over two chunks.
        held = "\r" if text.endswith("\r") else ""
        lines = _LINE_END.split(text[: len(text) - len(held)])
        self._buffer = lines.pop() + held  # the last piece is an unfinished line
        frames = []
        for line in lines:
            frame = self._line(line)
            if frame is not None:
                frames.append(frame)
        return frames

    def _line(self, line: str) -> SSEFrame | None:
        if line == "":
            if not self._fields and not self._data:
                return None
            frame = SSEFrame(data="\n".join(self._data) if self._data else None, **self._fields)
            self._fields, self._data = {}, []
            return frame
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "":
            self.comments.append(value)
        elif name == "data":
            self._data.append(value)
        elif name == "event":
            self._fields["event"] = value
        elif name == "id" and "\0" not in value:
            self._fields["id"] = value
        elif name == "retry" and value.isdigit():
            self._fields["retry"] = int(value)
        return None


class SSEReader:
    """An open SSE response, read frame by frame; get one with :func:`sse_events`.

    Like :class:`~rtdelivery.testing.WebSocketClient`, it keeps frames it was not asked
    for (``rt.open``, ``rt.presence``), in order, for :meth:`receive` and :meth:`expect`.
    Every wait is bounded by ``timeout``; nothing sleeps.
    """

    def __init__(self, stream: _Stream, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._stream = stream
        self.timeout = timeout
        #: The response's status and headers (lower-case names).
        self.status = stream.status
        self.headers = stream.headers
        #: Every frame received so far, in order (consumed or not).
        self.frames: list[SSEFrame] = []
        self._pending: deque[SSEFrame] = deque()
        self._parser = _SSEParser()
        # Incremental: a character's UTF-8 bytes may be split over two chunks.
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.ended = False
        #: Whether the answer is an event stream (else see :meth:`json`).
        self.streaming = self.headers.get("content-type", "").startswith("text/event-stream")
        self._raw = b""
        # One task reads the body, so a timed-out wait never cancels a read mid-chunk.
        self._pump = asyncio.ensure_future(self._read_body())

    @property
    def comments(self) -> list[str]:
        """Comment lines received so far (``hb`` for a heartbeat)."""
        return self._parser.comments

    @property
    def last_event_id(self) -> str | None:
        """The last ``id:`` received: what a browser sends as ``Last-Event-ID``."""
        return next((f.id for f in reversed(self.frames) if f.id is not None), None)

    async def _read_body(self) -> None:
        try:
            async for chunk in self._stream.chunks:
                await self._chunks.put(chunk)
        finally:
            await self._chunks.put(None)

    async def _read(self, deadline: float) -> bool:
        """Parse one more chunk into the pending frames; False on timeout or end."""
        remaining = deadline - time.monotonic()
        if self.ended or remaining <= 0:
            return False
        try:
            chunk = await asyncio.wait_for(self._chunks.get(), remaining)
        except TimeoutError:
            return False
        if chunk is None:
            self.ended = True
            if self._pump.done():
                self._pump.result()  # the transport's error, if any
            return False
        if not self.streaming:
            self._raw += chunk
            return True
        for frame in self._parser.feed(self._decoder.decode(chunk)):
            self.frames.append(frame)
            self._pending.append(frame)
        return True

    async def _find(self, match: Callable[[SSEFrame], bool], timeout: float) -> SSEFrame | None:
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            for index in range(checked, len(self._pending)):
                if match(self._pending[index]):
                    frame = self._pending[index]
                    del self._pending[index]
                    return frame
            checked = len(self._pending)
            if not await self._read(deadline):
                return None

    def _ended_note(self) -> str:
        return " The stream had ended." if self.ended else ""

    async def receive(self, timeout: float | None = None) -> SSEFrame:
        """The next frame not consumed yet, whatever its ``event`` (``retry:`` included)."""
        timeout = self.timeout if timeout is None else timeout
        frame = await self._find(lambda f: True, timeout)
        if frame is None:
            raise AssertionError(f"No SSE frame within {timeout}s.{self._ended_note()}")
        return frame

    async def expect(self, event: str, timeout: float | None = None) -> SSEFrame:
        """The first frame not consumed yet whose ``event`` is ``event`` (e.g. ``rt.open``)."""
        timeout = self.timeout if timeout is None else timeout
        frame = await self._find(lambda f: f.event == event, timeout)
        if frame is None:
            seen = [f.event for f in self.frames]
            raise AssertionError(
                f"No {event!r} frame within {timeout}s (received {seen}).{self._ended_note()}"
            )
        return frame

    async def receive_event(self, timeout: float | None = None) -> dict[str, Any]:
        """The next event (the ``data`` of a frame whose ``event`` is not ``rt.*``), parsed.

        Control frames before it stay available to :meth:`receive`; an ``rt.reset`` or
        ``rt.close`` before it fails the call.
        """
        timeout = self.timeout if timeout is None else timeout

        def match(f: SSEFrame) -> bool:
            return f.data is not None and (
                not f.event.startswith("rt.") or f.event in ("rt.reset", "rt.close")
            )

        frame = await self._find(match, timeout)
        if frame is None:
            raise AssertionError(f"No SSE event within {timeout}s.{self._ended_note()}")
        if frame.event.startswith("rt."):
            raise AssertionError(f"Expected an event, got {frame.event}: {frame.data}")
        event: dict[str, Any] = frame.json()
        return event

    async def receive_events(self, n: int, timeout: float | None = None) -> list[dict[str, Any]]:
        """The next ``n`` events; fails if fewer arrive within ``timeout`` in all."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        got: list[dict[str, Any]] = []
        while len(got) < n:
            try:
                got.append(await self.receive_event(max(0.0, deadline - time.monotonic())))
            except AssertionError as exc:
                seen = [(e.get("topic"), e.get("seq")) for e in got]
                raise AssertionError(
                    f"Expected {n} SSE events within {timeout}s, got {len(got)}: {seen}. {exc}"
                ) from None
        return got

    async def assert_no_event(self, timeout: float = NO_EVENT_TIMEOUT) -> None:
        """Fail if an event frame arrives (or is waiting) within ``timeout`` seconds."""
        frame = await self._find(
            lambda f: f.data is not None and not f.event.startswith("rt."), timeout
        )
        if frame is not None:
            raise AssertionError(f"Expected no SSE event within {timeout}s, got {frame!r}.")

    async def expect_end(self, timeout: float | None = None) -> None:
        """Wait until the server ends the response; frames before stay readable."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while await self._read(deadline):
            pass
        if not self.ended:
            raise AssertionError(f"The server did not end the SSE response in {timeout}s.")

    async def json(self, timeout: float | None = None) -> Any:
        """A JSON answer instead of a stream (an error such as ``403 forbidden``), read to
        its end and parsed."""
        await self.expect_end(timeout)
        return json.loads(self._raw)

    async def aclose(self) -> None:
        """Disconnect (idempotent); the server sees the client go away."""
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        await self._stream.aclose()


@contextlib.asynccontextmanager
async def sse_events(
    target: str | Any = None,
    topics: str | Iterable[str] = (),
    *,
    cursor: str | None = None,
    last_event_id: str | None = None,
    path: str | None = None,
    cookies: Mapping[str, Any] | SimpleCookie | None = None,
    headers: Iterable[tuple[str, str]] = (),
    expect: int = 200,
    timeout: float = DEFAULT_TIMEOUT,
) -> AsyncIterator[SSEReader]:
    """Open rtdelivery's SSE stream on ``topics`` and read it::

        async with live_server() as server, sse_events(server.url_for("sse"), "feed") as sse:
            opened = await sse.expect("rt.open")
            await apublish("feed", {"n": 1})
            assert (await sse.receive_event())["data"] == {"n": 1}

    ``target``: the stream's URL on a server (read over a real socket with ``httpx``), or
    an ASGI application run in-process (by default the settings' project wrapped by
    ``rtdelivery_application``), at ``path`` (default ``reverse("rtdelivery:sse")``).
    ``topics`` and ``cursor`` are added to the query string; ``last_event_id`` is sent
    as ``Last-Event-ID``; ``cookies`` (e.g. a logged-in test client's) as ``Cookie``.
    Unless the status is ``expect`` the call fails quoting the server's error; with
    another ``expect`` (e.g. 403) read the answer with :meth:`SSEReader.json`. On exit
    the client disconnects.
    """
    params = [("topic", t) for t in ([topics] if isinstance(topics, str) else topics)]
    if cursor is not None:
        params.append(("cursor", cursor))
    raw_headers = [("accept", "text/event-stream"), *headers, *cookie_header(cookies)]
    if last_event_id is not None:
        raw_headers.append(("last-event-id", last_event_id))
    stream: _HttpxStream | _ASGIStream
    if isinstance(target, str):
        url = _with_query(target, params)
        stream = _HttpxStream()
        await stream.open(url, raw_headers, timeout)
    else:
        if path is None:
            from .http import endpoint

            path = endpoint("sse")
        url = _with_query(path, params)
        stream = _ASGIStream()
        raw_headers.append(("host", "testserver"))
        await stream.open(target or _default_application(), url, raw_headers, timeout)
    reader = SSEReader(stream, timeout=timeout)
    try:
        if reader.status != expect:
            said = ""
            if not reader.streaming:
                with contextlib.suppress(AssertionError, ValueError):
                    error = (await reader.json()).get("error", {})
                    said = f" ({error.get('code')}: {error.get('message')})"
            raise AssertionError(f"Expected {expect} from GET {url}, got {reader.status}{said}.")
        yield reader
    finally:
        await reader.aclose()


def _with_query(url: str, params: list[tuple[str, str]]) -> str:
    if not params:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
