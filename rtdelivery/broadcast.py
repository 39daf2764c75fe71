"""Storing and broadcasting publishes with Redis history: one loop's publishes share requests.

:func:`rtdelivery.publishing.apublish` validates a publish (:class:`Prepared`), then hands
it to the running loop's :class:`Batcher`, which appends it to history and sends it to the
processes with subscribers (through the Channels layer, or in the append's own request:
:mod:`rtdelivery.direct_groups`). :func:`send` broadcasts stored events on the layer.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, NamedTuple, TypeAlias

from . import backplane, direct_groups, metrics
from .connections import get_redis
from .core.errors import Unavailable
from .core.events import Event
from .history.redis import Appended, RedisHistory

logger = logging.getLogger("rtdelivery.publish")


class Prepared(NamedTuple):
    """A publish, validated: nothing about it can fail but Redis."""

    topic: str
    type: str
    data_json: str
    key: str | None


async def send(layer: Any, events: list[Event]) -> None:
    """Send stored events on the layer, in order. Never raises: they are stored, so
    subscribers get them from history (gap repair and the hub's tail check); raising
    would invite a retry and a duplicate."""
    for event in events:
        try:
            try:
                await backplane.send_event(layer, event)
            except Unavailable:
                # Once more: after a Redis restart the first send fails on a pooled
                # connection from before it, and the next one reconnects. (A duplicate is
                # dropped by seq.)
                await backplane.send_event(layer, event)
        except Exception as exc:
            not_sent([event], exc)


def not_sent(events: list[Event], exc: BaseException) -> None:
    for event in events:
        if isinstance(exc, Unavailable):  # the outage is logged once, not per event
            logger.debug("Event %s#%s stored but not broadcast", event.topic, event.seq)
        else:
            logger.error(
                "Event %s#%s stored but not broadcast", event.topic, event.seq, exc_info=exc
            )
        metrics.broadcast_failures.inc()


_Item: TypeAlias = "tuple[Prepared, int, asyncio.Future[Event] | None]"


class Batcher:
    """Publishes on one event loop with Redis history: concurrent publishes share requests.

    A publish while none is in flight goes at once, alone. Publishes made meanwhile queue
    up, and all of them go together as soon as it is done: one pipeline appends them all
    (in the order they were made, so each topic's seqs follow that order), then they are
    broadcast, in that order too. With channels-redis's layer on the same Redis
    (:class:`~rtdelivery.direct_groups.DirectGroups`) the append also reads each topic's group
    and, with the layer's default msgpack serializer and no encryption, queues the event
    on the members' channels itself: one request per batch. Otherwise one more script
    queues the whole batch on the members' channels: two requests with subscribers. Every
    publish returns (or raises) only once its event is stored and broadcast, as
    :func:`rtdelivery.apublish` says.
    """

    def __init__(self, history: RedisHistory, layer: Any) -> None:
        self.history = history
        self.layer = layer
        self.direct = direct_groups.direct_groups(layer, history.conf)
        self.loop = asyncio.get_running_loop()
        self.queue: list[_Item] = []
        self.busy = False
        self.task: asyncio.Task[None] | None = None

    async def publish(self, prepared: Prepared, time_ms: int) -> Event:
        if self.busy:
            future: asyncio.Future[Event] = self.loop.create_future()
            self.queue.append((prepared, time_ms, future))
            return await future
        self.busy = True
        try:
            (result,) = await self._run([(prepared, time_ms, None)])
        finally:
            if self.queue:  # queued meanwhile: they go together, in a task of their own
                self.task = self.loop.create_task(self._drain())
            else:
                self.busy = False
        if isinstance(result, BaseException):
            raise result
        return result

    async def _drain(self) -> None:
        try:
            while self.queue:
                batch, self.queue = self.queue, []
                try:
                    await self._run(batch)
                except BaseException as exc:  # a bug, or the loop closing: tell them
                    for _, _, future in [*batch, *self.queue]:
                        if future is None or future.done():
                            continue
                        if isinstance(exc, asyncio.CancelledError):
                            future.cancel()
                        else:
                            future.set_exception(exc)
                    self.queue = []
                    raise
        finally:
            self.busy = False
            self.task = None

    async def _run(self, batch: list[_Item]) -> list[Event | BaseException]:
        items = [(p.topic, p.type, p.data_json, t, p.key) for p, t, _ in batch]
        direct = self.direct
        results: list[Event | BaseException]
        try:
            appended = await self.history.append_many(
                items,
                direct.group_key if direct else None,
                direct.group_cutoff() if direct else 0,
                direct.queue_args(len(items)) if direct and direct.in_append else None,
            )
        except Exception as exc:  # Unavailable: nobody knows what is stored
            results = [exc] * len(batch)
        else:
            results = [a.result for a in appended]
            stored = [
                (a.result, a)
                for a in appended
                if isinstance(a.result, Event) and not a.result.duplicate
            ]
            if len(stored) < len(appended):  # the others repeated an idempotency key
                duplicates = sum(
                    isinstance(a.result, Event) and a.result.duplicate for a in appended
                )
                metrics.publish_duplicates.inc(duplicates)
            if stored:
                metrics.events_published.inc(len(stored))
                if direct is None:
                    await send(self.layer, [e for e, _ in stored])
                elif direct.in_append:  # queued by the append's script
                    _queued(stored)
                    # Where its queueing failed: once more the other way (one script).
                    await self._send_direct(
                        direct, [(e, a.members) for e, a in stored if a.error and a.members]
                    )
                else:
                    await self._send_direct(
                        direct, [(e, a.members) for e, a in stored if a.members]
                    )
        for (_, _, future), result in zip(batch, results, strict=True):
            if future is None or future.done():  # its caller is gone (cancelled)
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        return results

    async def _send_direct(
        self, direct: direct_groups.DirectGroups, sends: list[tuple[Event, list[Any]]]
    ) -> None:
        if not sends:
            return
        client = get_redis()
        try:
            try:
                over = await direct.send(client, sends)
            except Unavailable:
                over = await direct.send(client, sends)  # once more, as send() does
        except Exception as exc:
            not_sent([e for e, _ in sends], exc)
            return
        if over:
            logger.info("%s message(s) dropped: layer channels over capacity", over)


def _queued(stored: list[tuple[Event, Appended]]) -> None:
    """Account for events the append's script queued itself (nothing left to send)."""
    over = 0
    for event, appended in stored:
        if appended.error is not None:  # stored, not queued: sent the other way next
            logger.warning(
                "rtdelivery: the append script could not queue %s seq %s (%s); sending it "
                "with a second request",
                event.topic,
                event.seq,
                appended.error,
            )
        over += appended.over
    if over:
        logger.info("%s message(s) dropped: layer channels over capacity", over)


_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Batcher] = (
    weakref.WeakKeyDictionary()
)


def batcher(history: RedisHistory) -> Batcher:
    """The running loop's batcher for ``history`` and the configured layer."""
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    layer = backplane.get_layer()
    if batcher is None or batcher.history is not history or batcher.layer is not layer:
        # (New settings: one in flight on the previous batcher finishes there.)
        batcher = _batchers[loop] = Batcher(history, layer)
    return batcher
