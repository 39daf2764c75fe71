"""Steps every HTTP transport shares: authorize, read after a cursor, subscribe and
position, wait for the client to leave. Transports import these, never each other."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from .. import metrics
from ..conf import get_settings
from ..core.cursors import Cursor, Position
from ..core.events import Event
from ..history import get_history
from ..hub import Hub
from ..policy import SUBSCRIBE, authorize, effective_user
from ..presence import get_presence, poll_connection_id
from ..subscriber import Subscriber
from . import limits
from .http import Receive, Request


async def authorize_all(request: Request, topics: list[str]) -> None:
    """Subscribe permission on every topic; the user is loaded only if a rule needs it."""
    for topic in topics:
        await authorize(request.user, topic, SUBSCRIBE)


def client_seen(
    request: Request, topics: list[str], client: str | None, hold: float = 0.0
) -> Awaitable[None] | None:
    """``client=`` on a poll or long poll: the client is present on the request's presence
    topics until ``PRESENCE_POLL_TTL`` seconds after the request (a long poll: after its
    ``hold``). None (nothing to do, no cost) without a client or a presence topic."""
    if client is None:
        return None
    conf = get_settings()
    present = [topic for topic in topics if conf.topic_options(topic).presence]
    if not present:
        return None
    return _see(request, present, client, hold + conf.presence_poll_ttl)


async def _see(request: Request, topics: list[str], client: str, ttl: float) -> None:
    user = await request.user()
    limits.see_poll_client(limits.user_key(user), limits.request_ip(request), client, ttl)
    entries = [(topic, effective_user(user, topic)) for topic in topics]
    await get_presence().seen(entries, poll_connection_id(client, user), ttl)


async def read_after(
    topics: list[str], cursor: Cursor, limit: int
) -> tuple[list[Event], dict[str, Position], list[str]]:
    """Events after ``cursor`` in each topic (live end for topics it doesn't cover)."""
    history = get_history()
    results = await asyncio.gather(*(history.read(t, cursor.get(t), limit) for t in topics))
    events: list[Event] = []
    positions: dict[str, Position] = {}
    lost: list[str] = []
    for topic, result in zip(topics, results, strict=True):
        events.extend(result.events)
        positions[topic] = result.position
        if not result.recovered:
            lost.append(topic)
            metrics.NOT_RECOVERED_RESUME.inc()
    return events, positions, lost


async def subscribe_topic(
    hub: Hub,
    sub: Subscriber,
    topic: str,
    since: Position | None,
    positions: dict[str, Position],
    lost: list[str],
) -> None:
    """Subscribe ``sub`` live, replaying after ``since``, and record where the client
    starts in ``topic``: at ``since`` when it is recovered, else at the live end (and the
    topic is ``lost`` when ``since`` could not be resumed)."""
    subscription = await hub.subscribe(sub, topic, since)
    if since is not None and subscription.recovered:
        positions[topic] = since
    else:
        positions[topic] = subscription.position
        if not subscription.recovered:
            lost.append(topic)


async def wait_disconnect(receive: Receive) -> None:
    """Return when the client goes away (``http.disconnect``)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
