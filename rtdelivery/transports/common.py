"""Steps every HTTP transport shares: authorize, read after a cursor, subscribe and
position, wait for the client to leave. Transports import these, never each other."""

from __future__ import annotations

import asyncio

from .. import metrics
from ..core.cursors import Cursor, Position
from ..core.events import Event
from ..history import get_history
from ..hub import Hub
from ..policy import SUBSCRIBE, authorize
from ..subscriber import Subscriber
from .http import Receive, Request


async def authorize_all(request: Request, topics: list[str]) -> None:
    """Subscribe permission on every topic; the user is loaded only if a rule needs it."""
    for topic in topics:
        await authorize(request.user, topic, SUBSCRIBE)


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
