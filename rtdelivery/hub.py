"""The per-process fan-out over the Channels layer.

One layer channel per hub (one hub per event loop, i.e. per server process) joins the
group of every topic that has at least one local subscriber, and leaves when the last
one goes. Each incoming event is turned into one :class:`Event` (encoded once) and
offered to the local subscribers' bounded inboxes. Redis work per event is therefore
O(processes), not O(connections), and no consumer handler runs per subscriber.

The backplane may drop messages (channels-redis over capacity or after group expiry,
the pub/sub layer during a reconnect). The hub tracks the last ``seq`` it fanned out
per topic; a skip is filled from history before delivery, duplicates are dropped, and
a periodic tail check catches drops at the end of a burst.

The layer's message schema and group names belong to :mod:`rtdelivery.backplane`.
When Redis is unreachable every call raises
:class:`~rtdelivery.core.errors.Unavailable`, and the background loops (receive, tail
check, group refresh) retry quietly (:mod:`rtdelivery.outage` logs the outage once).
When it is back, the hub re-joins its groups and fills from history what the outage
held back, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

from channels.layers import BaseChannelLayer

from . import backplane, metrics, outage
from .backplane import PresenceChange, get_layer
from .conf import get_settings
from .core.cursors import Position
from .core.errors import Unavailable
from .core.events import Event
from .history import History, get_history
from .subscriber import Notice, Subscriber

logger = logging.getLogger("rtdelivery.hub")

__all__ = ["Hub", "Subscription", "aclose_hub", "get_hub", "get_layer", "running_hub_loops"]

#: Backoff bounds (seconds) of the receive loop and of recovery after an outage.
MIN_BACKOFF = 0.05
MAX_BACKOFF = 5.0


@dataclass(frozen=True)
class Subscription:
    """What :meth:`Hub.subscribe` tells the transport."""

    topic: str
    position: Position
    recovered: bool


@dataclass(eq=False)
class _TopicState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    subs: dict[Subscriber, None] = field(default_factory=dict)
    position: Position | None = None
    joined: bool = False
    removed: bool = False
    pending: list[Event] = field(default_factory=list)
    suspect_head: Position | None = None  # tail check: a head seen ahead of us last time


class Hub:
    """Fan-out for one event loop. Get it with :func:`get_hub`."""

    def __init__(self, layer: BaseChannelLayer, history: History) -> None:
        self.layer = layer
        self.history = history
        self.key = history.key
        self.channel: str | None = None
        self._topics: dict[str, _TopicState] = {}
        self._deliver_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._start_lock = asyncio.Lock()
        self._recovery: asyncio.Task[None] | None = None
        self.closed = False
        self.loop = asyncio.get_running_loop()

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        async with self._start_lock:
            if self.channel is not None:
                return
            if self.closed:
                raise RuntimeError("This hub was closed.")
            self.channel = await backplane.new_channel(self.layer)
            outage.add_listener(self)
            outage.quiet_layer_logs()
            self._tasks.append(asyncio.create_task(self._receive_loop(), name="rtdelivery-hub"))
            conf = get_settings()
            if conf.tail_check_interval:
                self._tasks.append(asyncio.create_task(self._tail_loop(conf.tail_check_interval)))
            refresh = conf.group_refresh_interval
            if refresh is None and getattr(self.layer, "group_expiry", None):
                refresh = max(1.0, float(self.layer.group_expiry) / 3)
            if refresh:
                self._tasks.append(asyncio.create_task(self._refresh_loop(refresh)))

    async def aclose(self) -> None:
        """Leave every group, close every subscriber and stop the hub's tasks."""
        self.closed = True
        outage.remove_listener(self)
        tasks = [*self._tasks, *([self._recovery] if self._recovery else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._recovery = None
        topics, self._topics = self._topics, {}
        for topic, state in topics.items():
            for sub in state.subs:
                sub.close()
            if state.joined and self.channel:
                with contextlib.suppress(Exception):  # the group expires on its own
                    await backplane.leave(self.layer, topic, self.channel)
        if _hubs.get(self.loop) is self:
            del _hubs[self.loop]

    @property
    def topics(self) -> list[str]:
        return list(self._topics)

    def local_subscribers(self, topic: str) -> int:
        state = self._topics.get(topic)
        return len(state.subs) if state else 0

    # -- subscriptions ---------------------------------------------------------------
    async def subscribe(
        self,
        sub: Subscriber,
        topic: str,
        since: Position | None = None,
        *,
        announce: Callable[[Subscription], Notice | None] | None = None,
    ) -> Subscription:
        """Subscribe live first, then replay history after ``since``; duplicates dropped.

        When this returns, every event published afterwards reaches ``sub``. If given,
        ``announce(subscription)`` makes the notice queued ahead of the backlog (so a
        "subscribed" frame precedes the topic's events). Raises
        :class:`~rtdelivery.core.errors.Unavailable` (and subscribes nothing) when the
        layer or the history cannot be reached.
        """
        await self.start()
        while True:
            state = self._topics.get(topic)
            if state is None:
                state = self._topics[topic] = _TopicState()
            async with state.lock:
                if state.removed:
                    continue  # lost a race with the last unsubscribe; join afresh
                if not state.joined:
                    await self._join(topic, state)
                state.subs[sub] = None
                sub.start_replay(topic)
                break
        try:
            result = await self.history.read(topic, since)
        except BaseException:
            await self.unsubscribe(sub, topic)
            raise
        subscription = Subscription(topic, result.position, result.recovered)
        first = announce(subscription) if announce is not None else None
        sub.finish_replay(topic, result.events, result.position, first)
        if since is not None and not result.recovered:
            metrics.incr("resumes_lost")
        return subscription

    async def _join(self, topic: str, state: _TopicState) -> None:
        assert self.channel is not None
        try:
            await backplane.join(self.layer, topic, self.channel)
            head = await self.history.read(topic, None)
        except BaseException:
            state.removed = True
            try:
                with contextlib.suppress(Exception):
                    await backplane.leave(self.layer, topic, self.channel)
            finally:  # after the leave, as in unsubscribe()
                if self._topics.get(topic) is state:
                    del self._topics[topic]
            raise
        try:
            async with self._deliver_lock:
                state.position = head.position
                state.joined = True
                pending, state.pending = state.pending, []
                for event in pending:
                    await self._handle(event)
        except BaseException:
            # A gap fill failed (history unreachable): leave, as if the join had failed,
            # rather than keep a membership nobody will ever use.
            state.removed = True
            try:
                with contextlib.suppress(Exception):
                    await backplane.leave(self.layer, topic, self.channel)
            finally:
                if self._topics.get(topic) is state:
                    del self._topics[topic]
            raise

    async def unsubscribe(self, sub: Subscriber, topic: str) -> None:
        sub.forget(topic)
        state = self._topics.get(topic)
        if state is None:
            return
        state.subs.pop(sub, None)
        if state.subs:
            return
        async with state.lock:
            if state.subs or state.removed:
                return
            state.removed = True
            try:
                if state.joined and self.channel is not None:
                    try:
                        await backplane.leave(self.layer, topic, self.channel)
                    except Unavailable:
                        pass  # logged by outage; the membership expires on its own
                    except Exception:
                        logger.warning("Could not leave group for topic %s", topic, exc_info=True)
            finally:
                # Only now, still under the lock: a subscribe arriving meanwhile waited on
                # this state and joins afresh after the leave, never before it.
                if self._topics.get(topic) is state:
                    del self._topics[topic]

    async def unsubscribe_all(self, sub: Subscriber) -> None:
        for topic in sub.topics:
            await self.unsubscribe(sub, topic)

    # -- delivery ----------------------------------------------------------------------
    async def _receive_loop(self) -> None:
        assert self.channel is not None
        backoff = MIN_BACKOFF
        while True:
            try:
                message = await backplane.receive(self.layer, self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not isinstance(exc, Unavailable):  # outage already logged it, once
                    logger.exception("Channel layer receive failed; retrying in %.2fs", backoff)
                # Memberships may be lost with the layer's data (a Redis restart).
                self._recover_later()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = MIN_BACKOFF
            try:
                item = backplane.decode(message, self.key)
                if type(item) is Event:
                    async with self._deliver_lock:
                        await self._handle(item)
                elif type(item) is PresenceChange:
                    self._presence(item)
            except Unavailable:
                pass  # a gap fill failed: the tail check or the next event fills it later
            except Exception:
                logger.exception("Could not deliver layer message %r", message.get("id"))

    def _presence(self, change: PresenceChange) -> None:
        """Presence changes are not events (no seq, no history): pass them on as notices."""
        state = self._topics.get(change.topic)
        if state is None or not state.joined:
            return
        notice = Notice("presence", data=change.data)
        for sub in state.subs:
            if change.topic in sub.positions:
                sub.push_notice(notice)

    async def _handle(self, event: Event) -> None:
        """Fan one event out, filling a gap from history first. Under the lock."""
        topic = event.topic
        state = self._topics.get(topic)
        if state is None or state.removed:
            return
        if not state.joined:
            state.pending.append(event)
            return
        epoch, seq = event.epoch, event.seq
        position = state.position
        assert position is not None
        if epoch == position.epoch and seq <= position.seq:
            metrics.counters["duplicates_dropped"] += 1
            return
        if epoch != position.epoch or seq > position.seq + 1:
            await self._fill(topic, state, event.position)
            return
        state.position = event.position
        for sub in state.subs:
            sub.offer(event)

    async def _fill(self, topic: str, state: _TopicState, seen: Position) -> None:
        """Deliver what history holds between our position and ``seen`` (and beyond)."""
        assert state.position is not None
        since = state.position
        if seen.epoch != since.epoch:
            head = (await self.history.heads([topic]))[topic]
            if head is None or head.epoch != seen.epoch:
                return  # a straggler from a lost epoch: nothing to deliver
            since = Position(seen.epoch, 0)
        result = await self.history.read(topic, since)
        metrics.incr("gaps_filled")
        if not result.recovered:
            # The missing events are gone from history too: say so, then go on live.
            logger.warning("Events lost on topic %s after %s", topic, since)
            for sub in state.subs:
                sub.reset(topic, result.position)
            state.position = result.position
            return
        for event in result.events:
            for sub in state.subs:
                sub.offer(event)
        state.position = result.position

    async def _tail_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check_tail()
            except asyncio.CancelledError:
                raise
            except Unavailable:
                self._recover_later()  # logged by outage
            except Exception:
                logger.warning("Tail check failed", exc_info=True)

    async def check_tail(self, *, immediate: bool = False) -> None:
        """Fill events that history has but the backplane never brought.

        A head ahead of us is only acted on when it was already ahead at the previous
        check (``immediate`` skips that grace period), so events still in flight on the
        layer are not fetched twice.
        """
        topics = [t for t, s in self._topics.items() if s.joined and s.subs]
        if not topics:
            return
        heads = await self.history.heads(topics)
        async with self._deliver_lock:
            for topic, head in heads.items():
                state = self._topics.get(topic)
                if head is None or state is None or state.position is None:
                    continue
                position, suspect = state.position, state.suspect_head
                ahead = head.epoch != position.epoch or head.seq > position.seq
                # Still short of what the previous check saw (in that head's epoch)?
                stuck = suspect is not None and (
                    position.epoch != suspect.epoch or position.seq < suspect.seq
                )
                if not ahead:
                    state.suspect_head = None
                elif immediate or stuck:
                    await self._fill(topic, state, head)
                    state.suspect_head = None
                else:
                    state.suspect_head = head

    async def _refresh_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self._rejoin()
            except asyncio.CancelledError:
                raise
            except Unavailable:
                self._recover_later()  # logged by outage
            except Exception:
                logger.warning("Could not refresh group memberships", exc_info=True)

    async def _rejoin(self) -> None:
        """(Re-)join the group of every joined topic (idempotent: also a refresh)."""
        assert self.channel is not None
        for topic, state in list(self._topics.items()):
            # Under the topic's lock: a refresh must not land after a last
            # unsubscribe's group_discard and keep us in the group for a day.
            async with state.lock:
                if state.joined and not state.removed:
                    await backplane.join(self.layer, topic, self.channel)

    # -- outages -----------------------------------------------------------------------
    def backend_recovered(self) -> None:
        """An outage ended (noticed anywhere in the process, any thread): re-join."""
        if self.closed or self.loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self.loop.call_soon_threadsafe(self._recover_later)

    def _recover_later(self) -> None:
        """Start (once) re-joining every group and filling from history, retrying until
        the backend answers: a Redis restart loses the layer's memberships."""
        if self.closed or self.channel is None:
            return
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self._recover(), name="rtdelivery-hub-recover")

    async def _recover(self) -> None:
        delay = MIN_BACKOFF
        while True:
            try:
                await self._rejoin()
                # Events published while the layer could not bring them: from history.
                await self.check_tail(immediate=True)
                return
            except Unavailable:
                pass  # still down (logged by outage): try again
            except Exception:  # not an outage: retrying would not help
                logger.warning("Could not re-join groups after an outage", exc_info=True)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def get_hub() -> Hub:
    """The running loop's hub, created on first use (it joins groups lazily)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None or hub.closed:
        hub = _hubs[loop] = Hub(get_layer(), get_history())
    return hub


def running_hub_loops() -> list[asyncio.AbstractEventLoop]:
    """Loops whose hub is serving subscribers (sync publish prefers them)."""
    return [loop for loop, hub in _hubs.items() if hub.channel and loop.is_running()]


async def aclose_hub() -> None:
    """Close the running loop's hub, if any (tests, shutdown)."""
    hub = _hubs.get(asyncio.get_running_loop())
    if hub is not None:
        await hub.aclose()
