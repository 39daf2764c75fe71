"""A project's own WebSocket consumer, to route beside rtdelivery's (tests/test_consumers.py).

It echoes every text frame; ``"whoami"`` answers ``"user:<username>"`` (``"user:"`` when
anonymous), which shows the ``AuthMiddlewareStack`` it was routed inside of.
"""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer


class EchoConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data == "whoami":
            user = self.scope.get("user")
            name = getattr(user, "username", "") if user is not None else "no-user-in-scope"
            await self.send(text_data=f"user:{name}")
        elif text_data is not None:
            await self.send(text_data=text_data)
