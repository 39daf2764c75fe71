"""The backplane: the Channels layer that carries events and presence between processes.

The only module that knows the layer's message schema and group names; the hub,
presence and publishing call these functions. Messages (dicts, msgpack-encoded by
channels-redis; field names are the wire format between processes of different
versions, so change them with care):

- an event: ``{"type": "rtdelivery.event", "topic", "epoch", "seq", "etype",
  "data" (the event's JSON text, encoded once by the publisher), "time", "id"}``; "id" is
  left out when the history's append script queued the message itself (it cannot compute
  the id: :class:`DirectGroups`), and a receiver derives it from topic, epoch and seq with
  its cursor key;
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

import hashlib
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.layers import BaseChannelLayer, get_channel_layer
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import NoScriptError

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


# -- publishing straight into channels-redis's groups ---------------------------------------
#
# channels-redis's RedisChannelLayer.group_send costs the publisher two round trips to read
# the group (ZREMRANGEBYSCORE, ZRANGE), then one pipeline and one script per connection
# shard. When the layer has one Redis and it is rtdelivery's own, the publisher does the
# same work itself, in fewer requests: the group is read by the history append's script
# (the same request), and every event of a batch is queued on its members' channels by one
# script (the next request). Messages are the layer's own (its serializer: msgpack, its
# random prefix, its encryption if configured; ``__asgi_channel__``), stored where and how
# its receivers look for them (sorted sets scored by time, capacity checked per channel,
# old messages expired, the key's TTL), so any channels-redis process receives them.
#
# With the layer's default serializer (msgpack) and no encryption, the append's script
# builds and queues the message itself (cmsgpack, see rtdelivery.history.scripts.APPEND):
# one request per publish, with subscribers or without. The message then has no "id" (an
# HMAC with the cursor key, which Redis does not have): each receiving process computes it.

#: KEYS: a channel key per message (repeated for several messages to one channel). ARGV:
#: the messages, their channels' capacities, then the first score (time, in integer
#: microseconds: exact in a Lua double, and written out exactly), the drop-before
#: score (time - expiry) and the expiry. Scores grow by a microsecond per message, so the
#: events of a batch are popped (lowest score first) in the order they were sent.
_SEND = """
local n = #KEYS
local first = tonumber(ARGV[2 * n + 1])  -- microseconds
local cutoff, expiry = ARGV[2 * n + 2], ARGV[2 * n + 3]
local over, cleaned = 0, {}
for i = 1, n do
  local key = KEYS[i]
  if not cleaned[key] then
    redis.call('ZREMRANGEBYSCORE', key, 0, cutoff)
    cleaned[key] = true
  end
  if redis.call('ZCOUNT', key, '-inf', '+inf') < tonumber(ARGV[n + i]) then
    local us = first + i - 1
    redis.call('ZADD', key, string.format('%d.%06d', math.floor(us / 1e6), us % 1e6), ARGV[i])
    redis.call('EXPIRE', key, expiry)
  else
    over = over + 1
  end
end
return over
"""
_SEND_SHA = hashlib.sha1(_SEND.encode()).hexdigest()


class DirectGroups:
    """Group sends of a channels-redis ``RedisChannelLayer`` done in rtdelivery's requests.

    Built by :func:`direct_groups` only for a layer that keeps its groups and channels in
    the Redis rtdelivery's history uses. Not thread-safe: one per event loop.
    """

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.group_expiry = int(layer.group_expiry)
        self.expiry = int(layer.expiry)
        self._last_us = 0  # the last score used, in microseconds
        #: Whether the append's script queues the events itself (:meth:`queue_args`);
        #: else :meth:`send` does, in a request of its own.
        self.in_append = _plain_msgpack(layer)
        if self.in_append:
            prefix_length = int(layer._serializer.random_prefix_length)
            self._queue_tail = (
                f"|{self.expiry}|{int(layer.capacity)}|{prefix_length}|{layer.prefix}"
            )

    def group_key(self, topic: str) -> str:
        key: bytes = self.layer._group_key(group_name(topic))
        return key.decode()

    def group_cutoff(self) -> int:
        """Members older than this (seconds) left the group (channels-redis's rule)."""
        return int(time.time()) - self.group_expiry

    def _scores(self, n: int) -> int:
        """The first of ``n`` scores (times in microseconds) a microsecond apart, later
        than any this process used before: its messages are popped (lowest score first)
        in the order it sent them. Integers: a float time plus i/1e6, written with 6
        decimals, may round two scores to one, and equal scores pop in byte order."""
        first = max(time.time_ns() // 1000, self._last_us + 1)
        self._last_us = first + n - 1
        return first

    def queue_args(self, n: int) -> list[str]:
        """The append script's queueing parameters for a batch of ``n`` appends, in order:
        "<score>|<message cutoff>|<expiry>|<capacity>|<prefix length>|<channel prefix>"."""
        first = self._scores(n)
        tail = f"|{int(time.time()) - self.expiry}{self._queue_tail}"
        return [f"{us // 1_000_000}.{us % 1_000_000:06d}{tail}" for us in range(first, first + n)]

    async def send(self, client: Any, sends: list[tuple[Event, list[Any]]]) -> int:
        """Queue each event on its group members' channels, in this order, in one script;
        how many messages found their channel full (dropped, as channels-redis does)."""
        keys: list[str] = []
        messages: list[bytes] = []
        capacities: list[int] = []
        mapper = self.layer._map_channel_keys_to_connection
        for event, members in sends:
            names = [m.decode() if isinstance(m, bytes) else m for m in members]
            by_connection, message_of, capacity_of = mapper(names, event_message(event))
            for channel_keys in by_connection.values():  # one connection (ring_size 1)
                for key in channel_keys:
                    keys.append(key)
                    messages.append(message_of[key])
                    capacities.append(capacity_of[key])
        if not keys:
            return 0
        first = self._scores(len(keys))
        cutoff = int(time.time()) - self.expiry
        args = (*messages, *capacities, first, cutoff, self.expiry)
        try:
            try:
                over = await client.evalsha(_SEND_SHA, len(keys), *keys, *args)
            except NoScriptError:
                over = await client.eval(_SEND, len(keys), *keys, *args)
        except BACKEND_ERRORS as exc:
            raise outage.unavailable(exc, "channel layer group_send") from exc
        outage.record_success()
        return int(over)


def direct_groups(layer: BaseChannelLayer, conf: Any) -> DirectGroups | None:
    """A :class:`DirectGroups` for ``layer`` when its group sends can go in rtdelivery's
    own requests: exactly channels-redis's ``RedisChannelLayer`` send (not overridden), one
    host, and that host is rtdelivery's Redis (``REDIS_URL``: same address and database;
    not Sentinel or Cluster). Else None: events go through ``layer.group_send``."""
    try:
        from channels_redis.core import RedisChannelLayer
    except ImportError:  # pragma: no cover - channels-redis is a dependency
        return None
    if not isinstance(layer, RedisChannelLayer):
        return None
    if type(layer).group_send is not RedisChannelLayer.group_send:
        return None
    needed = ("_group_key", "_map_channel_keys_to_connection", "group_expiry", "expiry", "hosts")
    if not all(hasattr(layer, name) for name in needed) or len(layer.hosts) != 1:
        return None
    target = getattr(conf, "redis", None)
    if conf.history_backend != "redis" or target is None or target.kind != "url":
        return None
    if _server(layer.hosts[0]) is None or _server(layer.hosts[0]) != _server(target.url):
        return None
    return DirectGroups(layer)


def _plain_msgpack(layer: Any) -> bool:
    """Whether ``layer`` (a :func:`direct_groups` one) serializes as the append script
    does: channels-redis's own msgpack serializer, no encryption, every method involved
    channels-redis's own, one capacity for every channel (no per-channel patterns, which
    are Python regexes)."""
    try:
        import msgpack
        from channels_redis.core import RedisChannelLayer
        from channels_redis.serializers import MsgPackSerializer
    except ImportError:  # pragma: no cover - channels-redis's dependencies
        return False
    serializer: Any = getattr(layer, "_serializer", None)
    if type(serializer) is not MsgPackSerializer or serializer.crypter is not None:
        return False
    if getattr(MsgPackSerializer, "as_bytes", None) is not msgpack.packb:
        return False
    if {"serialize", "deserialize", "as_bytes", "from_bytes"} & set(vars(serializer)):
        return False  # overridden on the instance
    methods = ("serialize", "deserialize", "non_local_name", "_map_channel_keys_to_connection")
    if any(getattr(type(layer), m, None) is not getattr(RedisChannelLayer, m) for m in methods):
        return False
    if any(m in vars(layer) for m in methods):
        return False
    length = getattr(serializer, "random_prefix_length", None)
    if type(length) is not int or length < 0:
        return False
    return not layer.channel_capacity and isinstance(layer.prefix, str)


def _server(host: Any) -> tuple[Any, ...] | None:
    """(scheme, host, port, db) or (unix, path, db) of a Redis URL or channels-redis host
    dict; None when it can't be told (a Sentinel host, anything unexpected)."""
    if isinstance(host, dict):
        if "address" in host:
            return _server(host["address"]) if isinstance(host["address"], str) else None
        if "host" in host and "master_name" not in host:
            return (
                "redis",
                str(host["host"]).lower(),
                int(host.get("port", 6379)),
                int(host.get("db", 0)),
            )
        return None
    if not isinstance(host, str):
        return None
    try:
        parts = urlsplit(host)
        query = parse_qs(parts.query)
        db = query.get("db", [None])[0]
        if parts.scheme == "unix":
            return ("unix", parts.path, int(db or 0))
        if parts.scheme not in ("redis", "rediss"):
            return None
        path_db = parts.path.lstrip("/")
        return (
            "redis",
            (parts.hostname or "localhost").lower(),
            parts.port or 6379,
            int(db or path_db or 0),
        )
    except ValueError:
        return None
