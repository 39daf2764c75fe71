"""``EVENTSTREAM_STORAGE_CLASS = "rtdelivery.contrib.eventstream.storage.RTDeliveryStorage"``.

django-eventstream's ``send_event()`` appends every event of a reliable channel to its
storage class before anything else, and takes the id it returns. This storage appends
by publishing through rtdelivery: the event is stored in rtdelivery's history (its
``seq`` becomes the id), broadcast to every process on the Channels layer, and so
delivered on every transport, exactly once and with gap repair. That needs one setting
and no change to the code that calls ``send_event``.

It works from sync code (views, signals, workers, management commands: rtdelivery's
publisher thread, no loop per call) and from async code. There it waits for the
publish on that thread, blocking the event loop for one Redis round trip, as
django-eventstream's own ``RedisStorage`` does; ``await
rtdelivery.contrib.eventstream.asend_event(...)`` does not block.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from django_eventstream.event import Event as ESEvent
from django_eventstream.storage import EventDoesNotExist, StorageBase

from ... import outage
from ...core.cursors import Position
from ...history import get_history
from ...hub import running_hub_loops
from ...publishing import PUBLISH_TIMEOUT, apublish, in_event_loop, publisher_loop
from .data import from_stored, to_stored
from .names import channel_to_topic

T = TypeVar("T")


def run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine from sync code on a loop that outlives the call: the server's
    (its connections are open) unless the caller is on an event loop itself, then
    rtdelivery's publisher thread (never the caller's own loop, which would deadlock)."""
    if in_event_loop():
        loop = publisher_loop()
    else:
        loops = running_hub_loops()
        loop = loops[0] if loops else publisher_loop()

    async def call() -> T:
        return await factory()

    future = asyncio.run_coroutine_threadsafe(call(), loop)
    try:
        return future.result(timeout=PUBLISH_TIMEOUT)
    except TimeoutError as exc:
        future.cancel()
        raise outage.unavailable(exc, "eventstream") from exc


class RTDeliveryStorage(StorageBase):
    """django-eventstream's storage interface on rtdelivery's history."""

    def append_event(self, channel: str, event_type: str, data: Any) -> ESEvent:
        """Publish on the channel's topic; the event's id is its ``seq``. Raises
        :class:`~.names.InvalidChannel`, ``InvalidEvent`` (an event type rtdelivery does
        not accept), ``EventTooLarge`` or ``Unavailable`` (nothing was published)."""
        topic = channel_to_topic(channel)
        stored = to_stored(data)
        event = run(lambda: apublish(topic, stored, type=event_type))
        return ESEvent(channel, event_type, data, id=event.seq)

    def get_events(self, channel: str, last_id: int, limit: int = 100) -> list[ESEvent]:
        """The events after ``last_id`` (at most ``limit``); ``EventDoesNotExist`` with
        the channel's current id when ``last_id`` is no longer (or never was) in the
        history."""
        topic = channel_to_topic(channel)
        last_id = int(last_id)

        async def read() -> tuple[int, list[Any]] | int:
            history = get_history()
            head = (await history.heads([topic]))[topic]
            current = head.seq if head is not None else 0
            if last_id == current:
                return current, []
            if head is None or last_id > current or last_id < 0:
                return current
            result = await history.read(topic, Position(head.epoch, last_id), limit)
            if not result.recovered:
                return result.position.seq
            return current, result.events

        found = run(read)
        if isinstance(found, int):
            raise EventDoesNotExist(f"No such event {last_id}", found)
        return [
            ESEvent(channel, event.type, from_stored(event.data), id=event.seq)
            for event in found[1]
        ]

    def get_current_id(self, channel: str) -> int:
        """The channel's latest id (its topic's head ``seq``; 0 before the first event)."""
        topic = channel_to_topic(channel)

        async def head() -> int:
            position = (await get_history().heads([topic]))[topic]
            return position.seq if position is not None else 0

        return run(head)
