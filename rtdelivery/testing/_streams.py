"""Where an :class:`~rtdelivery.testing.SSEReader` reads a response from: a real socket
(``httpx``) or an ASGI application run in-process (Channels' communicator)."""

# Bounded waits with a `timeout` argument are this package's API.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit


class _Stream:
    """Where an :class:`SSEReader` reads from: status, headers and body chunks."""

    status = 0
    headers: dict[str, str]
    chunks: AsyncIterator[bytes]

    async def aclose(self) -> None:
        raise NotImplementedError


class _HttpxStream(_Stream):
    async def open(self, url: str, headers: list[tuple[str, str]], timeout: float) -> None:
        from .http import _httpx

        httpx = _httpx()
        # No read timeout: a quiet stream is normal; the reader bounds each wait itself.
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, read=None))
        try:
            request = self.client.build_request("GET", url, headers=headers)
            self.response = await self.client.send(request, stream=True)
        except BaseException:
            await self.client.aclose()
            raise
        self.status = self.response.status_code
        self.headers = {k.lower(): v for k, v in self.response.headers.items()}
        self.chunks = self.response.aiter_bytes()

    async def aclose(self) -> None:
        try:
            await self.response.aclose()
        finally:
            await self.client.aclose()


class _ASGIStream(_Stream):
    async def open(
        self, application: Any, url: str, headers: list[tuple[str, str]], timeout: float
    ) -> None:
        from channels.testing import ApplicationCommunicator

        parts = urlsplit(url)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": parts.path,
            "raw_path": parts.path.encode(),
            "query_string": parts.query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self.communicator = ApplicationCommunicator(application, scope)
        self.timeout = timeout
        await self.communicator.send_input({"type": "http.request", "body": b""})
        start = await self._message(timeout)
        if start is None or start["type"] != "http.response.start":
            raise AssertionError(
                f"Expected the response to start within {timeout}s, got {start!r}."
            )
        self.status = int(start["status"])
        self.headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start.get("headers", [])
        }
        self.chunks = self._body()

    async def _message(self, timeout: float | None) -> dict[str, Any] | None:
        """The application's next message; None once it ended or after ``timeout``.
        Not ``receive_output()``: on a timeout it cancels the application."""
        communicator = self.communicator
        while True:
            if not communicator.output_queue.empty():
                return dict(communicator.output_queue.get_nowait())
            if communicator.future.done():
                communicator.future.result()  # the application's exception, if any
                return None
            getter = asyncio.ensure_future(communicator.output_queue.get())
            done, _ = await asyncio.wait(
                {getter, communicator.future},
                timeout=timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if getter in done:
                return dict(getter.result())
            getter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await getter
            if not done:
                return None

    async def _body(self) -> AsyncIterator[bytes]:
        while (message := await self._message(None)) is not None:
            yield message.get("body", b"")
            if not message.get("more_body", False):
                return

    async def aclose(self) -> None:
        if not self.communicator.future.done():
            await self.communicator.send_input({"type": "http.disconnect"})
        await self.communicator.wait(self.timeout)
