"""Access ends when it should: token expiry, server-side disconnect and unsubscribe, logout.

Every WebSocket and SSE stream of an authenticated user registers here (per event loop:
a dict ``user pk -> registrations``, nothing for anonymous clients). A registration

- ends its connection when the connection token it came with expires (one timer, only
  for token connections): reason ``token_expired``;
- ends it (or one topic of it) when :func:`disconnect` / :func:`unsubscribe` is called for
  its user on any process: they send one control message on the backplane
  (:mod:`rtdelivery.backplane`) to the group every process with registrations joins.

Ending queues an ``end`` notice behind what the connection already has queued and stops
its inbox, so the transport writes what was authorized, then says why with the cursor
(WebSocket: an error frame and close code 4003/4004; SSE: ``rt.close``). Django's
``user_logged_out`` calls :func:`disconnect` for the session's connections
(``RTDELIVERY["DISCONNECT_ON_LOGOUT"]``). A session that ends without a logout (flushed,
expired, deleted from the store, ``clearsessions``) is noticed by a sweep every
``RTDELIVERY["SESSION_CHECK_INTERVAL"]`` seconds, which runs only while the loop has
session connections: reason ``session_ended``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import Any

from . import backplane
from .backplane import Control
from .core.errors import Unavailable
from .subscriber import Notice, Subscriber
from .tokens import token_claims

logger = logging.getLogger("rtdelivery.access")

#: Reasons (docs/protocol.md, "Why a connection ended").
TOKEN_EXPIRED = "token_expired"
DISCONNECTED = "disconnected"
LOGGED_OUT = "logged_out"
UNSUBSCRIBED = "unsubscribed"
SESSION_ENDED = "session_ended"
#: Notice kinds queued to a connection's inbox: ``end`` (data: the reason) and
#: ``unsubscribed`` (data: {"topic", "reason"}).
END = "end"
TOPIC_ENDED = "unsubscribed"
#: How often a process re-joins the control group (seconds): a Redis restart or flush
#: loses memberships, and a join is idempotent and cheap.
REFRESH_INTERVAL = 10.0
MIN_BACKOFF = 0.05
MAX_BACKOFF = 5.0
#: Most session keys one sweep checks (the rest are checked by the next sweeps).
SWEEP_MAX_KEYS = 1000
#: The session engine whose store is the cookie itself: nothing server-side to check.
SIGNED_COOKIES = "django.contrib.sessions.backends.signed_cookies"

__all__ = [
    "DISCONNECTED",
    "LOGGED_OUT",
    "SESSION_ENDED",
    "TOKEN_EXPIRED",
    "UNSUBSCRIBED",
    "Registration",
    "adisconnect",
    "aunsubscribe",
    "disconnect",
    "register",
    "unsubscribe",
]


class Registration:
    """One connection of a known user: what :func:`disconnect` and expiry reach."""

    __slots__ = (
        "__weakref__",
        "ended",
        "id",
        "opened",
        "registry",
        "session",
        "sub",
        "timer",
        "transport",
        "user",
    )

    def __init__(
        self,
        registry: _Registry,
        sub: Subscriber,
        user: str,
        session: str | None,
        connection: str = "",
        transport: str = "",
    ):
        self.registry = registry
        self.sub = sub
        self.user = user
        self.session = session
        #: The connection's id (``<pid>.<n>``, as presence shows it) and transport.
        self.id = connection
        self.transport = transport
        self.opened = time.time()
        self.timer: asyncio.TimerHandle | None = None
        #: The reason it was ended, once ended (the connection acts for nobody since).
        self.ended: str | None = None

    def end(self, reason: str) -> None:
        """Queue the ``end`` notice and stop the inbox (what is queued is still written)."""
        if self.ended is not None:
            return
        self.ended = reason
        self.sub.push_notice(Notice(END, data=reason))
        self.sub.close()

    async def end_topic(self, topic: str, reason: str) -> None:
        if self.ended is not None or topic not in self.sub.topics:
            return
        from .hub import get_hub

        await get_hub().unsubscribe(self.sub, topic)
        self.sub.push_notice(Notice(TOPIC_ENDED, data={"topic": topic, "reason": reason}))

    def close(self) -> None:
        """The connection is over."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.registry.remove(self)


class _Registry:
    """The registrations of one event loop and its listener on the control group."""

    def __init__(self) -> None:
        self.users: dict[str, set[Registration]] = {}
        self.task: asyncio.Task[None] | None = None
        self.stopping: set[asyncio.Task[None]] = set()  # listeners leaving the group
        self.joined: asyncio.Event | None = None
        self.sweeper: asyncio.Task[None] | None = None
        self.sweep_offset = 0  # where the next bounded sweep starts in the sorted keys

    def add(self, reg: Registration) -> None:
        self.users.setdefault(reg.user, set()).add(reg)
        idle = self.sweeper is None or self.sweeper.done()
        if reg.session is not None and idle and _sweep_interval() is not None:
            self.sweeper = asyncio.create_task(self._sweep(), name="rtdelivery-sessions")

    def remove(self, reg: Registration) -> None:
        regs = self.users.get(reg.user)
        if regs is None:
            return
        regs.discard(reg)
        if not regs:
            del self.users[reg.user]
        if not self.users and self.task is not None:
            # No one left to reach: stop listening (its channel leaves the group).
            task, self.task = self.task, None
            task.cancel()
            self.stopping.add(task)
            task.add_done_callback(self.stopping.discard)
        if not self.users and self.sweeper is not None:
            sweeper, self.sweeper = self.sweeper, None
            sweeper.cancel()
            self.stopping.add(sweeper)
            sweeper.add_done_callback(self.stopping.discard)

    def session_keys(self) -> list[str]:
        """The distinct session keys of the live (not ended) registrations, sorted."""
        return sorted(
            {
                reg.session
                for regs in self.users.values()
                for reg in regs
                if reg.session is not None and reg.ended is None
            }
        )

    async def _sweep(self) -> None:
        """Every SESSION_CHECK_INTERVAL, end the connections whose session is gone (or
        now belongs to nobody or someone else); stop once no session connection is left."""
        from channels.db import database_sync_to_async

        while True:
            interval = _sweep_interval()
            if interval is None or not self.session_keys():
                self.sweeper = None
                return
            await asyncio.sleep(interval)
            keys = self.session_keys()
            if not keys:
                continue  # the check above ends the task
            start = self.sweep_offset % len(keys)
            batch = (keys[start:] + keys[:start])[:SWEEP_MAX_KEYS]
            self.sweep_offset = start + len(batch)
            try:
                # database_sync_to_async: the thread's stale DB connections are closed.
                owners = await database_sync_to_async(_session_owners)(batch)
            except Exception:
                # The store is unreachable: keep the connections, try again next time.
                logger.warning("Could not check the sessions of open connections", exc_info=True)
                continue
            for regs in list(self.users.values()):
                for reg in list(regs):
                    if reg.session in owners and owners[reg.session] != reg.user:
                        reg.end(SESSION_ENDED)

    async def listen(self) -> None:
        """Start the listener if needed; return once it joined the control group (or
        could not: then it keeps trying in the background)."""
        if self.task is None or self.task.done():
            self.joined = asyncio.Event()
            self.task = asyncio.create_task(self._run(self.joined), name="rtdelivery-access")
        joined = self.joined
        if joined is not None and not joined.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(joined.wait(), 5.0)

    async def _run(self, joined: asyncio.Event) -> None:
        layer = backplane.get_layer()
        channel: str | None = None
        refresher: asyncio.Task[None] | None = None
        backoff = MIN_BACKOFF
        try:
            while True:
                try:
                    if channel is None:
                        channel = await backplane.new_channel(layer)
                    if refresher is None:
                        await backplane.join_control(layer, channel)
                        joined.set()
                        refresher = asyncio.create_task(self._refresh(layer, channel))
                    message = await backplane.receive(layer, channel)
                    backoff = MIN_BACKOFF
                    item = backplane.decode(message, b"")
                    if isinstance(item, Control):
                        await self.apply(item)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    joined.set()  # don't hold connections back while the layer is down
                    if not isinstance(exc, Unavailable):  # outage logs it once
                        logger.warning("Control listener failed; retrying", exc_info=True)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    if refresher is not None and channel is not None:
                        # The layer's data may be gone with the failure: join again now.
                        with contextlib.suppress(Exception):
                            await backplane.join_control(layer, channel)
        finally:
            if refresher is not None:
                refresher.cancel()
            if channel is not None:
                with contextlib.suppress(BaseException):
                    await backplane.leave_control(layer, channel)

    async def _refresh(self, layer: Any, channel: str) -> None:
        """Join again every REFRESH_INTERVAL: a Redis restart or flush loses memberships
        silently, and the layer expires them (group_expiry)."""
        while True:
            await asyncio.sleep(REFRESH_INTERVAL)
            with contextlib.suppress(Exception):  # an outage: the receive loop notices
                await backplane.join_control(layer, channel)

    async def apply(self, control: Control) -> None:
        """End the matching local connections (or their subscription to a topic)."""
        if control.process is not None and control.process != _process_id():
            return  # one connection, of another process
        for reg in list(self.users.get(control.user, ())):
            if control.session is not None and reg.session != control.session:
                continue
            if control.connection is not None and reg.id != control.connection:
                continue
            if control.action == "disconnect":
                reg.end(control.reason)
            elif control.action == "unsubscribe" and control.topic is not None:
                try:
                    await reg.end_topic(control.topic, control.reason)
                except Exception:
                    logger.warning("Could not end topic %s for a connection", control.topic)


_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Registry] = (
    weakref.WeakKeyDictionary()
)


def _sweep_interval() -> float | None:
    """SESSION_CHECK_INTERVAL, or None when off (or the signed-cookie engine: the cookie
    is the store, a flushed session cannot be told from a live one)."""
    from django.conf import settings

    from .conf import get_settings

    if getattr(settings, "SESSION_ENGINE", None) == SIGNED_COOKIES:
        return None
    return get_settings().session_check_interval


def _session_owners(keys: list[str]) -> dict[str, str | None]:
    """Session key -> the ``_auth_user_id`` it holds now (None: gone, expired or logged
    out). Sync: one thread hop per sweep for all of ``keys``."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import SESSION_KEY

    store = import_module(settings.SESSION_ENGINE).SessionStore
    owners: dict[str, str | None] = {}
    for key in keys:
        # load() reads without creating and returns {} for a missing or expired session.
        user = store(key).load().get(SESSION_KEY)
        owners[key] = None if user is None else str(user)
    return owners


def _registry() -> _Registry:
    loop = asyncio.get_running_loop()
    registry = _registries.get(loop)
    if registry is None:
        registry = _registries[loop] = _Registry()
    return registry


def user_key(user: Any) -> str | None:
    """The text form of ``user``'s pk, or None for an anonymous (or refused) client."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    pk = getattr(user, "pk", None)
    return None if pk is None else str(pk)


async def register(
    sub: Subscriber,
    user: Any,
    session_key: str | None,
    connection: str = "",
    transport: str = "",
) -> Registration | None:
    """Register a connection of ``user`` (None for anonymous ones: nothing to do).

    ``session_key``: the session its identity came from (None for a token or another
    credential). A token connection gets a timer that ends it at the token's expiry.
    ``connection`` (its id) and ``transport`` let :func:`disconnect` end it alone and the
    live page list it.
    """
    key = user_key(user)
    if key is None:
        return None
    registry = _registry()
    claims = token_claims(user)
    session = None if claims is not None else session_key
    reg = Registration(registry, sub, key, session, connection, transport)
    registry.add(reg)
    if claims is not None:
        remaining = claims.remaining()
        if remaining <= 0:
            reg.end(TOKEN_EXPIRED)
        else:
            reg.timer = asyncio.get_running_loop().call_later(remaining, reg.end, TOKEN_EXPIRED)
    await registry.listen()
    return reg


def _process_id() -> str:
    from .ops.reporter import process_id

    return process_id()


def listed(limit: int) -> tuple[list[dict[str, Any]], int]:
    """This process's connections of signed-in users (at most ``limit``, by user then
    age) for the live page, and how many there are in all. No session keys."""
    regs = [
        reg
        for registry in list(_registries.values())
        for regs in list(registry.users.values())
        for reg in list(regs)
        if reg.ended is None
    ]
    regs.sort(key=lambda reg: (reg.user, reg.opened))
    shown = [
        {
            "id": reg.id,
            "user": reg.user,
            "transport": reg.transport,
            "topics": len(reg.sub.topics),
            "opened": reg.opened,
        }
        for reg in regs[:limit]
    ]
    return shown, len(regs)


async def aclose() -> None:
    """Stop the running loop's control listener and forget its registrations (tests)."""
    registry = _registries.pop(asyncio.get_running_loop(), None)
    if registry is None:
        return
    for regs in registry.users.values():
        for reg in regs:
            if reg.timer is not None:
                reg.timer.cancel()
    registry.users.clear()
    tasks = [
        *registry.stopping,
        *([registry.task] if registry.task else []),
        *([registry.sweeper] if registry.sweeper else []),
    ]
    registry.task = registry.sweeper = None
    for task in tasks:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


# -- the API ---------------------------------------------------------------------------------


def _pk(user: Any) -> str:
    pk = user if isinstance(user, str | int) else getattr(user, "pk", None)
    if pk is None or isinstance(pk, bool):
        raise ValueError(f"Expected a user (or a user's pk), got {type(user).__name__}.")
    return str(pk)


async def adisconnect(
    user: Any,
    reason: str = DISCONNECTED,
    *,
    session: str | None = None,
    connection: str | None = None,
    process: str | None = None,
) -> None:
    """End every connection of ``user`` (a user or a pk) on every process, from async code.

    ``session``: only the connections authenticated by that session key. ``connection``:
    only the connection of ``user`` with that id (the ``<pid>.<n>`` the live page and
    presence show), on ``process`` (``host:pid``) if given. The client is told ``reason``
    (``disconnected`` unless given) and does not reconnect by itself.
    Raises :class:`~rtdelivery.core.errors.Unavailable` if the layer cannot be reached.
    """
    message = backplane.control_message(
        "disconnect", _pk(user), reason, session=session, connection=connection, process=process
    )
    await backplane.send_control(backplane.get_layer(), message)


async def aunsubscribe(user: Any, topic: str, reason: str = UNSUBSCRIBED) -> None:
    """End ``user``'s subscriptions to ``topic`` on every process, from async code (the
    connections stay open). Change what the policy allows too, or clients may subscribe
    again."""
    from .core.topics import validate_topic

    message = backplane.control_message(
        "unsubscribe", _pk(user), reason, topic=validate_topic(topic)
    )
    await backplane.send_control(backplane.get_layer(), message)


def _run_sync(coro: Any) -> None:
    from .publishing import PUBLISH_TIMEOUT, in_event_loop, publisher_loop, running_hub_loops

    if in_event_loop():
        coro.close()
        raise RuntimeError(
            "rtdelivery.disconnect()/unsubscribe() was called from async code (a running "
            "event loop); use `await rtdelivery.adisconnect(...)`/`aunsubscribe(...)` there."
        )
    loops = running_hub_loops()
    loop = loops[0] if loops else publisher_loop()
    asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=PUBLISH_TIMEOUT)


def disconnect(
    user: Any,
    reason: str = DISCONNECTED,
    *,
    session: str | None = None,
    connection: str | None = None,
    process: str | None = None,
) -> None:
    """:func:`adisconnect` from sync code (views, signals, commands)."""
    _run_sync(adisconnect(user, reason, session=session, connection=connection, process=process))


def unsubscribe(user: Any, topic: str, reason: str = UNSUBSCRIBED) -> None:
    """:func:`aunsubscribe` from sync code."""
    _run_sync(aunsubscribe(user, topic, reason))


def on_user_logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    """``user_logged_out`` receiver: end the session's connections (or all the user's)."""
    from .conf import get_settings

    mode = get_settings().disconnect_on_logout
    if not mode or user is None or getattr(user, "pk", None) is None:
        return
    session = getattr(getattr(request, "session", None), "session_key", None)
    if mode != "user" and session is None:
        return  # no session: none of its connections can exist
    try:
        disconnect(user, LOGGED_OUT, session=None if mode == "user" else session)
    except Exception:
        # Logging out must not fail because Redis is down; the connections end when
        # they next need the user (or their token expires).
        logger.warning("Could not disconnect the connections of a user logging out", exc_info=True)
