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
(``RTDELIVERY["DISCONNECT_ON_LOGOUT"]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
#: Notice kinds queued to a connection's inbox: ``end`` (data: the reason) and
#: ``unsubscribed`` (data: {"topic", "reason"}).
END = "end"
TOPIC_ENDED = "unsubscribed"
#: How often a process re-joins the control group (seconds): a Redis restart or flush
#: loses memberships, and a join is idempotent and cheap.
REFRESH_INTERVAL = 10.0
MIN_BACKOFF = 0.05
MAX_BACKOFF = 5.0

__all__ = [
    "DISCONNECTED",
    "LOGGED_OUT",
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

    __slots__ = ("__weakref__", "ended", "registry", "session", "sub", "timer", "user")

    def __init__(self, registry: _Registry, sub: Subscriber, user: str, session: str | None):
        self.registry = registry
        self.sub = sub
        self.user = user
        self.session = session
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

    def add(self, reg: Registration) -> None:
        self.users.setdefault(reg.user, set()).add(reg)

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
        for reg in list(self.users.get(control.user, ())):
            if control.session is not None and reg.session != control.session:
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


async def register(sub: Subscriber, user: Any, session_key: str | None) -> Registration | None:
    """Register a connection of ``user`` (None for anonymous ones: nothing to do).

    ``session_key``: the session its identity came from (None for a token or another
    credential). A token connection gets a timer that ends it at the token's expiry.
    """
    key = user_key(user)
    if key is None:
        return None
    registry = _registry()
    claims = token_claims(user)
    reg = Registration(registry, sub, key, None if claims is not None else session_key)
    registry.add(reg)
    if claims is not None:
        remaining = claims.remaining()
        if remaining <= 0:
            reg.end(TOKEN_EXPIRED)
        else:
            reg.timer = asyncio.get_running_loop().call_later(remaining, reg.end, TOKEN_EXPIRED)
    await registry.listen()
    return reg


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
    tasks = [*registry.stopping, *([registry.task] if registry.task else [])]
    registry.task = None
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


async def adisconnect(user: Any, reason: str = DISCONNECTED, *, session: str | None = None) -> None:
    """End every connection of ``user`` (a user or a pk) on every process, from async code.

    ``session``: only the connections authenticated by that session key. The client is
    told ``reason`` (``disconnected`` unless given) and does not reconnect by itself.
    Raises :class:`~rtdelivery.core.errors.Unavailable` if the layer cannot be reached.
    """
    message = backplane.control_message("disconnect", _pk(user), reason, session=session)
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


def disconnect(user: Any, reason: str = DISCONNECTED, *, session: str | None = None) -> None:
    """:func:`adisconnect` from sync code (views, signals, commands)."""
    _run_sync(adisconnect(user, reason, session=session))


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
