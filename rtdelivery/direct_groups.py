"""Publishing straight into channels-redis's groups, in rtdelivery's own requests.

``RedisChannelLayer.group_send`` (channels-redis) costs the publisher two round trips to read
the group (ZREMRANGEBYSCORE, ZRANGE), then one pipeline and one script per connection
shard. When the layer has one Redis and it is rtdelivery's own, the publisher does the
same work itself, in fewer requests: the group is read by the history append's script
(the same request), and every event of a batch is queued on its members' channels by one
script (the next request). Messages are the layer's own (its serializer: msgpack, its
random prefix, its encryption if configured; ``__asgi_channel__``), stored where and how
its receivers look for them (sorted sets scored by time, capacity checked per channel,
old messages expired, the key's TTL), so any channels-redis process receives them.

With the layer's default serializer (msgpack) and no encryption, the append's script
builds and queues the message itself (cmsgpack, see rtdelivery.history.scripts.APPEND):
one request per publish, with subscribers or without. The message then has no "id" (an
HMAC with the cursor key, which Redis does not have): each receiving process computes it.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.layers import BaseChannelLayer
from redis.exceptions import NoScriptError

from . import outage
from .backplane import event_message, group_name
from .core.events import Event
from .outage import BACKEND_ERRORS

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
