"""The hub's recovery side: what the backplane dropped or lost, made good from history.

:class:`Recovery` is mixed into :class:`~rtdelivery.hub.Hub`, whose fan-out (subscribe,
unsubscribe, the receive loop, delivery) stays in :mod:`rtdelivery.hub`. What repairs that
fan-out lives here, apart from the subscribe path it does not need: gap filling, the tail
check, the Redis restart check, the group refresh and the re-join after an outage. The
state it works on (topics, locks, the recovery task, the run_ids) belongs to the hub,
which initialises it.

The backplane may drop messages (channels-redis over capacity or after group expiry,
the pub/sub layer during a reconnect). The hub tracks the last ``seq`` it fanned out
per topic; a skip is filled from history before delivery, duplicates are dropped, and
a periodic tail check catches drops at the end of a burst.

Redis may restart (or fail over) without any operation failing: redis-py reconnects
by itself, but the channels-redis layer's group memberships (sorted sets in Redis) are
gone. The tail check therefore also reads the run_id of the layer's Redis servers
(``INFO server``, once per interval per process); when it changes the hub re-joins
every group at once and fills from history what the layer lost. A topic whose events
the tail check had to fetch is re-joined too (a flush or an eviction also loses
memberships), so recovery never waits for the group refresh (a third of
``group_expiry``, 8 hours by default).

When Redis is unreachable the background loops (receive, tail check, group refresh)
retry quietly (:mod:`rtdelivery.outage` logs the outage once). When it is back, the hub
re-joins its groups and fills from history what the outage held back, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any

from channels.layers import BaseChannelLayer
from redis.exceptions import ConnectionError as RedisConnectionError

from . import backplane, metrics, outage
from .core.cursors import Position
from .core.errors import Unavailable
from .history import History
from .outage import BACKEND_ERRORS

if TYPE_CHECKING:
    from .hub import _TopicState

#: The hub's logger: records of both halves keep the name ``rtdelivery.hub``.
logger = logging.getLogger("rtdelivery.hub")

#: Backoff bounds (seconds) of the receive loop and of recovery after an outage.
MIN_BACKOFF = 0.05
MAX_BACKOFF = 5.0


class Recovery:
    """The recovery half of a :class:`~rtdelivery.hub.Hub` (mixed into it)."""

    layer: BaseChannelLayer
    history: History
    channel: str | None
    closed: bool
    loop: asyncio.AbstractEventLoop
    _topics: dict[str, _TopicState]
    _deliver_lock: asyncio.Lock
    _closing: asyncio.Event
    _recovery: asyncio.Task[None] | None
    _recovery_nudge: asyncio.Event
    _run_ids: tuple[str, ...] | None

    # -- gaps, the tail check, Redis restarts, the group refresh -----------------------
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
