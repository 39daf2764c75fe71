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

A resume (subscribe with ``since``) replays history in pages of at most the
subscriber's ``maxsize`` events, the next one only once the client has taken the
previous one (:class:`~rtdelivery.subscriber.Subscriber` paces it): the backlog never
sits in memory whole, and a client that stops reading holds one page.

Redis may restart (or fail over) without any operation failing: redis-py reconnects
by itself, but the channels-redis layer's group memberships (sorted sets in Redis) are
gone. The tail check therefore also reads the run_id of the layer's Redis servers
(``INFO server``, once per interval per process); when it changes the hub re-joins
every group at once and fills from history what the layer lost. A topic whose events
the tail check had to fetch is re-joined too (a flush or an eviction also loses
memberships), so recovery never waits for the group refresh (a third of
``group_expiry``, 8 hours by default).

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
import functools
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from channels.layers import BaseChannelLayer
from redis.exceptions import ConnectionError as RedisConnectionError

from . import backplane, metrics, outage
from .backplane import PresenceChange, get_layer
from .conf import get_settings
from .core.cursors import Position
from .core.errors import Unavailable
from .core.events import Event
from .history import History, get_history
from .history.base import BEFORE_FIRST
from .ops import reporter as ops_reporter
from .outage import BACKEND_ERRORS
from .subscriber import Notice, Replay, Subscriber

logger = logging.getLogger("rtdelivery.hub")

__all__ = ["Hub", "Subscription", "aclose_hub", "get_hub", "get_layer", "running_hub_loops"]

#: Backoff bounds (seconds) of the receive loop and of recovery after an outage.
MIN_BACKOFF = 0.05
MAX_BACKOFF = 5.0
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

    async def _fill(self, topic: str, state: _TopicState, seen: Position) -> None:
        """Deliver what history holds between our position and ``seen`` (and beyond)."""
        since = state.position
        assert since is not None
        if seen.epoch != since.epoch:
            head = (await self.history.heads([topic]))[topic]
            if head is None or head.epoch != seen.epoch:
                return  # a straggler from a lost epoch: nothing to deliver
        # From our position; a stale epoch reads the current one from its oldest event.
        result = await self.history.read(topic, since)
        metrics.gap(topic, len(result.events), result.recovered)
        if not result.recovered:
            # Events between our position and what history holds are gone: say so
            # (subscribers continue from right before the events that follow), go on.
            logger.warning("Events lost on topic %s after %s", topic, since)
            for sub in state.subs:
                sub.reset(topic, result.start)
        for event in result.events:
            for sub in state.subs:
                sub.offer(event)
        state.position = result.position

    async def _tail_loop(self, interval: float, *, tail: bool = True) -> None:
        """Look for a Redis restart at once (recording the run_ids the groups are joined
        on), then every ``interval`` again and (``tail``) check the tail."""
        first = True
        while not self.closed:
            try:
                await self.check_restart()
                if tail and not first:
                    await self.check_tail()
            except asyncio.CancelledError:
                raise
            except Unavailable:
                self._recover_later()  # logged by outage
            except Exception:
                logger.warning("Tail check failed", exc_info=True)
            first = False
            await self._pause(interval)

    async def _pause(self, seconds: float) -> None:
        """Sleep between rounds of a background loop; returns early when the hub closes
        (a cancellation swallowed by a library on the way must not keep it running)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    def _restart_probes(self) -> list[Any]:
        """Redis clients whose restart loses the layer's group memberships: the hosts of
        a channels-redis ``RedisChannelLayer`` (where the groups are), else, with Redis
        history, rtdelivery's own server (a pub/sub layer re-subscribes by itself but
        loses what was published meanwhile). None for in-memory setups."""
        layer = self.layer
        ring = getattr(layer, "ring_size", None)
        connection = getattr(layer, "connection", None)
        if isinstance(ring, int) and callable(connection):
            return [connection(index) for index in range(ring)]
        from .history.redis import RedisHistory

        if isinstance(self.history, RedisHistory):
            from .connections import get_redis

            return [get_redis()]
        return []

    async def check_restart(self) -> bool:
        """Whether a Redis server behind the layer restarted since the last check (its
        run_id changed); if so, re-join every group and fill from history first.

        One ``INFO server`` per server; the first call only records the run_ids.
        """
        probes = self._restart_probes()
        if not probes:
            return False
        run_ids = [_run_id(await _server_info(client)) for client in probes]
        outage.record_success()
        previous, self._run_ids = self._run_ids, tuple(run_ids)
        if previous is None or previous == self._run_ids:
            return False
        metrics.redis_restarts.inc()
        # Unavailable from here on: the caller's recovery retries until it works.
        await self._rejoin()
        await self.check_tail(immediate=True)
        logger.info(
            "Redis restarted (its run_id changed): re-joined %d topic group(s), filled "
            "from history what the layer lost",
            sum(1 for s in self._topics.values() if s.joined),
        )
        return True

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
        unheard: list[str] = []
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
                    if stuck:
                        unheard.append(topic)
                else:
                    state.suspect_head = head
        # The layer never brought those events: our membership may be gone (a flush,
        # an eviction, an expiry). Joining again is idempotent, and cheap.
        for topic in unheard:
            await self._rejoin_topic(topic)

    async def _refresh_loop(self, interval: float) -> None:
        while True:
            await self._pause(interval)
            if self.closed:
                return
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
        for topic in list(self._topics):
            await self._rejoin_topic(topic)

    async def _rejoin_topic(self, topic: str) -> None:
        assert self.channel is not None
        state = self._topics.get(topic)
        if state is None:
            return
        # Under the topic's lock: a refresh must not land after a last unsubscribe's
        # group_discard and keep us in the group for a day.
        async with state.lock:
            if state.joined and not state.removed:
                await backplane.join(self.layer, topic, self.channel)

    # -- outages -----------------------------------------------------------------------
    def backend_recovered(self) -> None:
        """An outage ended (noticed anywhere in the process, any thread): re-join."""
        if self.closed or self.loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self.loop.call_soon_threadsafe(functools.partial(self._recover_later, now=True))

    def _recover_later(self, *, now: bool = False) -> None:
        """Start (once) re-joining every group and filling from history, retrying until
        the backend answers: a Redis restart loses the layer's memberships. ``now``:
        the backend is known to be back, so a recovery waiting to retry goes at once."""
        if self.closed or self.channel is None:
            return
        if self._recovery is None or self._recovery.done():
            self._recovery_nudge.clear()
            self._recovery = asyncio.create_task(self._recover(), name="rtdelivery-hub-recover")
        elif now:
            self._recovery_nudge.set()

    async def _recover(self) -> None:
        delay = MIN_BACKOFF
        while not self.closed:
            self._recovery_nudge.clear()
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._recovery_nudge.wait(), delay)
            delay = min(delay * 2, MAX_BACKOFF)


#: Attempts of one restart check per server: after a restart the pool's idle
#: connections to the old process fail once each ("Connection closed by server").
INFO_ATTEMPTS = 3


async def _server_info(client: Any) -> Any:
    """``INFO server`` of one Redis, through connections left over from before a restart."""
    for attempt in range(1, INFO_ATTEMPTS + 1):
        try:
            return await client.info("server")
        except RedisConnectionError as exc:
            if attempt == INFO_ATTEMPTS:
                raise outage.unavailable(exc, "redis INFO server") from exc
        except BACKEND_ERRORS as exc:
            raise outage.unavailable(exc, "redis INFO server") from exc
    raise AssertionError("unreachable")


def _run_id(info: Any) -> str:
    """The server's run_id from ``INFO server`` (a cluster client answers per node)."""
    if isinstance(info, dict):
        if "run_id" in info:
            return str(info["run_id"])
        nested = sorted(_run_id(v) for v in info.values() if isinstance(v, dict))
        if nested:
            return ",".join(nested)
    raise ValueError(f"Expected INFO server to report a run_id, got {str(info)[:200]!r}")


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
