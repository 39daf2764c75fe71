"""Isolation between tests: :func:`reset`, :func:`areset`, :func:`isolated` and
:class:`RTDeliveryTestMixin`."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from .. import outage
from ..access import aclose as aclose_access
from ..connections import aclose_redis
from ..history import reset_history
from ..hub import aclose_hub
from ..presence import aclose_presence, reset_presence
from ..publishing import close_publisher
from ..transports import limits

__all__ = ["RTDeliveryTestMixin", "areset", "isolated", "reset"]

_F = TypeVar("_F", bound=Callable[..., Any])


def reset() -> None:
    """Forget rtdelivery's process state that sync code can reach.

    The in-memory history loses every topic (seq numbers start again at 1 with a new
    epoch), the in-memory presence store forgets who is there, and a backend outage
    recorded by :mod:`rtdelivery.outage` (with its log rate limit) is forgotten, so the
    next test starts with the backend up. The background loop
    that sync ``publish()`` and WSGI-served views use is stopped, with its hub, tasks
    and Redis client (the next use starts a new one). The hubs, presence refresh tasks
    and Redis clients of other loops belong to those loops: close them with
    :func:`areset` from the loop that used them.
    """
    close_publisher()
    _forget()


def _forget() -> None:
    reset_history()
    reset_presence()
    outage.reset()
    limits.reset()  # per-client counts and publish buckets


async def areset() -> None:
    """Close the running loop's presence refresh tasks, hub (and its subscriptions) and
    Redis client, then do what :func:`reset` does.

    Call it at the end of every async test that subscribed or published, so no task or
    connection outlives the test's event loop (pytest: an autouse fixture; Django:
    :class:`RTDeliveryTestMixin` or :func:`isolated` does it for you).
    """
    await aclose_presence()
    await aclose_access()
    await aclose_hub()
    await aclose_redis()
    # Off this loop: stopping the background loop waits for it to finish its tasks.
    await asyncio.to_thread(close_publisher)
    _forget()


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
