"""What an idle SSE stream keeps (issue 14): nothing of the request, one coroutine.

An open stream on the fast path is the server's task awaiting rtdelivery's application,
which awaits the stream's one coroutine (rtdelivery.transports.streaming.serve), which
waits in Subscriber.get(): no other frame of rtdelivery's, no task of its own (its
client's departure is noticed without one), and no Request, Django HttpRequest, scope
copy or headers alive.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest
from django.http import HttpRequest

from rtdelivery import apublish
from rtdelivery.hub import get_hub
from rtdelivery.transports import limits
from rtdelivery.transports.http import Request
from tests.transports.conftest import WAIT, SSEClient, open_sse, url, wait_until

pytestmark = pytest.mark.django_db


@pytest.fixture
def conf(rt: Any) -> Any:
    return rt(TOPICS={"t.*": {"subscribe": "anyone", "publish": "anyone", "presence": True}})


def _frames(task: asyncio.Task[Any]) -> list[types.FrameType]:
    """The suspended coroutine frames of ``task``, outermost first."""
    frames = []
    coro: Any = task.get_coro()
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames


def _is_request_or_scope(value: Any) -> bool:
    if isinstance(value, Request | HttpRequest):
        return True
    return isinstance(value, Mapping) and "headers" in value and "type" in value


def _rtdelivery_frames(task: asyncio.Task[Any]) -> list[str]:
    return [
        frame.f_code.co_qualname
        for frame in _frames(task)
        if "/rtdelivery/" in frame.f_code.co_filename
    ]


async def _open(application: Any, topic: str = "t.a") -> tuple[SSEClient, asyncio.Task[Any]]:
    before = asyncio.all_tasks()
    stream = await open_sse(application, {"topic": topic, "client": "client-0001"})
    assert stream.status == 200, (stream.status, stream.body)
    assert (await stream.next_event())["event"] == "rt.open"
    new = [t for t in asyncio.all_tasks() - before if "RealtimeApplication" in repr(t.get_coro())]
    assert len(new) == 1, f"Expected the stream's one application task, got {new}"
    return stream, new[0]


async def test_idle_stream_keeps_no_request_and_one_coroutine(conf: Any, application: Any) -> None:
    stream, task = await _open(application)
    gc.collect()
    assert [o for o in gc.get_objects() if isinstance(o, Request)] == []
    # The application's frame (its own: the server's scope), the stream's coroutine and
    # the inbox's wait: nothing nested between them.
    assert _rtdelivery_frames(task) == ["RealtimeApplication.__call__", "serve", "Subscriber.get"]
    for frame in _frames(task)[1:]:
        if "/rtdelivery/" in frame.f_code.co_filename:
            kept = {name for name, value in frame.f_locals.items() if _is_request_or_scope(value)}
            assert not kept, f"{frame.f_code.co_qualname} keeps {kept}"
    # Still a stream: events, then the client leaving releases everything.
    await apublish("t.a", {"n": 1})
    frame = await stream.next_event()
    while frame["event"] == "rt.presence":  # its own join
        frame = await stream.next_event()
    assert frame["json"]["data"] == {"n": 1}
    await stream.close()
    assert get_hub().local_subscribers("t.a") == 0
    assert limits.held() == 0


async def test_no_task_per_stream(conf: Any, application: Any) -> None:
    first, _ = await _open(application)  # the loop's hub and heartbeat task start here
    before = len(asyncio.all_tasks())
    others = [(await _open(application, f"t.{n}"))[0] for n in range(3)]
    assert len(asyncio.all_tasks()) - before == 3  # the application's own, one each
    for stream in [first, *others]:
        await stream.close()
    assert limits.held() == 0


async def _stream_until_left(
    app: Callable[[dict[str, Any], Any, Any], Awaitable[None]],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    leave: Callable[[], Awaitable[None]],
) -> None:
    """Open an SSE stream of ``t.a`` through ``app`` with this ``receive``, ``leave()``
    once it is open, and check that the stream ends and releases everything."""
    sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    path, _, query = url("sse", {"topic": "t.a"}).partition("?")
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": path,
        "query_string": query.encode(),
        "headers": [(b"host", b"testserver")],
    }
    task = asyncio.ensure_future(app(scope, receive, sent.put))
    try:
        start = await asyncio.wait_for(sent.get(), WAIT)
        assert start["status"] == 200, start
        assert b"rt.open" in (await asyncio.wait_for(sent.get(), WAIT))["body"]
        await leave()
        await asyncio.wait_for(task, WAIT)
    finally:
        task.cancel()
    await wait_until(lambda: get_hub().local_subscribers("t.a") == 0, what="released")
    assert limits.held() == 0


async def test_a_receive_that_yields_bare_is_still_watched(conf: Any, application: Any) -> None:
    """A server whose receive() polls with bare yields (asyncio.sleep(0)) rather than
    waiting on a future: the client leaving is noticed all the same."""
    left = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        while not left.is_set():  # noqa: ASYNC110 - the bare yields are the point
            await asyncio.sleep(0)
        return {"type": "http.disconnect"}

    async def leave() -> None:
        assert get_hub().local_subscribers("t.a") == 1
        left.set()

    await _stream_until_left(application, receive, leave)


SPAN: contextvars.ContextVar[str] = contextvars.ContextVar("span", default="")


async def test_a_wrapped_receive_runs_in_a_task_of_its_own(conf: Any, application: Any) -> None:
    """Middleware that wraps receive() (a tracing span set and reset around it) expects a
    task's context: the stream runs such a receive in a task, so the reset works and the
    server's task never sees the span."""
    inner: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inner.put({"type": "http.request", "body": b"", "more_body": False})
    resets: list[str] = []

    async def receive() -> dict[str, Any]:
        token = SPAN.set("receive-span")
        try:
            return await inner.get()
        finally:
            SPAN.reset(token)  # ValueError if stepped outside the context it was set in
            resets.append("ok")

    async def app_outside(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await application(scope, receive, send)
        assert SPAN.get() == ""  # the span never leaked into the server's task

    async def leave() -> None:
        await inner.put({"type": "http.disconnect"})

    await _stream_until_left(app_outside, receive, leave)
    assert resets == ["ok", "ok"]
