"""The backplane: the Channels layer that carries events and presence between processes.

The only module that knows the layer's message schema and group names; the hub,
presence and publishing call these functions. Messages (dicts, msgpack-encoded by
channels-redis; field names are the wire format between processes of different
versions, so change them with care):

- an event: ``{"type": "rtdelivery.event", "topic", "epoch", "seq", "etype",
  "data" (the event's JSON text, encoded once by the publisher), "time", "id"}``; "id" is
  left out when the history's append script queued the message itself (it cannot compute
  the id: :mod:`rtdelivery.direct_groups`), and a receiver derives it from topic, epoch
  and seq with its cursor key;
- a presence change: ``{"type": "rtdelivery.presence", "topic", "data": {"topic",
  "action" ("join" | "leave"), "user": {"id", "name"}, "connection", "time"}}``;
- a control message (access ended): ``{"type": "rtdelivery.control", "action"
  ("disconnect" | "unsubscribe"), "user" (the user's pk, as text), "session" (a session
  key, or None: every connection of the user), "topic" (unsubscribe only), "reason",
  and for one connection only "connection" (its id) and "process" (``host:pid``)}``,
  sent to the group ``"rtdelivery.control"``, which every process that serves
  connections of a known user joins (:mod:`rtdelivery.access`).

Each process's hub has one layer channel and joins the group ``"rtdelivery." + topic``
of every topic it has subscribers for; publishers send to that group.

Every layer call raises :class:`~rtdelivery.core.errors.Unavailable` (recorded by
:mod:`rtdelivery.outage`) when the layer's backend cannot be reached, never the raw
Redis or socket error. Only sends count as successes for the outage log: the pub/sub
layer answers group_add/group_discard from memory when it can, even with Redis down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from channels.layers import BaseChannelLayer, get_channel_layer
from django.core.exceptions import ImproperlyConfigured

from . import outage
from .conf import get_settings
from .core.events import Event
from .outage import BACKEND_ERRORS

GROUP_PREFIX = "rtdelivery."
CHANNEL_PREFIX = "rtdelivery.hub."
EVENT = "rtdelivery.event"
PRESENCE = "rtdelivery.presence"
CONTROL = "rtdelivery.control"
#: The group every process with connections of a known user joins (no topic's group:
#: those all start with GROUP_PREFIX).
CONTROL_GROUP = "rtdelivery-control"


def group_name(topic: str) -> str:
    """The layer group that carries ``topic`` (topics use the group-name alphabet)."""
    return GROUP_PREFIX + topic


def get_layer() -> BaseChannelLayer:
    """The configured Channels layer (``RTDELIVERY["CHANNEL_LAYER"]``)."""
    alias = get_settings().channel_layer
    layer = get_channel_layer(alias)
    if layer is None:
        raise ImproperlyConfigured(
            f"rtdelivery needs a Channels layer: settings.CHANNEL_LAYERS[{alias!r}] "
            "is not configured (see RTDELIVERY['CHANNEL_LAYER'])."
        )
    return layer


# -- the schema ----------------------------------------------------------------------------


def event_message(event: Event) -> dict[str, Any]:
    """The layer message that carries ``event`` to every process."""
    return {
        "type": EVENT,
        "topic": event.topic,
        "epoch": event.epoch,
        "seq": event.seq,
        "etype": event.type,
        "data": event.data_json,
        "time": event.time,
        "id": event.id,
    }


def presence_message(
    topic: str, action: str, connection: str, user: dict[str, Any], time_ms: int | None = None
) -> dict[str, Any]:
    """The layer message announcing that ``connection`` of ``user`` joined/left ``topic``."""
    return {
        "type": PRESENCE,
        "topic": topic,
        "data": {
            "topic": topic,
            "action": action,
            "user": user,
            "connection": connection,
            "time": int(time.time() * 1000) if time_ms is None else time_ms,
        },
    }


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """A presence message, decoded: not an event (no seq, not in history)."""

    topic: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Control:
    """A control message, decoded: end ``user``'s connections (those of ``session``
    only, if given; only the one with id ``connection`` on process ``process``, if
    given), or only their subscription to ``topic``."""

    action: str
    user: str
    session: str | None
    topic: str | None
    reason: str
    connection: str | None = None
    process: str | None = None


def control_message(
    action: str,
    user: str,
    reason: str,
    *,
    session: str | None = None,
    topic: str | None = None,
    connection: str | None = None,
    process: str | None = None,
) -> dict[str, Any]:
    """The layer message that ends ``user``'s connections (or ``topic`` for them)."""
    message = {
        "type": CONTROL,
        "action": action,
        "user": user,
        "session": session,
        "topic": topic,
        "reason": reason,
    }
    if connection is not None:  # one connection: its id (and process, if known)
        message["connection"] = connection
        message["process"] = process
    return message


def decode(message: dict[str, Any], key: bytes) -> Event | PresenceChange | Control | None:
    """What a received layer message carries; None for any other message (ignored).

    ``key`` is the cursor key event ids are made with (used for an event without one).
    Raises ``KeyError`` for a malformed message of a known type.
    """
    kind = message.get("type")
    if kind == EVENT:
        return Event(
            message["topic"],
            message["seq"],
            message["epoch"],
            message["etype"],
            message["data"],
            message["time"],
            key=key,
            id=message.get("id"),  # None: computed from the cursor key
        )
    if kind == PRESENCE:
        return PresenceChange(message["topic"], message["data"])
    if kind == CONTROL:
        return Control(
            message["action"],
            message["user"],
            message.get("session"),
            message.get("topic"),
            message["reason"],
            message.get("connection"),
            message.get("process"),
        )
    return None


# -- layer calls -------------------------------------------------------------------------


async def new_channel(layer: BaseChannelLayer) -> str:
    """A new layer channel for one hub."""
    try:
        name: str = await layer.new_channel(prefix=CHANNEL_PREFIX)
    except BACKEND_ERRORS as exc:
        raise outage.unavailable(exc, "channel layer new_channel") from exc
    return name


async def join(layer: BaseChannelLayer, topic: str, channel: str) -> None:
    """Add ``channel`` to ``topic``'s group (idempotent: also a refresh)."""
    try:
        await layer.group_add(group_name(topic), channel)
    except BACKEND_ERRORS as exc:
        raise outage.unavailable(exc, "channel layer group_add") from exc


async def leave(layer: BaseChannelLayer, topic: str, channel: str) -> None:
    """Remove ``channel`` from ``topic``'s group."""
    try:
        await layer.group_discard(group_name(topic), channel)
    except BACKEND_ERRORS as exc:
        raise outage.unavailable(exc, "channel layer group_discard") from exc


async def receive(layer: BaseChannelLayer, channel: str) -> dict[str, Any]:
    """The next message for ``channel`` (decode it with :func:`decode`)."""
    try:
        message: dict[str, Any] = await layer.receive(channel)
    except BACKEND_ERRORS as exc:
        raise outage.unavailable(exc, "channel layer receive") from exc
    return message


async def send_event(layer: BaseChannelLayer, event: Event) -> None:
    """Send ``event`` to every process with subscribers of its topic."""
    try:
        await layer.group_send(group_name(event.topic), event_message(event))
    except BACKEND_ERRORS as exc:
        raise outage.unavailable(exc, "channel layer group_send") from exc
    outage.record_success()


async def send_presence(
    layer: BaseChannelLayer, topic: str, action: str, connection: str, user: dict[str, Any]
) -> None:
    """Announce a presence change on ``topic`` to every process."""
    try:
        await layer.group_send(group_name(topic), presence_message(topic, action, connection, user))
    except BACKEND_ERRORS as exc:
        raise outage.unavailable(exc, "channel layer group_send") from exc
    outage.record_success()


async def join_control(layer: BaseChannelLayer, channel: str) -> None:
    """Add ``channel`` to the control group (idempotent: also a refresh)."""
    try:
        await layer.group_add(CONTROL_GROUP, channel)
    except BACKEND_ERRORS as exc:
        raise outage.unavailable(exc, "channel layer group_add") from exc


async def leave_control(layer: BaseChannelLayer, channel: str) -> None:
    """Remove ``channel`` from the control group."""
    try:
        await layer.group_discard(CONTROL_GROUP, channel)
    except BACKEND_ERRORS as exc:
        raise outage.unavailable(exc, "channel layer group_discard") from exc


async def send_control(layer: BaseChannelLayer, message: dict[str, Any]) -> None:
    """Send a :func:`control_message` to every process."""
    try:
        await layer.group_send(CONTROL_GROUP, message)
    except BACKEND_ERRORS as exc:
        raise outage.unavailable(exc, "channel layer group_send") from exc
    outage.record_success()
