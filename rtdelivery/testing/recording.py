"""Recording what a real subscriber receives, in-process, from async tests:
:func:`subscribe` and its :class:`EventRecorder`."""

# Bounded waits with a `timeout` argument are this package's API (as on Channels'
# communicators): every helper fails after its timeout instead of hanging a test run.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from ..conf import get_settings
from ..core.cursors import Cursor, Position
from ..core.events import Event
from ..core.topics import validate_topic
from ..hub import Hub, Subscription, get_hub
from ..subscriber import Notice, Reset, SlowConsumer, Subscriber, SubscriberClosed
from .waiting import DEFAULT_TIMEOUT, NO_EVENT_TIMEOUT

__all__ = ["EventRecorder", "subscribe"]


#: What ``since`` may be: an encoded cursor (``rec.cursor``, an event's ``id``, a cursor
#: from any transport), a :class:`Cursor` or a mapping of topic -> :class:`Position`.
Since = str | Mapping[str, Position] | None


def _positions(since: Since) -> Mapping[str, Position]:
    if since is None:
        return {}
    if isinstance(since, str):
        return Cursor.decode(since, get_settings().cursor_key)
    return since


def _describe(events: Iterable[Event], limit: int = 5) -> str:
    items = list(events)
    shown = ", ".join(f"{e.topic}#{e.seq} {e.type} {e.data_json}" for e in items[-limit:])
    more = f"… {len(items) - limit} earlier, " if len(items) > limit else ""
    return f"[{more}{shown}]" if items else "nothing"


class EventRecorder:
    """A real hub subscriber that records the events of its topics for assertions.

    Get one with :func:`subscribe`. Events are handed out in delivery order by
    :meth:`next` and :meth:`events`; :attr:`received` keeps every event handed out so
    far and :attr:`cursor` is the position right after the last of them, ready to be
    passed as ``since`` (or as ``cursor=`` on any transport) to resume.

    It subscribes through the hub like every transport does (live first, then history
    replay, duplicates dropped), but skips the subscribe *policy*: it watches what the
    server publishes. Use :func:`ws_client` to test who may subscribe.
    """

    def __init__(self, *, maxsize: int | None = None, allow_resets: bool = False) -> None:
        """``maxsize``: events that may wait unread before the recorder fails as a slow
        consumer (default ``RTDELIVERY["QUEUE_SIZE"]``). ``allow_resets``: record lost
        events (see :attr:`resets`) instead of failing on them."""
        self.hub: Hub = get_hub()
        self.subscriber = Subscriber(maxsize or get_settings().queue_size)
        self.allow_resets = allow_resets
        #: Every event handed out by :meth:`next`/:meth:`events`, oldest first.
        self.received: list[Event] = []
        #: Topics whose delivery skipped lost events (only kept with ``allow_resets``).
        self.resets: list[Reset] = []
        #: Presence changes of the recorder's topics (the ``data`` of each notice).
        self.presence: list[Any] = []
        #: Topic -> what the hub answered on subscribe (``position``, ``recovered``).
        self.subscriptions: dict[str, Subscription] = {}
        self._buffer: deque[Event | Reset] = deque()
        self._positions: dict[str, Position] = {}

    # -- subscriptions -----------------------------------------------------------------
    @property
    def topics(self) -> list[str]:
        """The topics currently subscribed to."""
        return list(self.subscriptions)

    async def subscribe(self, topic: str, since: Since = None) -> Subscription:
        """Subscribe to one more topic, replaying its history after ``since`` if given.

        When this returns, every event published afterwards on ``topic`` is recorded.
        """
        validate_topic(topic)
        if topic in self.subscriptions:
            raise ValueError(f"Already subscribed to {topic!r}.")
        start = _positions(since).get(topic)
        subscription = await self.hub.subscribe(self.subscriber, topic, start)
        self.subscriptions[topic] = subscription
        self._positions[topic] = (
            start if start is not None and subscription.recovered else subscription.position
        )
        return subscription

    async def unsubscribe(self, topic: str) -> None:
        """Stop recording ``topic`` (events already recorded stay readable)."""
        if self.subscriptions.pop(topic, None) is None:
            raise ValueError(f"Not subscribed to {topic!r}.")
        await self.hub.unsubscribe(self.subscriber, topic)

    async def aclose(self) -> None:
        """Unsubscribe from every topic. :func:`subscribe` calls it on exit."""
        self.subscriptions.clear()
        if not self.hub.closed:
            await self.hub.unsubscribe_all(self.subscriber)
        self.subscriber.close()

    @property
    def cursor(self) -> str:
        """Encoded cursor right after the last event handed out, for every topic."""
        return Cursor(self._positions).encode(get_settings().cursor_key)

    # -- reading -----------------------------------------------------------------------
    def _take(self, items: list[Any]) -> None:
        for item in items:
            if isinstance(item, Event):
                self._buffer.append(item)
            elif isinstance(item, Reset):
                if not self.allow_resets:
                    raise AssertionError(
                        f"Events were lost on topic {item.topic!r}: history no longer holds "
                        f"them; delivery went on after seq {item.position.seq}. Pass "
                        "allow_resets=True to subscribe() to record this in .resets instead."
                    )
                self.resets.append(item)
                self._buffer.append(item)
            elif isinstance(item, Notice) and item.kind == "presence":
                self.presence.append(item.data)

    async def _fill(self, deadline: float) -> bool:
        """Wait until something is buffered or ``deadline``; False on timeout."""
        while not self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                items = await asyncio.wait_for(self.subscriber.get(), remaining)
            except TimeoutError:
                return False
            except SlowConsumer:
                raise AssertionError(
                    f"The recorder fell behind: more than {self.subscriber.maxsize} events "
                    "waited unread, so the hub dropped its inbox (a slow consumer). Read "
                    "events sooner or pass a larger maxsize to subscribe()."
                ) from None
            except SubscriberClosed:
                raise AssertionError(
                    "The recorder's subscription was closed by the hub (was the hub closed, "
                    "e.g. by areset(), while still subscribed?)."
                ) from None
            self._take(items)
        return True

    async def _next(self, deadline: float) -> Event | None:
        while await self._fill(deadline):
            item = self._buffer.popleft()
            if isinstance(item, Reset):
                self._positions[item.topic] = item.position
                continue
            self._positions[item.topic] = item.position
            self.received.append(item)
            return item
        return None

    async def next(self, timeout: float = DEFAULT_TIMEOUT) -> Event:
        """The next event on any subscribed topic; fails after ``timeout`` seconds."""
        event = await self._next(time.monotonic() + timeout)
        if event is None:
            raise AssertionError(
                f"No event on {self.topics} within {timeout}s (handed out before: "
                f"{_describe(self.received)}). Was it published on one of these topics "
                "after subscribe() returned, or did the transaction roll back?"
            )
        return event

    async def events(self, n: int, timeout: float = DEFAULT_TIMEOUT) -> list[Event]:
        """The next ``n`` events; fails if fewer arrive within ``timeout`` seconds in all."""
        deadline = time.monotonic() + timeout
        got: list[Event] = []
        while len(got) < n:
            event = await self._next(deadline)
            if event is None:
                raise AssertionError(
                    f"Expected {n} events on {self.topics} within {timeout}s, got "
                    f"{len(got)}: {_describe(got)}."
                )
            got.append(event)
        return got

    async def assert_no_event(self, timeout: float = NO_EVENT_TIMEOUT) -> None:
        """Fail if any event arrives (or is already waiting) within ``timeout`` seconds.

        Absence can only be observed over a bounded time: keep ``timeout`` short and
        prefer positive checks (:meth:`next`) wherever something is expected.
        """
        event = await self._next(time.monotonic() + timeout)
        if event is not None:
            raise AssertionError(
                f"Expected no event on {self.topics} within {timeout}s, got "
                f"{event.topic}#{event.seq} {event.type} {event.data_json}."
            )


@contextlib.asynccontextmanager
async def subscribe(
    topic: str,
    *topics: str,
    since: Since = None,
    maxsize: int | None = None,
    allow_resets: bool = False,
) -> AsyncIterator[EventRecorder]:
    """Record the events of ``topic`` (and ``topics``) in async code::

        async with subscribe("feed") as rec:
            await apublish("feed", {"n": 1})
            event = await rec.next()
            assert event.data == {"n": 1}

    Subscribed when the block starts (events published before are not recorded unless
    ``since`` replays them from history); unsubscribed when it ends. See
    :class:`EventRecorder` for ``maxsize`` and ``allow_resets``.
    """
    recorder = EventRecorder(maxsize=maxsize, allow_resets=allow_resets)
    try:
        for name in (topic, *topics):
            await recorder.subscribe(name, since)
        yield recorder
    finally:
        await recorder.aclose()
