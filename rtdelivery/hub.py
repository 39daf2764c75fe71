"""The per-process fan-out over the Channels layer.

One layer channel per hub (one hub per event loop, i.e. per server process) joins the
group of every topic that has at least one local subscriber, and leaves when the last
one goes. Each incoming event is turned into one :class:`Event` (encoded once) and
offered to the local subscribers' bounded inboxes. Redis work per event is therefore
O(processes), not O(connections), and no consumer handler runs per subscriber.

A resume (subscribe with ``since``) replays history in pages of at most the
subscriber's ``maxsize`` events, the next one only once the client has taken the
previous one (:class:`~rtdelivery.subscriber.Subscriber` paces it): the backlog never
sits in memory whole, and a client that stops reading holds one page.

The layer's message schema and group names belong to :mod:`rtdelivery.backplane`.
When Redis is unreachable every call raises
:class:`~rtdelivery.core.errors.Unavailable`, and the receive loop retries quietly
(:mod:`rtdelivery.outage` logs the outage once).

What the backplane drops or loses on the way (a skipped ``seq``, the end of a burst,
group memberships after a Redis restart or an outage) is made good from history by the
hub's recovery side, :class:`~rtdelivery.hub_recovery.Recovery`: a mixin of
:class:`Hub`, in its own module (gap filling, the tail check, the restart check, the
group refresh, the re-join after an outage).
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
from .history.base import BEFORE_FIRST
from .hub_recovery import MAX_BACKOFF, MIN_BACKOFF, Recovery
from .ops import reporter as ops_reporter
from .subscriber import Notice, Replay, Subscriber

logger = logging.getLogger("rtdelivery.hub")

__all__ = ["Hub", "Subscription", "aclose_hub", "get_hub", "get_layer", "running_hub_loops"]

#: How often (seconds) the hub looks for a Redis restart when TAIL_CHECK_INTERVAL is 0.
RESTART_CHECK_INTERVAL = 2.0


@dataclass(frozen=True)
class Subscription:
    """What :meth:`Hub.subscribe` tells the transport.

    ``position`` is where the client stands before the topic's backlog: ``since`` after
    a resume, the live end without ``since`` or when history could not continue from it
    (``recovered`` False; after a lost epoch, the new epoch's start, whose retained
    events follow).
    """

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


class Hub(Recovery):
    """Fan-out for one event loop. Get it with :func:`get_hub`.

    Its recovery side (gap filling, the tail and restart checks, re-joins) is the
    :class:`~rtdelivery.hub_recovery.Recovery` mixin.
    """

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
        self._recovery_nudge = asyncio.Event()  # cuts a recovery's backoff short
        self._closing = asyncio.Event()  # ends the background loops' pauses
        self._pagers: set[asyncio.Task[None]] = set()  # resumes paging their backlog
        self._run_ids: tuple[str, ...] | None = None  # of the layer's Redis servers
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
            watch = bool(self._restart_probes())
            if conf.tail_check_interval or watch:
                interval = conf.tail_check_interval or RESTART_CHECK_INTERVAL
                self._tasks.append(
                    asyncio.create_task(
                        self._tail_loop(interval, tail=bool(conf.tail_check_interval))
                    )
                )
            refresh = conf.group_refresh_interval
            if refresh is None and getattr(self.layer, "group_expiry", None):
                refresh = max(1.0, float(self.layer.group_expiry) / 3)
            if refresh:
                self._tasks.append(asyncio.create_task(self._refresh_loop(refresh)))
            if (reporter := ops_reporter.start()) is not None:  # once per process
                self._tasks.append(reporter)

    async def aclose(self) -> None:
        """Leave every group, close every subscriber and stop the hub's tasks."""
        self.closed = True
        self._closing.set()
        self._recovery_nudge.set()
        outage.remove_listener(self)
        tasks = [*self._tasks, *self._pagers, *([self._recovery] if self._recovery else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._pagers.clear()
        self._recovery = None
        topics, self._topics = self._topics, {}
        for topic, state in topics.items():
            metrics.subscriptions.dec(len(state.subs))
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

    @property
    def replays(self) -> int:
        """Resumes still paging their backlog in."""
        return len(self._pagers)

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
        "subscribed" frame precedes the topic's events). The backlog is queued in pages
        as the client takes them (the first one before this returns, the rest by a
        task of the hub). Raises :class:`~rtdelivery.core.errors.Unavailable` (and
        subscribes nothing) when the layer or the history cannot be reached.
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
                if sub not in state.subs:
                    metrics.subscriptions.inc()
                state.subs[sub] = None
                replay = sub.start_replay(topic)
                break
        # A page the client has room for (maybe none yet: then only the position).
        room = sub.take_page_room(replay) if since is not None else 0
        try:
            result = await self.history.read(topic, since, room if since is not None else None)
        except BaseException:
            await self.unsubscribe(sub, topic)
            raise
        finally:
            sub.release_room(room)
        # Where the client stands before the backlog (after a lost epoch: the start of
        # the new one, whose events follow).
        subscription = Subscription(topic, result.start, result.recovered)
        first = announce(subscription) if announce is not None else None
        if result.more:
            sub.queue_page(replay, result.events, first)
            pager = asyncio.create_task(
                self._page_in(sub, replay, result.position), name="rtdelivery-hub-replay"
            )
            self._pagers.add(pager)
            pager.add_done_callback(self._pagers.discard)
        else:
            sub.finish_replay(replay, result.events, result.position, first)
        if since is not None and not result.recovered:
            metrics.NOT_RECOVERED_RESUME.inc()
        return subscription

    async def _page_in(self, sub: Subscriber, replay: Replay, position: Position) -> None:
        """Queue the rest of a resume's backlog, one page each time the client has taken
        the previous one; then the topic is live for ``sub``. Stops when the replay
        ends otherwise (unsubscribed, overflowed, closed)."""
        topic = replay.topic
        delay = MIN_BACKOFF
        try:
            while room := await sub.wait_page_room(replay):
                try:
                    result = await self.history.read(topic, position, room)
                except Unavailable:  # logged by outage; the inbox bound still holds
                    result = None
                finally:
                    sub.release_room(room)
                if result is None:
                    await self._pause(delay)
                    delay = min(delay * 2, MAX_BACKOFF)
                    continue
                delay = MIN_BACKOFF
                metrics.replay_pages.inc()
                # Not recovered: trimmed past us, or the epoch changed while the client
                # was reading. Say so; go on from where history can (the live end, or the
                # new epoch's start).
                reset = None if result.recovered else result.start
                if not result.recovered:
                    metrics.NOT_RECOVERED_RESUME.inc()
                if not result.more:
                    sub.finish_replay(replay, result.events, result.position, reset=reset)
                    return
                sub.queue_page(replay, result.events, reset=reset)
                position = result.position
        except asyncio.CancelledError:
            raise
        except Exception:
            # Not an outage: end the connection (the client resumes from its cursor)
            # rather than leave the topic silent.
            logger.exception("Could not replay the history of topic %s", topic)
            sub.close()

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
        if sub in state.subs:
            del state.subs[sub]
            metrics.subscriptions.dec()
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
        while not self.closed:
            try:
                message = await backplane.receive(self.layer, self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not isinstance(exc, Unavailable):  # outage already logged it, once
                    logger.exception("Channel layer receive failed; retrying in %.2fs", backoff)
                # Memberships may be lost with the layer's data (a Redis restart).
                self._recover_later()
                await self._pause(backoff)
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
        if epoch == position.epoch:
            if seq <= position.seq:
                metrics.duplicates_dropped.inc()
                return
            follows = seq == position.seq + 1
        else:
            # (0, 0): joined before the topic had any event; (E, 1) continues it.
            follows = position == BEFORE_FIRST and seq == 1
        if not follows:
            await self._fill(topic, state, event.position)
            return
        state.position = event.position
        if state.subs:  # once per event and process, not per subscriber
            metrics.observe_latency(event.time)
        for sub in state.subs:
            sub.offer(event)


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
