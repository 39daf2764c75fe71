"""Publishing: ``apublish`` for async code, ``publish`` for sync code, and on-commit.

Each stores the event in history, then sends it on the backplane. When Redis cannot be
reached they raise :class:`~rtdelivery.core.errors.Unavailable` (nothing was stored);
an event stored but not broadcast is not an error (subscribers get it from history).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import threading
import time
from typing import Any

from django.db import transaction

from . import backplane, broadcast, metrics, outage
from .broadcast import Prepared
from .conf import get_settings
from .connections import aclose_redis
from .core.errors import BadRequest, Unavailable
from .core.events import Event, encode_data, validate_type
from .core.topics import validate_topic
from .history import get_history
from .history.redis import RedisHistory
from .hub import running_hub_loops

logger = logging.getLogger("rtdelivery.publish")

#: How long sync ``publish`` waits for history and the layer.
PUBLISH_TIMEOUT = 30.0


#: An idempotency key: what a UUID, a ULID or "order-42:created" are made of.
MAX_KEY_LENGTH = 128
_KEY_RE = re.compile(r"[A-Za-z0-9_.:\-]+")


def validate_key(key: object) -> str:
    """Return the idempotency ``key`` if valid: 1-128 of letters, digits and ``_.:-``."""
    if not isinstance(key, str):
        raise BadRequest(
            f"Expected 'key' (the idempotency key) as a string, got {type(key).__name__}.",
            code="invalid_key",
        )
    if not 0 < len(key) <= MAX_KEY_LENGTH or not _KEY_RE.fullmatch(key):
        raise BadRequest(
            f"Expected 'key' (the idempotency key) of 1 to {MAX_KEY_LENGTH} letters, digits "
            f"or '_.:-', got {key[:MAX_KEY_LENGTH]!r}"
            + (f" ({len(key)} characters)." if len(key) > MAX_KEY_LENGTH else "."),
            code="invalid_key",
        )
    return key


def _prepare(topic: str, data: Any, type: str, key: str | None) -> Prepared:  # noqa: A002
    """Validate everything before anything is stored."""
    validate_topic(topic)
    validate_type(type)
    if key is not None:
        validate_key(key)
    return Prepared(topic, type, encode_data(data, get_settings().max_event_bytes), key)


async def _publish_prepared(p: Prepared) -> Event:
    history = get_history()
    if isinstance(history, RedisHistory):
        return await broadcast.batcher(history).publish(p, int(time.time() * 1000))
    event = await history.append(p.topic, p.type, p.data_json, int(time.time() * 1000), p.key)
    if not event.duplicate:  # a duplicate was stored and broadcast by the first publish
        metrics.events_published.inc()
        await broadcast.send(backplane.get_layer(), [event])
    else:
        metrics.publish_duplicates.inc()
    return event


async def apublish(
    topic: str,
    data: Any,
    type: str = "message",  # noqa: A002
    *,
    key: str | None = None,
) -> Event:
    """Publish ``data`` on ``topic`` from async code; returns the stored :class:`Event`.

    ``key``: an idempotency key (1-128 of letters, digits and ``_.:-``; a random UUID is
    best). A publish repeating a topic's key within ``IDEMPOTENCY_TTL`` seconds stores
    and sends nothing and returns the first publish's event with ``duplicate`` True.

    Raises :class:`~rtdelivery.core.errors.InvalidTopic`, ``InvalidEvent``,
    ``EventTooLarge`` or ``BadRequest`` (``invalid_key``) before anything is stored,
    ``Unavailable`` if Redis cannot be reached.
    """
    return await _publish_prepared(_prepare(topic, data, type, key))


def publisher_namespace(user_pk: Any, session_key: str | None, ip: str | None) -> str:
    """The namespace of a client's idempotency keys: ``u:<pk>`` for a signed-in user, else
    ``s:<session key>`` when the client has a session, else ``a:<address>``. The first
    letters keep the three apart (a session key of "u:1" is "s:u:1")."""
    if user_pk is not None:
        return f"u:{user_pk}"
    if session_key:
        return f"s:{session_key}"
    return f"a:{ip or ''}"


async def apublish_as(
    namespace: str,
    topic: str,
    data: Any,
    type: str = "message",  # noqa: A002
    *,
    key: str | None = None,
) -> Event:
    """:func:`apublish` for a client (HTTP ``publish``, the WebSocket ``publish`` op): ``key``
    is stored as ``<namespace>:<key>`` (:func:`publisher_namespace`), so one publisher's key
    never answers another's publish on the topic. The key is checked as given (1-128)."""
    prepared = _prepare(topic, data, type, key)
    if prepared.key is not None:
        prepared = prepared._replace(key=f"{namespace}:{prepared.key}")
    return await _publish_prepared(prepared)


class _PublisherThread:
    """One event loop in a daemon thread per process, for sync callers without a hub.

    It keeps its own Redis connections, so sync ``publish`` never opens a connection
    or creates an event loop per call (``async_to_sync`` would do both).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    try:
                        loop.run_forever()
                    finally:
                        # channels-redis closes its connection pools of this loop here.
                        loop.close()

                thread = threading.Thread(target=run, name="rtdelivery-publisher", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def close(self, timeout: float = PUBLISH_TIMEOUT) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if loop.is_running():
            future = asyncio.run_coroutine_threadsafe(_shutdown_publisher_loop(), loop)
            try:
                future.result(timeout=timeout)
            finally:
                loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)


async def _shutdown_publisher_loop() -> None:
    """On the publisher's loop: close its Redis client and finish its other tasks."""
    await aclose_redis()
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


_publisher = _PublisherThread()


def close_publisher() -> None:
    """Stop the sync publisher's thread and close its connections (tests, shutdown).

    The next sync :func:`publish` without a hub starts a new one.
    """
    _publisher.close()


def publisher_loop() -> asyncio.AbstractEventLoop:
    """The process's background loop (started on first use), for sync callers: sync
    :func:`publish` and Django views served under WSGI."""
    return _publisher.loop()


def in_event_loop() -> bool:
    """Whether the calling thread is running an event loop (sync APIs refuse to block it)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_sync(prepared: Prepared) -> Event:
    if in_event_loop():
        raise RuntimeError(
            "rtdelivery.publish() was called from async code (a running event loop); "
            "use `await rtdelivery.apublish(...)` there."
        )
    loops = running_hub_loops()
    # Prefer the server's own loop: its layer and Redis connections are already open,
    # and the in-memory layer is only safe to use from the loop of its subscribers.
    loop = loops[0] if loops else _publisher.loop()
    future = asyncio.run_coroutine_threadsafe(_publish_prepared(prepared), loop)
    try:
        return future.result(timeout=PUBLISH_TIMEOUT)
    except TimeoutError as exc:  # Redis neither answers nor fails (its timeouts are shorter)
        future.cancel()
        raise outage.unavailable(exc, "publish") from exc


def publish(
    topic: str,
    data: Any,
    type: str = "message",  # noqa: A002
    *,
    key: str | None = None,
) -> Event:
    """Publish ``data`` on ``topic`` from sync code (views, commands, workers).

    Blocks until the event is stored and broadcast and returns it. ``key`` and errors
    as for :func:`apublish`.
    """
    return _run_sync(_prepare(topic, data, type, key))


def publish_on_commit(
    topic: str,
    data: Any,
    type: str = "message",  # noqa: A002
    *,
    key: str | None = None,
    using: str | None = None,
) -> None:
    """Publish once the current transaction commits; nothing if it rolls back.

    The event is validated now, so bad data fails inside the request, not after commit.
    Outside a transaction (autocommit) it publishes at once. If Redis is unavailable then,
    the event is lost: that is logged (one line, no traceback), not raised. ``key`` as
    for :func:`apublish`.
    """
    prepared = _prepare(topic, data, type, key)
    transaction.on_commit(functools.partial(_after_commit, prepared), using=using, robust=True)


def _after_commit(prepared: Prepared) -> None:
    try:
        _run_sync(prepared)
    except Unavailable:
        # The transaction is committed, nobody can be told: say which event was lost.
        # (Other errors reach Django's robust on_commit handler, which logs them.)
        logger.warning("Event on %s not published after commit: Redis unavailable", prepared.topic)
