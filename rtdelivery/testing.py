"""Helpers to test live features built on rtdelivery, from pytest or Django's test runner.

In-process, through the hub (no server, no HTTP):

- :func:`subscribe` (async): ``async with subscribe("feed") as rec:`` records what a real
  subscriber of ``feed`` receives; ``await rec.next()``, ``await rec.events(3)``,
  ``await rec.assert_no_event()``, ``rec.cursor``.
- :func:`capture_events` (sync): the same for sync tests (a Django ``TestCase``, a sync
  pytest test): ``with capture_events("feed") as captured:`` … ``captured.wait(2)``.

Over the WebSocket protocol:

- :func:`ws_client` (async): a client of rtdelivery's ``ws`` route, run in-process with
  Channels' ``WebsocketCommunicator``: ``await ws.subscribe("feed")``,
  ``await ws.publish(...)``, ``await ws.receive_event()``.
- :func:`live_ws_client` (async): the same client over a real socket, for a live server
  (needs the ``websockets`` package); :func:`live_server` runs one in the test's own
  event loop (needs ``uvicorn``).

Isolation between tests: :func:`reset` / :func:`areset`, :func:`isolated` (a context
manager and decorator) and :class:`RTDeliveryTestMixin` for ``unittest``/Django test cases.

Every wait is bounded (``timeout`` seconds, :data:`DEFAULT_TIMEOUT` by default) and fails
with an :class:`AssertionError` that says what was expected and what arrived instead.
"""

# Bounded waits with a `timeout` argument are this module's API (as on Channels'
# communicators): every helper fails after its timeout instead of hanging a test run.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
)
from http.cookies import SimpleCookie
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .conf import get_settings
from .connections import aclose_redis
from .core.cursors import Cursor, Position
from .core.events import Event
from .core.topics import validate_topic
from .history import reset_history
from .hub import Hub, Subscription, aclose_hub, get_hub
from .publishing import in_event_loop
from .subscriber import Notice, Reset, SlowConsumer, Subscriber, SubscriberClosed

__all__ = [
    "DEFAULT_TIMEOUT",
    "NO_EVENT_TIMEOUT",
    "EventCapture",
    "EventRecorder",
    "HandshakeRefused",
    "LiveServer",
    "RTDeliveryTestMixin",
    "WebSocketClient",
    "areset",
    "capture_events",
    "isolated",
    "live_server",
    "live_ws_client",
    "reset",
    "subscribe",
    "wait_until",
    "ws_client",
]

#: Default bound (seconds) of every wait for something that should happen.
DEFAULT_TIMEOUT = 2.0
#: Default time (seconds) :meth:`EventRecorder.assert_no_event` watches for a stray event.
NO_EVENT_TIMEOUT = 0.2

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])

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


# -- isolation -----------------------------------------------------------------------------


def reset() -> None:
    """Forget rtdelivery's process state that sync code can reach.

    The in-memory history loses every topic (seq numbers start again at 1 with a new
    epoch). Hubs and Redis clients belong to event loops: close them with :func:`areset`
    from the loop that used them.
    """
    reset_history()


async def areset() -> None:
    """Close the running loop's hub (and its subscriptions) and Redis client, then
    :func:`reset`.

    Call it at the end of every async test that subscribed or published, so no task or
    connection outlives the test's event loop (pytest: an autouse fixture; Django:
    :class:`RTDeliveryTestMixin` or :func:`isolated` does it for you).
    """
    await aclose_hub()
    await aclose_redis()
    reset()


class isolated:  # used like a function: `with isolated():`, `@isolated()`
    """Fresh rtdelivery state for a block of code or a test function.

    ``with isolated():`` calls :func:`reset` on entry and exit; ``async with isolated():``
    calls :func:`areset` on entry and exit, in the running loop. As a decorator,
    ``@isolated()`` does the same around a sync or an ``async def`` function::

        @isolated()
        async def test_feed():
            async with subscribe("feed") as rec:
                ...
    """

    def __enter__(self) -> isolated:
        reset()
        return self

    def __exit__(self, *exc: object) -> None:
        reset()

    async def __aenter__(self) -> isolated:
        await areset()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await areset()

    def __call__(self, func: _F) -> _F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with isolated():
                    return await func(*args, **kwargs)

            async_wrapper._rtdelivery_isolated = True  # type: ignore[attr-defined]
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with isolated():
                return func(*args, **kwargs)

        wrapper._rtdelivery_isolated = True  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]


class RTDeliveryTestMixin:
    """Mixin for ``unittest``/Django test cases: each test starts and ends with fresh
    rtdelivery state.

    Every ``test*`` method of the class (and of its subclasses) runs under
    :func:`isolated`: sync tests get :func:`reset` before and after, ``async def`` tests
    get :func:`areset` before and after *inside their own event loop*, so the loop's hub
    and Redis client are closed before Django's runner ends the loop. Put it first::

        class FeedTests(RTDeliveryTestMixin, TestCase): ...
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in list(vars(cls).items()):
            if (
                name.startswith("test")
                and callable(value)
                and not getattr(value, "_rtdelivery_isolated", False)
            ):
                setattr(cls, name, isolated()(value))


# -- in-process subscriptions ---------------------------------------------------------------


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


# -- sync capture on a background loop --------------------------------------------------------


class _LoopThread:
    """One event loop in a thread, shared by nested :func:`capture_events` blocks.

    While it runs a hub, sync :func:`rtdelivery.publish` sends through it (it prefers a
    running hub loop), so publisher and subscribers share one loop and one layer client.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.users = 0
        ready = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(ready,), name="rtdelivery-capture", daemon=True
        )
        self.thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()  # also closes channels-redis' connections of this loop

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float) -> _T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise AssertionError(
                f"rtdelivery's capture loop did not answer within {timeout}s."
            ) from None

    def stop(self) -> None:
        try:
            self.call(_close_loop_state(), DEFAULT_TIMEOUT + 10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()


async def _close_loop_state() -> None:
    await aclose_hub()
    await aclose_redis()


_capture_lock = threading.Lock()
_capture_loop: _LoopThread | None = None


class EventCapture:
    """Sync twin of :class:`EventRecorder`, for sync tests. Get it with
    :func:`capture_events`.

    The subscription lives on a background event loop; every method blocks until it has
    an answer or its ``timeout`` has passed.
    """

    def __init__(self, runner: _LoopThread, recorder: EventRecorder) -> None:
        self._runner = runner
        self._recorder = recorder

    def _call(self, coro: Coroutine[Any, Any, _T], timeout: float) -> _T:
        return self._runner.call(coro, timeout + 10)

    @property
    def received(self) -> list[Event]:
        """Every event handed out by :meth:`wait`/:meth:`next` so far, oldest first."""
        return list(self._recorder.received)

    @property
    def cursor(self) -> str:
        """Encoded cursor right after the last event handed out."""
        return self._recorder.cursor

    @property
    def subscriptions(self) -> dict[str, Subscription]:
        """Topic -> what the hub answered on subscribe (``position``, ``recovered``)."""
        return dict(self._recorder.subscriptions)

    @property
    def resets(self) -> list[Reset]:
        """Lost-event markers (kept only with ``allow_resets=True``)."""
        return list(self._recorder.resets)

    def next(self, timeout: float = DEFAULT_TIMEOUT) -> Event:
        """The next event; fails after ``timeout`` seconds."""
        return self._call(self._recorder.next(timeout), timeout)

    def wait(self, n: int = 1, timeout: float = DEFAULT_TIMEOUT) -> list[Event]:
        """The next ``n`` events; fails if fewer arrive within ``timeout`` seconds."""
        return self._call(self._recorder.events(n, timeout), timeout)

    def assert_no_event(self, timeout: float = NO_EVENT_TIMEOUT) -> None:
        """Fail if an event arrives (or is waiting) within ``timeout`` seconds."""
        self._call(self._recorder.assert_no_event(timeout), timeout)


@contextlib.contextmanager
def capture_events(
    topic: str,
    *topics: str,
    since: Since = None,
    maxsize: int | None = None,
    allow_resets: bool = False,
) -> Iterator[EventCapture]:
    """Record the events of ``topic`` (and ``topics``) in sync code::

        with capture_events("feed") as captured:
            publish("feed", {"n": 1})  # or a view, a signal, a management command
            (event,) = captured.wait(1)
        assert event.data == {"n": 1}

    A hub runs on a background event loop for the duration of the block (nested blocks
    share it); sync ``publish()`` and ``publish_on_commit()`` send through that loop.
    On exit the subscription and the hub are closed, the loop is stopped and its thread
    joined. In async code use :func:`subscribe` instead.
    """
    if in_event_loop():
        raise RuntimeError(
            "capture_events() is for sync code; in async code use "
            "`async with rtdelivery.testing.subscribe(...) as rec:`."
        )
    global _capture_loop
    with _capture_lock:
        if _capture_loop is None:
            _capture_loop = _LoopThread()
        runner = _capture_loop
        runner.users += 1

    async def start() -> EventRecorder:
        recorder = EventRecorder(maxsize=maxsize, allow_resets=allow_resets)
        try:
            for name in (topic, *topics):
                await recorder.subscribe(name, since)
        except BaseException:
            await recorder.aclose()
            raise
        return recorder

    try:
        recorder = runner.call(start(), DEFAULT_TIMEOUT + 10)
        try:
            yield EventCapture(runner, recorder)
        finally:
            runner.call(recorder.aclose(), DEFAULT_TIMEOUT + 10)
    finally:
        with _capture_lock:
            runner.users -= 1
            last = runner.users == 0
            if last:
                _capture_loop = None
        if last:
            runner.stop()


# -- WebSocket clients ----------------------------------------------------------------------


class HandshakeRefused(AssertionError):
    """The server refused the WebSocket handshake.

    ``code`` is the close code the application sent (in-process, :func:`ws_client`);
    ``status`` the HTTP status of the refusal (live server, :func:`live_ws_client`).
    """

    def __init__(self, message: str, *, code: int | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


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


class WebSocketClient:
    """Speaks rtdelivery's WebSocket protocol in tests; frames are plain dicts.

    Requests (:meth:`subscribe`, :meth:`publish`, …) carry a ``ref`` and wait for the
    reply with that ``ref``; an ``error`` reply fails them with an
    :class:`AssertionError` quoting the server. Frames arriving meanwhile (events,
    presence) are kept, in order, for :meth:`receive_event` and :meth:`receive`.
    Get one with :func:`ws_client` (in-process) or :func:`live_ws_client` (live server).
    """

    def __init__(self, transport: _Transport, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._transport = transport
        self.timeout = timeout
        #: Every frame received so far, in order (consumed or not).
        self.frames: list[dict[str, Any]] = []
        self._pending: deque[dict[str, Any]] = deque()
        self._refs = itertools.count(1)

    @property
    def close_code(self) -> int | None:
        """The close code once the connection is closed (by either side), else None."""
        return self._transport.close_code

    # -- raw frames ------------------------------------------------------------------------
    async def send(self, frame: Mapping[str, Any] | str) -> None:
        """Send one frame: a dict (sent as JSON) or raw text (e.g. malformed on purpose)."""
        await self._transport.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def _read(self, deadline: float) -> dict[str, Any] | None:
        """Read one more frame into the log and the pending queue; None on timeout/close."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            text = await self._transport.receive(remaining)
        except TimeoutError:
            return None
        if text is None:
            return None
        frame = json.loads(text)
        if not isinstance(frame, dict):
            raise AssertionError(f"Expected a JSON object frame, got {text!r}.")
        self.frames.append(frame)
        self._pending.append(frame)
        return frame

    async def _find(
        self, match: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any] | None:
        """Remove and return the first pending frame matching, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            for index in range(checked, len(self._pending)):
                frame = self._pending[index]
                if match(frame):
                    del self._pending[index]
                    return frame
            checked = len(self._pending)
            if await self._read(deadline) is None:
                return None

    def _closed_note(self) -> str:
        code = self.close_code
        return f" The connection was closed with code {code}." if code is not None else ""

    async def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next frame not consumed yet, whatever its ``op``."""
        timeout = self.timeout if timeout is None else timeout
        frame = await self._find(lambda f: True, timeout)
        if frame is None:
            raise AssertionError(f"No frame within {timeout}s.{self._closed_note()}")
        return frame

    # -- requests --------------------------------------------------------------------------
    async def request(
        self, frame: Mapping[str, Any], expect: str, timeout: float | None = None
    ) -> dict[str, Any]:
        """Send ``frame`` with a fresh ``ref`` and return the reply with that ``ref``.

        Fails if the reply is an ``error`` frame or its ``op`` is not ``expect``.
        """
        timeout = self.timeout if timeout is None else timeout
        ref = f"t{next(self._refs)}"
        await self.send({**frame, "ref": ref})
        reply = await self._find(lambda f: f.get("ref") == ref, timeout)
        what = f"{frame.get('op')} {frame.get('topic', '')}".strip()
        if reply is None:
            raise AssertionError(f"No reply to {what} within {timeout}s.{self._closed_note()}")
        if reply.get("op") == "error":
            raise AssertionError(f"{what} was refused: {reply.get('code')}: {reply.get('message')}")
        if reply.get("op") != expect:
            raise AssertionError(f"Expected {expect!r} in reply to {what}, got {reply!r}.")
        return reply

    async def subscribe(
        self, topic: str, since: str | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Subscribe (``since``: a cursor or an event ``id``); returns the ``subscribed``
        frame (``recovered``, ``cursor``). Every event published afterwards arrives."""
        frame: dict[str, Any] = {"op": "subscribe", "topic": topic}
        if since is not None:
            frame["since"] = since
        return await self.request(frame, "subscribed", timeout)

    async def unsubscribe(self, topic: str, timeout: float | None = None) -> dict[str, Any]:
        """Unsubscribe; returns the ``unsubscribed`` frame."""
        return await self.request({"op": "unsubscribe", "topic": topic}, "unsubscribed", timeout)

    async def publish(
        self,
        topic: str,
        data: Any,
        type: str = "message",  # noqa: A002
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Publish as this client; returns the ``ack`` frame (``seq``, ``id``)."""
        frame = {"op": "publish", "topic": topic, "type": type, "data": data}
        return await self.request(frame, "ack", timeout)

    async def presence(self, topic: str, timeout: float | None = None) -> dict[str, Any]:
        """Who is subscribed to ``topic``: the ``presence`` reply frame."""
        return await self.request({"op": "presence", "topic": topic}, "presence", timeout)

    async def ping(self, timeout: float | None = None) -> dict[str, Any]:
        """Round trip; returns the ``pong`` frame."""
        return await self.request({"op": "ping"}, "pong", timeout)

    # -- events ----------------------------------------------------------------------------
    async def receive_event(self, timeout: float | None = None) -> dict[str, Any]:
        """The next ``event`` frame (``topic``, ``seq``, ``type``, ``data``, ``id``, …).

        Other frames before it stay available to :meth:`receive`; an ``error`` frame
        before it (e.g. ``too_slow``) fails the call.
        """
        timeout = self.timeout if timeout is None else timeout
        frame = await self._find(lambda f: f.get("op") in ("event", "error"), timeout)
        if frame is None:
            raise AssertionError(f"No event within {timeout}s.{self._closed_note()}")
        if frame["op"] == "error":
            raise AssertionError(
                f"Expected an event, got an error frame: {frame.get('code')}: "
                f"{frame.get('message')}"
            )
        return frame

    async def receive_events(self, n: int, timeout: float | None = None) -> list[dict[str, Any]]:
        """The next ``n`` event frames; fails if fewer arrive within ``timeout`` in all."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        got: list[dict[str, Any]] = []
        while len(got) < n:
            try:
                got.append(await self.receive_event(max(0.0, deadline - time.monotonic())))
            except AssertionError as exc:
                raise AssertionError(
                    f"Expected {n} events within {timeout}s, got {len(got)}: "
                    f"{[(e.get('topic'), e.get('seq')) for e in got]}. {exc}"
                ) from None
        return got

    async def assert_no_event(self, timeout: float = NO_EVENT_TIMEOUT) -> None:
        """Fail if an ``event`` frame arrives (or is waiting) within ``timeout`` seconds."""
        frame = await self._find(lambda f: f.get("op") == "event", timeout)
        if frame is not None:
            raise AssertionError(f"Expected no event within {timeout}s, got {frame!r}.")

    async def expect_close(self, timeout: float | None = None) -> int:
        """Wait until the server closes the connection; returns the close code.

        Frames received before the close stay available to :meth:`receive`.
        """
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while self.close_code is None:
            if await self._read(deadline) is None and self.close_code is None:
                raise AssertionError(f"The server did not close the connection in {timeout}s.")
        return self.close_code

    async def close(self, code: int = 1000) -> None:
        """Close the connection from the client side (idempotent)."""
        await self._transport.close(code)


def _cookie_header(cookies: Mapping[str, Any] | SimpleCookie | None) -> list[tuple[str, str]]:
    if not cookies:
        return []
    pairs = []
    for name, value in cookies.items():
        text = value.value if hasattr(value, "value") else str(value)
        pairs.append(f"{name}={text}")
    return [("cookie", "; ".join(pairs))]


@contextlib.asynccontextmanager
async def ws_client(
    application: Any = None,
    path: str = "/rt/ws",
    *,
    origin: str | None = "http://testserver",
    cookies: Mapping[str, Any] | SimpleCookie | None = None,
    headers: Iterable[tuple[str, str]] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> AsyncIterator[WebSocketClient]:
    """An in-process WebSocket client of ``application`` (Channels' ``WebsocketCommunicator``)::

        async with ws_client(application, "/rt/ws") as ws:
            await ws.subscribe("chat.lobby")
            await apublish("chat.lobby", {"text": "hi"})
            event = await ws.receive_event()

    ``application`` is your ASGI application (e.g. ``rtdelivery_application(...)`` from
    your ``asgi.py``); by default rtdelivery's WebSocket route alone, mounted under
    ``/rt/``. The server runs in the test's event loop, sharing its hub with
    :func:`subscribe` and ``apublish``. ``origin`` is sent as the ``Origin`` header
    (Django's test host by default; None sends none). ``cookies``: e.g. a Django test
    client's ``client.cookies`` after ``client.force_login(user)``, to connect as that
    user. Raises :class:`HandshakeRefused` if the server refuses the connection; on exit
    the client disconnects and waits for the application to finish (its errors surface).
    """
    from channels.testing import WebsocketCommunicator

    if application is None:
        from .asgi import websocket_application

        application = websocket_application()
    raw_headers = [*headers, *_cookie_header(cookies)]
    if origin is not None:
        raw_headers.append(("origin", origin))
    communicator = WebsocketCommunicator(
        application,
        path,
        headers=[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in raw_headers],
    )
    connected, code = await communicator.connect(timeout)
    if not connected:
        await communicator.wait(timeout)
        raise HandshakeRefused(
            f"The WebSocket handshake at {path!r} was refused with close code {code} "
            f"(Origin {origin!r}).",
            code=code,
        )
    client = WebSocketClient(_CommunicatorTransport(communicator), timeout=timeout)
    try:
        yield client
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def live_ws_client(
    url: str,
    *,
    origin: str | None = "",
    cookies: Mapping[str, Any] | SimpleCookie | None = None,
    headers: Iterable[tuple[str, str]] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> AsyncIterator[WebSocketClient]:
    """A :class:`WebSocketClient` over a real socket, for a live server::

        async with live_ws_client(f"{server.ws_url}") as ws:
            await ws.subscribe("feed")

    ``url`` is ``ws://host:port/rt/ws`` (``http://`` is accepted too). ``origin``
    defaults to the server's own origin (``http://host:port``); None sends none. Needs the
    ``websockets`` package (a test dependency, not one of rtdelivery's).
    """
    try:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus
    except ImportError as exc:
        raise ImportError(
            "rtdelivery.testing.live_ws_client needs the 'websockets' package "
            "(pip install websockets); rtdelivery does not depend on it at runtime."
        ) from exc

    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    url = parts._replace(scheme=scheme).geturl()
    if origin == "":
        origin = f"{'https' if scheme == 'wss' else 'http'}://{parts.netloc}"
    extra = [*headers, *_cookie_header(cookies)]
    try:
        connection = await connect(
            url,
            origin=origin,  # type: ignore[arg-type]
            additional_headers=extra or None,
            open_timeout=timeout,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise HandshakeRefused(
            f"The WebSocket handshake at {url!r} was refused with HTTP {status} "
            f"(Origin {origin!r}).",
            status=status,
        ) from None
    client = WebSocketClient(_WebsocketsTransport(connection), timeout=timeout)
    try:
        yield client
    finally:
        await client.close()


class LiveServer:
    """A server started by :func:`live_server`: where to reach it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        #: ``http://host:port``
        self.url = f"http://{host}:{port}"

    def ws_url(self, path: str = "/rt/ws") -> str:
        """``ws://host:port`` + ``path``."""
        return f"ws://{self.host}:{self.port}{path}"


@contextlib.asynccontextmanager
async def live_server(
    application: Any = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[LiveServer]:
    """Serve ``application`` on a real socket, in the running event loop (Uvicorn)::

        async with live_server() as server, live_ws_client(server.ws_url()) as ws:
            await ws.subscribe("feed")
            await apublish("feed", {"n": 1})
            assert (await ws.receive_event())["data"] == {"n": 1}

    By default it serves your Django project with rtdelivery under ``/rt/``
    (``rtdelivery_application(get_asgi_application())``). The server shares the test's
    loop, so ``apublish`` and :func:`subscribe` reach its connections with any channel
    layer. ``port=0`` picks a free port. Needs ``uvicorn`` (``rtdelivery[uvicorn]``).
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise ImportError(
            "rtdelivery.testing.live_server needs 'uvicorn' (pip install rtdelivery[uvicorn])."
        ) from exc
    if application is None:
        from django.core.asgi import get_asgi_application

        from .asgi import rtdelivery_application

        application = rtdelivery_application(get_asgi_application())
    config = uvicorn.Config(
        application,
        host=host,
        port=port,
        lifespan="off",
        log_level="warning",
        ws="websockets-sansio",
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    deadline = time.monotonic() + DEFAULT_TIMEOUT + 8
    while not server.started:
        if task.done():
            task.result()
            raise AssertionError("The live server stopped before it started.")
        if time.monotonic() > deadline:
            server.should_exit = True
            await task
            raise AssertionError(f"The live server did not start on {host}:{port}.")
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield LiveServer(host, int(bound[1]))
    finally:
        server.should_exit = True
        await task


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    within: float = 10.0,
    what: str = "",
    interval: float = 0.01,
) -> None:
    """Poll ``predicate`` (sync or async) every ``interval`` seconds until it holds;
    fail with an ``AssertionError`` naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what or predicate}"
        await asyncio.sleep(interval)
