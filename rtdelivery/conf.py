"""The one place that reads ``settings.RTDELIVERY``.

Defaults are merged in, values are checked and exposed through typed accessors.
The result is cached and the cache is cleared on ``setting_changed``, so tests
can use ``override_settings``/the pytest-django ``settings`` fixture freely.
Nothing here is read at import time.
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
    "REDIS_OPTIONS": {},
    "KEY_PREFIX": "rtdelivery:",
    # Events kept per topic, by count and by age (seconds); per-pattern overrides in TOPICS.
    "HISTORY_SIZE": 1000,
    "HISTORY_MAX_AGE": 24 * 3600,
    # A topic's seq/epoch record is forgotten after this long without any publish.
    "TOPIC_IDLE_TTL": 7 * 24 * 3600,
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
    # Origins allowed to open WebSockets; None: the hosts of ALLOWED_HOSTS.
    "ALLOWED_ORIGINS": None,
    # Bearer tokens that let servers publish on any topic over HTTP (no CSRF, no policy).
    "PUBLISH_TOKENS": [],
    # Presence entries expire this long after their connection stops refreshing them.
    "PRESENCE_TTL": 60,
}

HISTORY_BACKENDS = ("memory", "redis")

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
    publish_tokens: tuple[str, ...]
    presence_ttl: int
    cursor_key: bytes = field(repr=False)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def topic_options(self, topic: str) -> TopicOptions:
        """Options for ``topic``: the first pattern of ``TOPICS`` that matches wins."""
        return _topic_options(self, topic)


def _positive_int(raw: Mapping[str, Any], key: str, *, allow_zero: bool = False) -> int:
    value = raw[key]
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ImproperlyConfigured(
            f"RTDELIVERY[{key!r}] must be an integer >= {low}, got {value!r}."
        )
    return value


def _non_negative_number(raw: Mapping[str, Any], key: str, unit: str = "seconds") -> float:
    value = raw[key]
    # "not value >= 0" also rejects NaN.
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ImproperlyConfigured(
            f"RTDELIVERY[{key!r}] must be a number >= 0 ({unit}), got {value!r}."
        )
    return float(value)


def validate_topic_options(pattern: Any, options: Any) -> list[str]:
    """Return a list of problems with one ``TOPICS`` entry (empty when fine)."""
    problems = []
    if not isinstance(pattern, str) or not pattern:
        problems.append(f"TOPICS keys must be non-empty pattern strings, got {pattern!r}.")
    if not isinstance(options, Mapping):
        return [*problems, f"TOPICS[{pattern!r}] must be a dict, got {type(options).__name__}."]
    unknown = sorted(set(options) - TOPIC_OPTION_KEYS)
    if unknown:
        problems.append(
            f"TOPICS[{pattern!r}] has unknown option(s) {unknown}; "
            f"expected some of {sorted(TOPIC_OPTION_KEYS)}."
        )
    for key in ("history_size", "history_max_age"):
        if key in options:
            value = options[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(
                    f"TOPICS[{pattern!r}][{key!r}] must be an integer >= 0, got {value!r}."
                )
    for key in ("presence", "client_publish"):
        if key in options and not isinstance(options[key], bool):
            problems.append(f"TOPICS[{pattern!r}][{key!r}] must be True or False.")
    return problems


def _build(raw_user: Any) -> Settings:
    if raw_user is None:
        raw_user = {}
    if not isinstance(raw_user, Mapping):
        raise ImproperlyConfigured(
            f"settings.RTDELIVERY must be a dict, got {type(raw_user).__name__}."
        )
    unknown = sorted(set(raw_user) - set(DEFAULTS))
    if unknown:
        raise ImproperlyConfigured(
            f"Unknown RTDELIVERY setting(s) {unknown}; expected some of {sorted(DEFAULTS)}."
        )
    raw = {**DEFAULTS, **raw_user}

    backend = raw["HISTORY_BACKEND"]
    if backend not in HISTORY_BACKENDS:
        raise ImproperlyConfigured(
            f"RTDELIVERY['HISTORY_BACKEND'] must be one of {list(HISTORY_BACKENDS)}, "
            f"got {backend!r}."
        )
    redis_url = raw["REDIS_URL"]
    if redis_url is not None and not isinstance(redis_url, str):
        raise ImproperlyConfigured(
            f"RTDELIVERY['REDIS_URL'] must be a redis:// URL string or None, got {redis_url!r}."
        )
    if not isinstance(raw["REDIS_OPTIONS"], Mapping):
        raise ImproperlyConfigured("RTDELIVERY['REDIS_OPTIONS'] must be a dict.")
    prefix = raw["KEY_PREFIX"]
    if not isinstance(prefix, str):
        raise ImproperlyConfigured(f"RTDELIVERY['KEY_PREFIX'] must be a string, got {prefix!r}.")
    layer = raw["CHANNEL_LAYER"]
    if not isinstance(layer, str):
        raise ImproperlyConfigured(f"RTDELIVERY['CHANNEL_LAYER'] must be a string, got {layer!r}.")
    topics = raw["TOPICS"]
    if not isinstance(topics, Mapping):
        raise ImproperlyConfigured("RTDELIVERY['TOPICS'] must be a dict of pattern -> options.")
    for pattern, options in topics.items():
        problems = validate_topic_options(pattern, options)
        if problems:
            raise ImproperlyConfigured("RTDELIVERY: " + " ".join(problems))
    refresh = raw["GROUP_REFRESH_INTERVAL"]
    if refresh is not None:
        refresh = _non_negative_number(raw, "GROUP_REFRESH_INTERVAL") or None

    origins = raw["ALLOWED_ORIGINS"]
    if origins is not None and (
        not isinstance(origins, list | tuple | set | frozenset)
        or not all(isinstance(o, str) for o in origins)
    ):
        raise ImproperlyConfigured(
            "RTDELIVERY['ALLOWED_ORIGINS'] must be None or a list of origins like "
            f"'https://example.com' (or '*'), got {origins!r}."
        )
    tokens = raw["PUBLISH_TOKENS"]
    if not isinstance(tokens, list | tuple | set | frozenset) or not all(
        isinstance(t, str) and len(t) >= 16 for t in tokens
    ):
        raise ImproperlyConfigured(
            "RTDELIVERY['PUBLISH_TOKENS'] must be a list of secret strings of at least 16 "
            "characters."
        )
    longpoll_max = _non_negative_number(raw, "LONGPOLL_MAX_TIMEOUT")
    longpoll_timeout = _non_negative_number(raw, "LONGPOLL_TIMEOUT")
    if longpoll_timeout > longpoll_max:
        raise ImproperlyConfigured(
            f"RTDELIVERY['LONGPOLL_TIMEOUT'] ({longpoll_timeout}) must not exceed "
            f"RTDELIVERY['LONGPOLL_MAX_TIMEOUT'] ({longpoll_max})."
        )
    heartbeat = _non_negative_number(raw, "SSE_HEARTBEAT")
    if heartbeat <= 0:
        raise ImproperlyConfigured("RTDELIVERY['SSE_HEARTBEAT'] must be > 0 seconds.")
    ws_rate = _non_negative_number(raw, "WS_RATE", "frames per second")

    secret = getattr(django_settings, "SECRET_KEY", "") or ""
    cursor_key = hashlib.sha256(b"rtdelivery.cursor:" + secret.encode()).digest()

    return Settings(
        raw=raw,
        history_backend=backend,
        redis_url=redis_url,
        redis_options=dict(raw["REDIS_OPTIONS"]),
        key_prefix=prefix,
        history_size=_positive_int(raw, "HISTORY_SIZE", allow_zero=True),
        history_max_age=_positive_int(raw, "HISTORY_MAX_AGE"),
        topic_idle_ttl=_positive_int(raw, "TOPIC_IDLE_TTL"),
        channel_layer=layer,
        topics=topics,
        max_event_bytes=_positive_int(raw, "MAX_EVENT_BYTES"),
        queue_size=_positive_int(raw, "QUEUE_SIZE"),
        tail_check_interval=_non_negative_number(raw, "TAIL_CHECK_INTERVAL"),
        group_refresh_interval=refresh,
        longpoll_timeout=longpoll_timeout,
        longpoll_max_timeout=longpoll_max,
        sse_heartbeat=heartbeat,
        sse_retry=_positive_int(raw, "SSE_RETRY", allow_zero=True),
        max_topics=_positive_int(raw, "MAX_TOPICS"),
        poll_limit=_positive_int(raw, "POLL_LIMIT"),
        history_limit=_positive_int(raw, "HISTORY_LIMIT"),
        max_held_requests=_positive_int(raw, "MAX_HELD_REQUESTS"),
        max_request_bytes=_positive_int(raw, "MAX_REQUEST_BYTES"),
        ws_max_message_bytes=_positive_int(raw, "WS_MAX_MESSAGE_BYTES"),
        ws_rate=ws_rate,
        ws_burst=_positive_int(raw, "WS_BURST"),
        allowed_origins=None if origins is None else tuple(origins),
        publish_tokens=tuple(tokens),
        presence_ttl=_positive_int(raw, "PRESENCE_TTL"),
        cursor_key=cursor_key,
    )


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The validated settings; raises ``ImproperlyConfigured`` with a clear message."""
    return _build(getattr(django_settings, "RTDELIVERY", None))


@functools.lru_cache(maxsize=4096)
def _topic_options(conf: Settings, topic: str) -> TopicOptions:
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
