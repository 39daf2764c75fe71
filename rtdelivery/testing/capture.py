"""Recording events from sync code (a Django ``TestCase``, a sync pytest test):
:func:`capture_events` and its :class:`EventCapture`, on a background event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from ..connections import aclose_redis
from ..core.events import Event
from ..hub import Subscription, aclose_hub
from ..publishing import in_event_loop
from ..subscriber import Reset
from .recording import EventRecorder, Since
from .waiting import DEFAULT_TIMEOUT, NO_EVENT_TIMEOUT

__all__ = ["EventCapture", "capture_events"]

_T = TypeVar("_T")


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
