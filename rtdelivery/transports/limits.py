"""Limits on what one process holds and what one client may do.

- ``MAX_HELD_REQUESTS``: long polls and SSE streams held at once, for everyone.
- ``MAX_CONNECTIONS_PER_USER`` / ``MAX_CONNECTIONS_PER_IP``: open connections (SSE
  streams, WebSockets, held long polls) per authenticated user and per client address.
- ``PUBLISH_RATE`` / ``PUBLISH_BURST``: client publishes per user (per address when
  anonymous), a token bucket.

Every count is per process, in memory: no Redis round trip per request. With N
processes behind a balancer a client can hold up to N times a limit (docs/security.md).
The address is the ASGI server's ``scope["client"]`` (``REMOTE_ADDR`` under WSGI):
behind a proxy, have the server take it from the proxy's header (Uvicorn
``--proxy-headers --forwarded-allow-ips``, Daphne ``--proxy-headers``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .. import metrics
from ..conf import get_settings
from ..core.errors import Unauthorized
from .http import Request, TooMany

_held = 0
_per_user: dict[Any, int] = {}
_per_ip: dict[str, int] = {}
#: key -> (tokens, last refill); pruned when full again.
_buckets: dict[Any, tuple[float, float]] = {}

#: Retry-After (seconds) for a refused connection: a client should back off, not spin.
CONNECTION_RETRY_AFTER = 5


class TooManyConnections(TooMany):
    """A client already holds its share of connections (429 ``too_many_connections``)."""

    code = "too_many_connections"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.retry_after = CONNECTION_RETRY_AFTER


class PublishRateLimited(TooMany):
    """A client publishes faster than ``PUBLISH_RATE`` (429 ``rate_limited``)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def held() -> int:
    return _held


def open_connections(*, user: Any = None, ip: str | None = None) -> int:
    """Connections this process holds for ``user`` (a pk) or ``ip`` (for tests, metrics)."""
    return _per_user.get(user, 0) if user is not None else _per_ip.get(ip or "", 0)


def user_key(user: Any) -> Any:
    """What a user is counted by: its pk when authenticated, else None (anonymous)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return getattr(user, "pk", None)


def scope_ip(scope: Any) -> str | None:
    client = scope.get("client") if scope is not None else None
    return str(client[0]) if client else None


def request_ip(request: Request) -> str | None:
    """The client's address: the server's ``scope["client"]``, or a view's REMOTE_ADDR."""
    ip = scope_ip(request.scope)
    if ip is None and request.django is not None:
        ip = request.django.META.get("REMOTE_ADDR") or None
    return ip


async def request_user_key(request: Request) -> Any:
    """The user a request counts against (None: anonymous or refused credentials)."""
    try:
        identity = await request.identity()
    except Unauthorized:
        return None
    return user_key(identity.user)


def check_connection(user: Any, ip: str | None) -> None:
    """Raise :class:`TooManyConnections` when ``user`` or ``ip`` is at its limit."""
    conf = get_settings()
    per_user = conf.max_connections_per_user
    if user is not None and per_user is not None and _per_user.get(user, 0) >= per_user:
        raise TooManyConnections(
            f"Expected at most {per_user} open connections per user on this server; "
            "close one or retry later."
        )
    per_ip = conf.max_connections_per_ip
    if ip is not None and per_ip is not None and _per_ip.get(ip, 0) >= per_ip:
        raise TooManyConnections(
            f"Expected at most {per_ip} open connections per client address on this "
            "server; close one or retry later."
        )


@contextmanager
def connection(user: Any, ip: str | None) -> Iterator[None]:
    """Count one open connection for ``user`` (a pk, or None) and ``ip`` while inside;
    refuse with :class:`TooManyConnections` beyond the per-user or per-IP limit."""
    user, ip = _count(user, ip)
    try:
        yield
    finally:
        _uncount(user, ip)


def _count(user: Any, ip: str | None) -> tuple[Any, str | None]:
    """Count a connection (or refuse it); returns the keys to give back to _uncount."""
    check_connection(user, ip)
    conf = get_settings()
    # Counted only under a limit (no memory per address otherwise); released as counted.
    if user is not None and conf.max_connections_per_user is None:
        user = None
    if ip is not None and conf.max_connections_per_ip is None:
        ip = None
    if user is not None:
        _per_user[user] = _per_user.get(user, 0) + 1
    if ip is not None:
        _per_ip[ip] = _per_ip.get(ip, 0) + 1
    return user, ip


def _uncount(user: Any, ip: str | None) -> None:
    if user is not None:
        _release(_per_user, user)
    if ip is not None:
        _release(_per_ip, ip)


def _release(counts: dict[Any, int], key: Any) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


class Held:
    """One held request, counted until :meth:`release` (or the end of a ``with``).

    A plain object rather than a generator context manager: an SSE stream keeps it for
    its whole life, and a suspended generator (two, with :func:`connection`) costs
    several hundred bytes per idle stream."""

    __slots__ = ("ip", "transport", "user")

    def __init__(self, transport: str, user: Any, ip: str | None) -> None:
        self.transport = transport
        self.user, self.ip = user, ip

    def release(self) -> None:
        """Give the request's counts back (once; later calls do nothing)."""
        global _held
        transport, self.transport = self.transport, ""
        if not transport:
            return
        _uncount(self.user, self.ip)
        _held -= 1
        metrics.held_closed(transport)

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def hold(transport: str, user: Any = None, ip: str | None = None) -> Held:
    """Count one held request; refuse with 429 beyond ``MAX_HELD_REQUESTS``, or beyond
    the client's connection limits (``user``, ``ip``). Use it in a ``with``, or call
    :meth:`Held.release` when the request is over."""
    global _held
    limit = get_settings().max_held_requests
    if _held >= limit:
        raise TooMany(f"Too many held requests on this server (limit {limit}); retry later.")
    user, ip = _count(user, ip)
    _held += 1
    metrics.held_opened(transport)
    return Held(transport, user, ip)


async def client_of(request: Request) -> tuple[Any, str | None]:
    """``(user key, ip)`` of a request, for :func:`hold` (the user is read only when a
    per-user limit is set)."""
    user = None
    if get_settings().max_connections_per_user is not None:
        user = await request_user_key(request)
    return user, request_ip(request)


def take_publish(user: Any, ip: str | None) -> None:
    """Spend one publish from the client's bucket (``user`` pk, else ``ip``); raise
    :class:`PublishRateLimited` with when to retry once it is empty."""
    conf = get_settings()
    rate = conf.publish_rate
    if rate is None:
        return
    key: Any = ("user", user) if user is not None else ("ip", ip)
    burst = float(conf.publish_burst)
    now = time.monotonic()
    tokens, last = _buckets.get(key, (burst, now))
    tokens = min(burst, tokens + (now - last) * rate)
    if tokens < 1.0:
        _buckets[key] = (tokens, now)
        retry_after = max(1, math.ceil((1.0 - tokens) / rate))
        raise PublishRateLimited(
            f"Expected at most {rate:g} publishes per second (burst {int(burst)}) per "
            "client; slow down.",
            retry_after,
        )
    _buckets[key] = (tokens - 1.0, now)
    if len(_buckets) > 10000:
        _prune(now, burst, rate)


def _prune(now: float, burst: float, rate: float) -> None:
    # Forget buckets that have refilled: they are the same as a new one.
    for key, (tokens, last) in list(_buckets.items()):
        if tokens + (now - last) * rate >= burst:
            del _buckets[key]


#: (("user", pk) or ("ip", address)) -> {polling client id: when it stops counting}.
_poll_clients: dict[Any, dict[str, float]] = {}


def see_poll_client(user: Any, ip: str | None, client: str, ttl: float) -> None:
    """Count a polling client's ``client=`` id as one connection of ``user`` (a pk; else
    its ``ip``) for ``ttl`` seconds: a client cycling ids is bounded by
    ``MAX_CONNECTIONS_PER_USER``/``_PER_IP`` in presence as a WebSocket client is, instead
    of inflating "here now" and sending a join to every subscriber per new id."""
    conf = get_settings()
    limit = conf.max_connections_per_user if user is not None else conf.max_connections_per_ip
    if limit is None:
        return
    key: Any = ("user", user) if user is not None else ("ip", ip)
    now = time.monotonic()
    ids = _poll_clients.setdefault(key, {})
    if client not in ids:
        for stale in [c for c, until in ids.items() if until <= now]:
            del ids[stale]
        if len(ids) >= limit:
            raise TooManyConnections(
                f"Expected at most {limit} polling client ids (client=) per "
                f"{'user' if user is not None else 'client address'} on this server; "
                "reuse one id per page."
            )
    ids[client] = now + ttl
    if len(_poll_clients) > 10000:
        # Forget keys with no live id: bounded memory however many addresses come by.
        for other in [k for k, v in _poll_clients.items() if max(v.values(), default=0) <= now]:
            del _poll_clients[other]


def reset() -> None:
    """Forget every count (tests)."""
    _per_user.clear()
    _per_ip.clear()
    _buckets.clear()
    _poll_clients.clear()
