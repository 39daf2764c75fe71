"""The one place that reads ``settings.RTDELIVERY``.

Defaults are merged in, values are checked (:func:`validate`, the only copy of the
rules, which the system checks report too) and exposed through typed accessors.
The result is cached and the cache is cleared on ``setting_changed``, so tests
can use ``override_settings``/the pytest-django ``settings`` fixture freely.
Nothing here is read at import time.

The checks live in :mod:`rtdelivery.conf_validation` (their problems and check IDs in
:mod:`rtdelivery.conf_problems`), the Redis connection configuration in
:mod:`rtdelivery.redis_config`; their public names are re-exported here.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured

# Re-exported: rtdelivery.conf.validate(), Problem, the check IDs, RedisTarget, ... keep working.
from .conf_problems import E_REDIS as E_REDIS
from .conf_problems import E_SHAPE as E_SHAPE
from .conf_problems import E_TOPICS as E_TOPICS
from .conf_problems import E_VALUE as E_VALUE
from .conf_problems import Problem as Problem
from .conf_validation import BUILTIN_RULES as BUILTIN_RULES
from .conf_validation import HISTORY_BACKENDS as HISTORY_BACKENDS
from .conf_validation import INT_MINIMUMS as INT_MINIMUMS
from .conf_validation import NULLABLE_INTS as NULLABLE_INTS
from .conf_validation import NULLABLE_NUMBERS as NULLABLE_NUMBERS
from .conf_validation import NUMBER_UNITS as NUMBER_UNITS
from .conf_validation import POSITIVE_NUMBERS as POSITIVE_NUMBERS
from .conf_validation import validate as validate
from .conf_validation import validate_rule as validate_rule
from .conf_validation import validate_topic_options as validate_topic_options
from .ops import OPS_TOPIC
from .redis_config import REDIS_EXAMPLES as REDIS_EXAMPLES
from .redis_config import REDIS_KEYS as REDIS_KEYS
from .redis_config import REDIS_KINDS as REDIS_KINDS
from .redis_config import REDIS_SCHEMES as REDIS_SCHEMES
from .redis_config import RedisTarget as RedisTarget
from .redis_config import redact_url as redact_url
from .redis_config import redis_target as redis_target

#: Per-topic options that may appear in ``RTDELIVERY["TOPICS"][pattern]``.
TOPIC_OPTION_KEYS = frozenset(
    {
        "subscribe",
        "publish",
        "history_size",
        "history_max_age",
        "presence",
        "client_publish",
    }
)

DEFAULTS: dict[str, Any] = {
    # History: "memory" (one process, the embedded default) or "redis".
    "HISTORY_BACKEND": "memory",
    "REDIS_URL": None,
    # Sentinel or Cluster (or a URL) for history and presence, instead of REDIS_URL:
    # {"url": ...} | {"sentinels": [(host, port), ...], "service": name} | {"cluster": [url, ...]}.
    "REDIS": None,
    "REDIS_OPTIONS": {},
    "KEY_PREFIX": "rtdelivery:",
    # Events kept per topic, by count and by age (seconds); per-pattern overrides in TOPICS.
    "HISTORY_SIZE": 1000,
    "HISTORY_MAX_AGE": 24 * 3600,
    # A topic's seq/epoch record is forgotten after this long without any publish.
    "TOPIC_IDLE_TTL": 7 * 24 * 3600,
    # How long a publish's idempotency key is remembered per topic (seconds).
    "IDEMPOTENCY_TTL": 24 * 3600,
    # Channels layer alias used as the backplane.
    "CHANNEL_LAYER": "default",
    # Topic pattern -> options (policy, history limits, presence, client publish).
    "TOPICS": {},
    # Serialized size limit of one event's data, in bytes.
    "MAX_EVENT_BYTES": 64 * 1024,
    # Events buffered per connection before it is ended as too slow.
    "QUEUE_SIZE": 1000,
    # How often the hub checks history for events the backplane dropped at the tail
    # of a burst (seconds; 0 disables).
    "TAIL_CHECK_INTERVAL": 2.0,
    # How often the hub re-joins its groups (seconds); None: a third of the layer's
    # group_expiry (channels-redis forgets members after it).
    "GROUP_REFRESH_INTERVAL": None,
    # -- transports ---------------------------------------------------------------
    # Long polling: default and maximum hold time (seconds).
    "LONGPOLL_TIMEOUT": 25.0,
    "LONGPOLL_MAX_TIMEOUT": 55.0,
    # SSE: heartbeat comment interval (seconds) and the retry hint (milliseconds).
    "SSE_HEARTBEAT": 15.0,
    "SSE_RETRY": 2000,
    # Topics one connection (or one request) may watch.
    "MAX_TOPICS": 50,
    # Most events in one poll/long-poll answer and in one history answer.
    "POLL_LIMIT": 200,
    "HISTORY_LIMIT": 200,
    # Held long polls and open SSE streams per process; more get 429.
    "MAX_HELD_REQUESTS": 20000,
    # Largest accepted HTTP request body (publish) and WebSocket frame, in bytes.
    "MAX_REQUEST_BYTES": 128 * 1024,
    "WS_MAX_MESSAGE_BYTES": 128 * 1024,
    # WebSocket client frames per second (sustained) and burst before close 1008.
    "WS_RATE": 50.0,
    "WS_BURST": 100,
    # Origins allowed to call cross-origin (CORS on every HTTP endpoint) and to open
    # WebSockets; None: django-cors-headers' settings if installed, else same-origin
    # only (WebSockets: the hosts of ALLOWED_HOSTS). rtdelivery.cors.
    "ALLOWED_ORIGINS": None,
    # Access-Control-Allow-Credentials for ALLOWED_ORIGINS (cookies cross-origin).
    "CORS_ALLOW_CREDENTIALS": False,
    # Per client, per process (rtdelivery.transports.limits): open connections (streams,
    # sockets, held long polls) per user and per IP address, and publishes per second
    # (sustained, and burst) per user (per IP when anonymous). None: no limit.
    "MAX_CONNECTIONS_PER_USER": 50,
    "MAX_CONNECTIONS_PER_IP": 200,
    "PUBLISH_RATE": 10.0,
    "PUBLISH_BURST": 20,
    # Bearer tokens that let servers publish on any topic over HTTP (no CSRF, no policy).
    "PUBLISH_TOKENS": [],
    # Bearer tokens that may scrape the Prometheus metrics view (staff sessions may too).
    "METRICS_TOKENS": [],
    # How often each serving process reports its snapshot to the ops page (seconds);
    # None: never (rtdelivery.ops).
    "OPS_INTERVAL": 5.0,
    # Presence entries expire this long after their connection stops refreshing them.
    "PRESENCE_TTL": 60,
    # A polling client (client=<id>) stays present this long after its request (a long
    # poll: after its timeout); more than the clients' poll interval (rtdelivery.presence).
    "PRESENCE_POLL_TTL": 30,
    # -- who a client is -------------------------------------------------------------
    # Callables (request) -> user | None (or DRF authentication classes), tried in order.
    "AUTHENTICATORS": [
        "rtdelivery.authentication.token_authenticator",
        "rtdelivery.authentication.session_authenticator",
    ],
    # Lifetime of rtdelivery.tokens.connection_token() tokens without a ttl (seconds).
    "TOKEN_TTL": 300,
    # On Django's user_logged_out: end the connections of that session (True), of every
    # credential of that user ("user"), or none (False) (rtdelivery.access).
    "DISCONNECT_ON_LOGOUT": True,
    # How often each process checks that the sessions of its open connections still exist
    # (seconds); gone ones end with session_ended. None: never (rtdelivery.access).
    "SESSION_CHECK_INTERVAL": 30.0,
    # On SIGTERM/SIGINT, how long connections get to say goodbye before the server's own
    # shutdown runs (seconds); None leaves the signals to the server (rtdelivery.shutdown).
    "SHUTDOWN_TIMEOUT": 5.0,
}

T = TypeVar("T")


@dataclass(frozen=True)
class TopicOptions:
    """The options that apply to one topic after pattern matching."""

    pattern: str | None
    history_size: int
    history_max_age: int
    subscribe: Any = None
    publish: Any = None
    presence: bool = False
    client_publish: bool = True


@dataclass(frozen=True, eq=False)
class Settings:
    """Validated, merged ``RTDELIVERY`` settings."""

    raw: Mapping[str, Any]
    history_backend: str
    redis_url: str | None
    redis_options: Mapping[str, Any]
    key_prefix: str
    history_size: int
    history_max_age: int
    topic_idle_ttl: int
    idempotency_ttl: int
    channel_layer: str
    topics: Mapping[str, Mapping[str, Any]]
    max_event_bytes: int
    queue_size: int
    tail_check_interval: float
    group_refresh_interval: float | None
    longpoll_timeout: float
    longpoll_max_timeout: float
    sse_heartbeat: float
    sse_retry: int
    max_topics: int
    poll_limit: int
    history_limit: int
    max_held_requests: int
    max_request_bytes: int
    ws_max_message_bytes: int
    ws_rate: float
    ws_burst: int
    allowed_origins: tuple[str, ...] | None
    cors_allow_credentials: bool
    max_connections_per_user: int | None
    max_connections_per_ip: int | None
    publish_rate: float | None
    publish_burst: int
    publish_tokens: tuple[str, ...]
    metrics_tokens: tuple[str, ...]
    ops_interval: float | None
    presence_ttl: int
    presence_poll_ttl: int
    authenticators: tuple[str, ...]
    token_ttl: float
    disconnect_on_logout: bool | str
    session_check_interval: float | None
    shutdown_timeout: float | None
    #: Where history and presence connect (REDIS_URL or REDIS); None when neither is set.
    redis: RedisTarget | None
    cursor_key: bytes = field(repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def topic_options(self, topic: str) -> TopicOptions:
        """Options for ``topic``: the first pattern of ``TOPICS`` that matches wins."""
        return _topic_options(self, topic)


def build(raw_user: Any) -> Settings:
    """Settings from a ``settings.RTDELIVERY`` value, uncached (:func:`get_settings`
    caches); ``ImproperlyConfigured`` listing every problem :func:`validate` finds."""
    problems = validate(raw_user)
    if problems:
        raise ImproperlyConfigured("\n".join(str(problem) for problem in problems))
    raw = {**DEFAULTS, **(raw_user or {})}
    refresh = raw["GROUP_REFRESH_INTERVAL"]
    shutdown = raw["SHUTDOWN_TIMEOUT"]
    session_check = raw["SESSION_CHECK_INTERVAL"]
    origins = raw["ALLOWED_ORIGINS"]
    secret = getattr(django_settings, "SECRET_KEY", "") or ""
    return Settings(
        raw=raw,
        history_backend=raw["HISTORY_BACKEND"],
        redis_url=raw["REDIS_URL"] or (raw["REDIS"] or {}).get("url"),
        redis_options=dict(raw["REDIS_OPTIONS"]),
        key_prefix=raw["KEY_PREFIX"],
        history_size=raw["HISTORY_SIZE"],
        history_max_age=raw["HISTORY_MAX_AGE"],
        topic_idle_ttl=raw["TOPIC_IDLE_TTL"],
        idempotency_ttl=raw["IDEMPOTENCY_TTL"],
        channel_layer=raw["CHANNEL_LAYER"],
        topics=raw["TOPICS"],
        max_event_bytes=raw["MAX_EVENT_BYTES"],
        queue_size=raw["QUEUE_SIZE"],
        tail_check_interval=float(raw["TAIL_CHECK_INTERVAL"]),
        # 0 means "the default" like None: a third of the layer's group_expiry.
        group_refresh_interval=float(refresh) if refresh else None,
        longpoll_timeout=float(raw["LONGPOLL_TIMEOUT"]),
        longpoll_max_timeout=float(raw["LONGPOLL_MAX_TIMEOUT"]),
        sse_heartbeat=float(raw["SSE_HEARTBEAT"]),
        sse_retry=raw["SSE_RETRY"],
        max_topics=raw["MAX_TOPICS"],
        poll_limit=raw["POLL_LIMIT"],
        history_limit=raw["HISTORY_LIMIT"],
        max_held_requests=raw["MAX_HELD_REQUESTS"],
        max_request_bytes=raw["MAX_REQUEST_BYTES"],
        ws_max_message_bytes=raw["WS_MAX_MESSAGE_BYTES"],
        ws_rate=float(raw["WS_RATE"]),
        ws_burst=raw["WS_BURST"],
        allowed_origins=None if origins is None else tuple(origins),
        cors_allow_credentials=raw["CORS_ALLOW_CREDENTIALS"],
        max_connections_per_user=raw["MAX_CONNECTIONS_PER_USER"],
        max_connections_per_ip=raw["MAX_CONNECTIONS_PER_IP"],
        publish_rate=None if raw["PUBLISH_RATE"] is None else float(raw["PUBLISH_RATE"]),
        publish_burst=raw["PUBLISH_BURST"],
        publish_tokens=tuple(raw["PUBLISH_TOKENS"]),
        metrics_tokens=tuple(raw["METRICS_TOKENS"]),
        ops_interval=None if raw["OPS_INTERVAL"] is None else float(raw["OPS_INTERVAL"]),
        presence_ttl=raw["PRESENCE_TTL"],
        presence_poll_ttl=raw["PRESENCE_POLL_TTL"],
        authenticators=tuple(raw["AUTHENTICATORS"]),
        token_ttl=float(raw["TOKEN_TTL"]),
        disconnect_on_logout=raw["DISCONNECT_ON_LOGOUT"],
        session_check_interval=None if session_check is None else float(session_check),
        shutdown_timeout=None if shutdown is None else float(shutdown),
        redis=redis_target(raw),
        cursor_key=hashlib.sha256(b"rtdelivery.cursor:" + secret.encode()).digest(),
    )


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The validated settings; raises ``ImproperlyConfigured`` with a clear message."""
    return build(getattr(django_settings, "RTDELIVERY", None))


@functools.lru_cache(maxsize=4096)
def _topic_options(conf: Settings, topic: str) -> TopicOptions:
    if topic == OPS_TOPIC and OPS_TOPIC not in conf.topics:
        # The live ops page's topic: staff only, whatever wildcard pattern would match.
        return TopicOptions(OPS_TOPIC, 10, 300, subscribe="staff", publish="nobody")
    for pattern, options in conf.topics.items():
        if fnmatch.fnmatchcase(topic, pattern):
            return TopicOptions(
                pattern=pattern,
                history_size=options.get("history_size", conf.history_size),
                history_max_age=options.get("history_max_age", conf.history_max_age),
                subscribe=options.get("subscribe"),
                publish=options.get("publish"),
                presence=options.get("presence", False),
                client_publish=options.get("client_publish", True),
            )
    return TopicOptions(
        pattern=None, history_size=conf.history_size, history_max_age=conf.history_max_age
    )


class PerSettings(Generic[T]):
    """One object built from the current settings, rebuilt when they change (a new
    ``Settings`` object): the history backend, the presence store."""

    def __init__(self, build: Callable[[Settings], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._conf: Settings | None = None
        self._value: T | None = None

    def get(self) -> T:
        conf = get_settings()
        value = self._value
        if self._conf is not conf or value is None:
            with self._lock:
                if self._conf is not conf or self._value is None:
                    self._value = self._build(conf)
                    self._conf = conf
                value = self._value
        return value

    def reset(self) -> None:
        """Forget the object; the next :meth:`get` builds a new one."""
        with self._lock:
            self._conf = self._value = None


def clear_cache(**kwargs: Any) -> None:
    """``setting_changed`` receiver: forget cached settings and derived state."""
    setting = kwargs.get("setting")
    if setting is None or setting in ("RTDELIVERY", "SECRET_KEY", "CHANNEL_LAYERS"):
        get_settings.cache_clear()
        _topic_options.cache_clear()
