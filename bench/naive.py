"""The naive baseline: one Channels consumer per socket, one ``group_add`` each."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

GROUP = "bench"


class NaiveConsumer(AsyncWebsocketConsumer):
    """What a hand-written Channels consumer usually looks like."""

    channel_layer_alias = "naive"

    async def connect(self) -> None:
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def bench_event(self, message: dict[str, Any]) -> None:
        await self.send(text_data=message["text"])
