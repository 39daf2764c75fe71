"""How a :class:`~rtdelivery.testing.WebSocketClient` moves text frames: in-process
through Channels' communicator, or over a real socket with ``websockets``."""

# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from .waiting import DEFAULT_TIMEOUT


class _Transport:
    """How a :class:`WebSocketClient` moves text frames (in-process or over a socket)."""

    close_code: int | None = None

    async def send(self, text: str) -> None:
        raise NotImplementedError

    async def receive(self, timeout: float) -> str | None:
        """The next text frame; None once closed (``close_code`` set); TimeoutError."""
        raise NotImplementedError

    async def close(self, code: int) -> None:
        raise NotImplementedError


class _CommunicatorTransport(_Transport):
    def __init__(self, communicator: Any) -> None:
        self.communicator = communicator

    async def send(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def receive(self, timeout: float) -> str | None:
        communicator = self.communicator
        if self.close_code is not None:
            return None
        while True:
            if communicator.future.done() and communicator.output_queue.empty():
                communicator.future.result()  # the application's exception, if any
                self.close_code = 1006
                return None
            # Not receive_output(): on a timeout it cancels the application.
            getter = asyncio.ensure_future(communicator.output_queue.get())
            done, _ = await asyncio.wait(
                {getter, communicator.future},
                timeout=timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if getter not in done:
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
                if not done:
                    raise TimeoutError
                continue  # the application ended: report it above
            message = getter.result()
            if message["type"] == "websocket.send":
                text = message.get("text")
                if text is None:
                    raise AssertionError(
                        f"Expected a JSON text frame, got binary {message.get('bytes')!r}."
                    )
                return str(text)
            if message["type"] == "websocket.close":
                self.close_code = int(message.get("code", 1000))
                return None

    async def close(self, code: int) -> None:
        if self.close_code is None:
            self.close_code = code
            await self.communicator.disconnect(code, timeout=DEFAULT_TIMEOUT)
        else:
            await self.communicator.wait(DEFAULT_TIMEOUT)


class _WebsocketsTransport(_Transport):
    def __init__(self, connection: Any) -> None:
        self.connection = connection

    async def send(self, text: str) -> None:
        await self.connection.send(text)

    async def receive(self, timeout: float) -> str | None:
        from websockets.exceptions import ConnectionClosed

        if self.close_code is not None:
            return None
        try:
            message = await asyncio.wait_for(self.connection.recv(), timeout)
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd is not None else 1006
            return None
        if not isinstance(message, str):
            raise AssertionError(f"Expected a JSON text frame, got binary {message!r}.")
        return message

    async def close(self, code: int) -> None:
        if self.close_code is None:
            self.close_code = code
        await self.connection.close(code)
