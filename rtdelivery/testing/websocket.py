"""rtdelivery's WebSocket protocol in tests: :class:`WebSocketClient`, in-process
(:func:`ws_client`) or over a real socket (:func:`live_ws_client`)."""

# Bounded waits with a `timeout` argument are this package's API (as on Channels'
# communicators): every helper fails after its timeout instead of hanging a test run.
# ruff: noqa: ASYNC109

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from ._common import _default_application, cookie_header
from ._ws_transports import _CommunicatorTransport, _Transport, _WebsocketsTransport
from .waiting import DEFAULT_TIMEOUT, NO_EVENT_TIMEOUT

__all__ = ["HandshakeRefused", "WebSocketClient", "live_ws_client", "ws_client"]


class HandshakeRefused(AssertionError):
    """The server refused the WebSocket handshake.

    ``code`` is the close code the application sent (in-process, :func:`ws_client`);
    ``status`` the HTTP status of the refusal (live server, :func:`live_ws_client`).
    """

    def __init__(self, message: str, *, code: int | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


class WebSocketClient:
    """Speaks rtdelivery's WebSocket protocol in tests; frames are plain dicts.

    Requests (:meth:`subscribe`, :meth:`publish`, …) carry a ``ref`` and wait for the
    reply with that ``ref``; an ``error`` reply fails them with an
    :class:`AssertionError` quoting the server. Frames arriving meanwhile (events,
    presence) are kept, in order, for :meth:`receive_event` and :meth:`receive`.
    Get one with :func:`ws_client` (in-process) or :func:`live_ws_client` (live server).
    """

    def __init__(self, transport: _Transport, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._transport = transport
        self.timeout = timeout
        #: Every frame received so far, in order (consumed or not).
        self.frames: list[dict[str, Any]] = []
        self._pending: deque[dict[str, Any]] = deque()
        self._refs = itertools.count(1)

    @property
    def close_code(self) -> int | None:
        """The close code once the connection is closed (by either side), else None."""
        return self._transport.close_code

    # -- raw frames ------------------------------------------------------------------------
    async def send(self, frame: Mapping[str, Any] | str) -> None:
        """Send one frame: a dict (sent as JSON) or raw text (e.g. malformed on purpose)."""
        await self._transport.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def _read(self, deadline: float) -> dict[str, Any] | None:
        """Read one more frame into the log and the pending queue; None on timeout/close."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            text = await self._transport.receive(remaining)
        except TimeoutError:
            return None
        if text is None:
            return None
        frame = json.loads(text)
        if not isinstance(frame, dict):
            raise AssertionError(f"Expected a JSON object frame, got {text!r}.")
        self.frames.append(frame)
        self._pending.append(frame)
        return frame

    async def _find(
        self, match: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any] | None:
        """Remove and return the first pending frame matching, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            for index in range(checked, len(self._pending)):
                frame = self._pending[index]
                if match(frame):
                    del self._pending[index]
                    return frame
            checked = len(self._pending)
            if await self._read(deadline) is None:
                return None

    def _closed_note(self) -> str:
        code = self.close_code
        return f" The connection was closed with code {code}." if code is not None else ""

    async def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next frame not consumed yet, whatever its ``op``."""
        timeout = self.timeout if timeout is None else timeout
        frame = await self._find(lambda f: True, timeout)
        if frame is None:
            raise AssertionError(f"No frame within {timeout}s.{self._closed_note()}")
        return frame

    # -- requests --------------------------------------------------------------------------
    async def request(
        self, frame: Mapping[str, Any], expect: str, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send ``frame`` with a fresh ``ref`` and return the reply with that ``ref``.

        Fails if the reply is an ``error`` frame or its ``op`` is not ``expect``.
        """
        timeout = self.timeout if timeout is None else timeout
        ref = f"t{next(self._refs)}"
        await self.send({**frame, "ref": ref})
        reply = await self._find(lambda f: f.get("ref") == ref, timeout)
        what = f"{frame.get('op')} {frame.get('topic', '')}".strip()
        if reply is None:
            raise AssertionError(f"No reply to {what} within {timeout}s.{self._closed_note()}")
        if reply.get("op") == "error":
            raise AssertionError(f"{what} was refused: {reply.get('code')}: {reply.get('message')}")
        if reply.get("op") != expect:
            raise AssertionError(f"Expected {expect!r} in reply to {what}, got {reply!r}.")
        return reply

    async def subscribe(
        self, topic: str, since: str | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Subscribe (``since``: a cursor or an event ``id``); returns the ``subscribed``
        frame (``recovered``, ``cursor``). Every event published afterwards arrives."""
        frame: dict[str, Any] = {"op": "subscribe", "topic": topic}
        if since is not None:
            frame["since"] = since
        return await self.request(frame, "subscribed", timeout)

    async def unsubscribe(self, topic: str, timeout: float | None = None) -> dict[str, Any]:
        """Unsubscribe; returns the ``unsubscribed`` frame."""
        return await self.request({"op": "unsubscribe", "topic": topic}, "unsubscribed", timeout)

    async def publish(
        self,
        topic: str,
        data: Any,
        type: str = "message",  # noqa: A002
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Publish as this client; returns the ``ack`` frame (``seq``, ``id``)."""
        frame = {"op": "publish", "topic": topic, "type": type, "data": data}
        return await self.request(frame, "ack", timeout)

    async def presence(self, topic: str, timeout: float | None = None) -> dict[str, Any]:
        """Who is subscribed to ``topic``: the ``presence`` reply frame."""
        return await self.request({"op": "presence", "topic": topic}, "presence", timeout)

    async def ping(self, timeout: float | None = None) -> dict[str, Any]:
        """Round trip; returns the ``pong`` frame."""
        return await self.request({"op": "ping"}, "pong", timeout)

    # -- events ----------------------------------------------------------------------------
    async def receive_event(self, timeout: float | None = None) -> dict[str, Any]:
        """The next ``event`` frame (``topic``, ``seq``, ``type``, ``data``, ``id``, …).

        Other frames before it stay available to :meth:`receive`; an ``error`` frame
        before it (e.g. ``too_slow``) fails the call.
        """
        timeout = self.timeout if timeout is None else timeout
        frame = await self._find(lambda f: f.get("op") in ("event", "error"), timeout)
        if frame is None:
            raise AssertionError(f"No event within {timeout}s.{self._closed_note()}")
        if frame["op"] == "error":
            raise AssertionError(
                f"Expected an event, got an error frame: {frame.get('code')}: "
                f"{frame.get('message')}"
            )
        return frame

    async def receive_events(self, n: int, timeout: float | None = None) -> list[dict[str, Any]]:
        """The next ``n`` event frames; fails if fewer arrive within ``timeout`` in all."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        got: list[dict[str, Any]] = []
        while len(got) < n:
            try:
                got.append(await self.receive_event(max(0.0, deadline - time.monotonic())))
            except AssertionError as exc:
                raise AssertionError(
                    f"Expected {n} events within {timeout}s, got {len(got)}: "
                    f"{[(e.get('topic'), e.get('seq')) for e in got]}. {exc}"
                ) from None
        return got

    async def assert_no_event(self, timeout: float = NO_EVENT_TIMEOUT) -> None:
        """Fail if an ``event`` frame arrives (or is waiting) within ``timeout`` seconds."""
        frame = await self._find(lambda f: f.get("op") == "event", timeout)
        if frame is not None:
            raise AssertionError(f"Expected no event within {timeout}s, got {frame!r}.")

    async def expect_close(self, timeout: float | None = None) -> int:
        """Wait until the server closes the connection; returns the close code.

        Frames received before the close stay available to :meth:`receive`.
        """
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while self.close_code is None:
            if await self._read(deadline) is None and self.close_code is None:
                raise AssertionError(f"The server did not close the connection in {timeout}s.")
        return self.close_code

    async def close(self, code: int = 1000) -> None:
        """Close the connection from the client side (idempotent)."""
        await self._transport.close(code)


@contextlib.asynccontextmanager
async def ws_client(
    application: Any = None,
    path: str = "/rt/ws",
    *,
    origin: str | None = "http://testserver",
    cookies: Mapping[str, Any] | SimpleCookie | None = None,
    headers: Iterable[tuple[str, str]] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> AsyncIterator[WebSocketClient]:
    """An in-process WebSocket client of ``application`` (Channels' ``WebsocketCommunicator``)::

        async with ws_client(application, "/rt/ws") as ws:
            await ws.subscribe("chat.lobby")
            await apublish("chat.lobby", {"text": "hi"})
            event = await ws.receive_event()

    ``application`` is your ASGI application (e.g. ``application`` from your ``asgi.py``);
    by default the settings' Django project wrapped by ``rtdelivery_application``, as
    ``asgi.py`` does. The server runs in the test's event loop, sharing its hub with
    :func:`subscribe` and ``apublish``. ``origin`` is sent as the ``Origin`` header
    (Django's test host by default; None sends none). ``cookies``: e.g. a Django test
    client's ``client.cookies`` after ``client.force_login(user)``, to connect as that
    user. Raises :class:`HandshakeRefused` if the server refuses the connection; on exit
    the client disconnects and waits for the application to finish (its errors surface).
    """
    from channels.testing import WebsocketCommunicator

    if application is None:
        application = _default_application()
    raw_headers = [*headers, *cookie_header(cookies)]
    if origin is not None:
        raw_headers.append(("origin", origin))
    communicator = WebsocketCommunicator(
        application,
        path,
        headers=[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in raw_headers],
    )
    connected, code = await communicator.connect(timeout)
    if not connected:
        await communicator.wait(timeout)
        raise HandshakeRefused(
            f"The WebSocket handshake at {path!r} was refused with close code {code} "
            f"(Origin {origin!r}).",
            code=code,
        )
    client = WebSocketClient(_CommunicatorTransport(communicator), timeout=timeout)
    try:
        yield client
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def live_ws_client(
    url: str,
    *,
    origin: str | None = "",
    cookies: Mapping[str, Any] | SimpleCookie | None = None,
    headers: Iterable[tuple[str, str]] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> AsyncIterator[WebSocketClient]:
    """A :class:`WebSocketClient` over a real socket, for a live server::

        async with live_ws_client(f"{server.ws_url}") as ws:
            await ws.subscribe("feed")

    ``url`` is ``ws://host:port/rt/ws`` (``http://`` is accepted too). ``origin``
    defaults to the server's own origin (``http://host:port``); None sends none. Needs the
    ``websockets`` package (a test dependency, not one of rtdelivery's).
    """
    try:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus
    except ImportError as exc:
        raise ImportError(
            "rtdelivery.testing.live_ws_client needs the 'websockets' package "
            "(pip install websockets); rtdelivery does not depend on it at runtime."
        ) from exc

    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    url = parts._replace(scheme=scheme).geturl()
    if origin == "":
        origin = f"{'https' if scheme == 'wss' else 'http'}://{parts.netloc}"
    extra = [*headers, *cookie_header(cookies)]
    try:
        connection = await connect(
            url,
            origin=origin,  # type: ignore[arg-type]
            additional_headers=extra or None,
            open_timeout=timeout,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise HandshakeRefused(
            f"The WebSocket handshake at {url!r} was refused with HTTP {status} "
            f"(Origin {origin!r}).",
            status=status,
        ) from None
    client = WebSocketClient(_WebsocketsTransport(connection), timeout=timeout)
    try:
        yield client
    finally:
        await client.close()
