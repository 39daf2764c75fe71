"""Long polling: the request is held until at least one event arrives or the timeout."""

from __future__ import annotations

import asyncio
import contextlib

from .. import metrics
from ..conf import get_settings
from ..core.cursors import Cursor, Position
from ..core.events import Event
from ..core.params import parse_seconds
from ..hub import Hub, get_hub
from ..subscriber import Notice, Reset, SlowConsumer, Subscriber, SubscriberClosed
from ..tokens import token_claims
from . import flow, limits
from .common import authorize_all, client_seen, read_after, subscribe_topic, wait_disconnect
from .http import Request, Send, events_body, respond


def _timeout(request: Request) -> float:
    conf = get_settings()
    raw = request.param("timeout")
    if raw is None:
        return conf.longpoll_timeout
    value = parse_seconds("timeout", raw)
    return min(value, conf.longpoll_max_timeout)


async def handle(request: Request, send: Send) -> None:
    conf = get_settings()
    topics = request.topics()
    cursor = request.cursor()
    timeout = _timeout(request)
    client = request.client_id()
    await authorize_all(request, topics)
    # Held no longer than the connection token that let it in lives (if the policy
    # needed to know who the client is): the next poll presents a fresh one.
    identity = getattr(request, "_identity", None)
    claims = token_claims(getattr(identity, "user", None))
    if claims is not None:
        timeout = max(0.0, min(timeout, claims.remaining()))
    if cursor:
        # A backlog (or a lost topic) is answered at once from history, paged by POLL_LIMIT,
        # exactly like a poll: no group to join and no inbox to fill for a request that
        # will not be held.
        backlog, read_positions, read_lost = await read_after(topics, cursor, conf.poll_limit)
        if backlog or read_lost:
            # client=: present for PRESENCE_POLL_TTL seconds (presence topics only).
            seen = client_seen(request, topics, client)
            if seen is not None:
                await seen
            metrics.delivered["longpoll"].n += len(backlog)
            cursor_text = Cursor(read_positions).encode(conf.cursor_key)
            await respond(send, 200, events_body(backlog, cursor_text, not read_lost, read_lost))
            return
        cursor = Cursor(read_positions)
    with limits.hold("longpoll", *await limits.client_of(request)):
        # Present while held and PRESENCE_POLL_TTL seconds more; only once the hold is
        # granted, so a request refused with 429 is nobody's presence.
        seen = client_seen(request, topics, client, hold=timeout)
        if seen is not None:
            await seen
        sub = Subscriber(conf.queue_size)
        # A shutdown closes the inbox: the hold ends at once and the answer carries the
        # cursor (rtdelivery.shutdown).
        link = flow.connect(send, sub, scope_type="http", flow=False)
        try:
            body = await _hold(request, get_hub(), sub, topics, cursor, timeout)
        except BaseException:
            link.release()
            raise
    try:
        if body is not None:
            await respond(send, 200, body)
    finally:
        link.release()


async def _hold(
    request: Request, hub: Hub, sub: Subscriber, topics: list[str], cursor: Cursor, hold: float
) -> bytes | None:
    """Subscribe, wait, and return the answer's body (None: the client went away)."""
    conf = get_settings()
    positions: dict[str, Position] = {}
    lost: list[str] = []
    events: list[Event] = []
    disconnect = asyncio.ensure_future(wait_disconnect(request.receive))
    try:
        for topic in topics:
            await subscribe_topic(hub, sub, topic, cursor.get(topic), positions, lost)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + hold
        # Held until an event (or a lost topic) or the deadline: notices such as
        # presence changes wake the inbox but don't end the hold.
        while not lost and not events:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            getter = asyncio.ensure_future(sub.get())
            try:
                done, _ = await asyncio.wait(
                    {getter, disconnect},
                    timeout=remaining,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            except BaseException:  # cancelled: don't leave the getter behind
                getter.cancel()
                raise
            if disconnect in done:
                getter.cancel()
                return None
            if getter not in done:
                getter.cancel()
                break
            try:
                items = getter.result()
            except (SlowConsumer, SubscriberClosed):
                break
            _collect(items, events, positions, lost, conf.poll_limit)
    finally:
        disconnect.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await disconnect
        await hub.unsubscribe_all(sub)
    metrics.delivered["longpoll"].n += len(events)
    cursor_text = Cursor(positions).encode(conf.cursor_key)
    return events_body(events, cursor_text, not lost, lost)


def _collect(
    items: list[Event | Reset | Notice],
    events: list[Event],
    positions: dict[str, Position],
    lost: list[str],
    limit: int,
) -> None:
    for item in items:
        if isinstance(item, Event):
            if len(events) >= limit:
                break  # the rest is read from history by the next request
            events.append(item)
            positions[item.topic] = item.position
        elif isinstance(item, Reset):
            positions[item.topic] = item.position
            lost.append(item.topic)
