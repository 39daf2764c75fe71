"""The one place that reads ``settings.RTDELIVERY``.

Defaults are merged in, values are checked (:func:`validate`, the only copy of the
rules, which the system checks report too) and exposed through typed accessors.
The result is cached and the cache is cleared on ``setting_changed``, so tests
can use ``override_settings``/the pytest-django ``settings`` fixture freely.
Nothing here is read at import time.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .ops import OPS_TOPIC

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


@dataclass(frozen=True)
class RedisTarget:
    """Where the history and presence stores connect: one of three kinds.

    ``"url"``: one server (``url``); ``"sentinel"``: the master of ``service`` as the
    ``sentinels`` report it; ``"cluster"``: a Redis Cluster discovered from ``nodes``.
    """

    kind: str
    url: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    sentinel_options: Mapping[str, Any] = field(default_factory=dict)
    nodes: tuple[str, ...] = ()

    def describe(self) -> str:
        """A human description for messages and logs (passwords redacted)."""
        if self.kind == "sentinel":
            where = ", ".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"Sentinel service {self.service!r} via {where}"
        if self.kind == "cluster":
            return "Redis Cluster via " + ", ".join(redact_url(url) for url in self.nodes)
        return redact_url(self.url or "")


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


# -- validation -------------------------------------------------------------------------------------
#
# The one copy of the rules: validate() lists every problem with its system check ID;
# build() raises ImproperlyConfigured from the same list and checks.py turns it into
# Errors, so `manage.py check` and the runtime always say the same thing.

#: Built-in policy rule names (rtdelivery.policy gives them their meaning).
BUILTIN_RULES = ("anyone", "authenticated", "staff", "owner", "nobody")

REDIS_SCHEMES = ("redis", "rediss", "unix")

#: Integer settings and their lowest accepted value.
INT_MINIMUMS: dict[str, int] = {
    "HISTORY_SIZE": 0,
    "HISTORY_MAX_AGE": 1,
    "TOPIC_IDLE_TTL": 1,
    "IDEMPOTENCY_TTL": 1,
    "MAX_EVENT_BYTES": 1,
    "QUEUE_SIZE": 1,
    "SSE_RETRY": 0,
    "MAX_TOPICS": 1,
    "POLL_LIMIT": 1,
    "HISTORY_LIMIT": 1,
    "MAX_HELD_REQUESTS": 1,
    "MAX_REQUEST_BYTES": 1,
    "WS_MAX_MESSAGE_BYTES": 1,
    "WS_BURST": 1,
    "PRESENCE_TTL": 1,
    "PRESENCE_POLL_TTL": 1,
    "MAX_CONNECTIONS_PER_USER": 1,
    "MAX_CONNECTIONS_PER_IP": 1,
    "PUBLISH_BURST": 1,
}
#: Integer settings that may also be None (no limit).
NULLABLE_INTS = frozenset({"MAX_CONNECTIONS_PER_USER", "MAX_CONNECTIONS_PER_IP"})
#: Number (int or float) settings >= 0 and their unit.
NUMBER_UNITS: dict[str, str] = {
    "TAIL_CHECK_INTERVAL": "seconds",
    "GROUP_REFRESH_INTERVAL": "seconds",
    "LONGPOLL_TIMEOUT": "seconds",
    "LONGPOLL_MAX_TIMEOUT": "seconds",
    "SSE_HEARTBEAT": "seconds",
    "WS_RATE": "frames per second",
    "TOKEN_TTL": "seconds",
    "SHUTDOWN_TIMEOUT": "seconds",
    "SESSION_CHECK_INTERVAL": "seconds",
    "PUBLISH_RATE": "publishes per second",
    "OPS_INTERVAL": "seconds",
}
#: Numbers that may also be None, and numbers that must be above zero.
NULLABLE_NUMBERS = frozenset(
    {
        "GROUP_REFRESH_INTERVAL",
        "SHUTDOWN_TIMEOUT",
        "PUBLISH_RATE",
        "SESSION_CHECK_INTERVAL",
        "OPS_INTERVAL",
    }
)
POSITIVE_NUMBERS = frozenset(
    {"SSE_HEARTBEAT", "TOKEN_TTL", "PUBLISH_RATE", "SESSION_CHECK_INTERVAL", "OPS_INTERVAL"}
)

E_SHAPE = "rtdelivery.E001"  # RTDELIVERY not a dict, unknown keys
E_VALUE = "rtdelivery.E002"  # a bad value
E_TOPICS = "rtdelivery.E003"  # a bad TOPICS entry or policy rule
E_REDIS = "rtdelivery.E004"  # Redis history without a usable REDIS_URL / REDIS


@dataclass(frozen=True)
class Problem:
    """One thing wrong with ``settings.RTDELIVERY`` and the system check ID reporting it."""

    check_id: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message} {self.hint}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    # "value >= 0" is False for NaN, so NaN is rejected by the range tests below.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _did_you_mean(word: Any, choices: Any) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1)
    if not close and word.upper() in choices:
        close = [word.upper()]
    return f" (did you mean {close[0]!r}?)" if close else ""


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _value_problems(raw: Mapping[str, Any]) -> list[Problem]:
    """Problems with the values of a merged (defaults + user) RTDELIVERY dict."""
    problems: list[str] = []
    for key, low in INT_MINIMUMS.items():
        value = raw[key]
        if value is None and key in NULLABLE_INTS:
            continue
        if not _is_int(value) or value < low:
            nullable = " or None" if key in NULLABLE_INTS else ""
            problems.append(
                f"RTDELIVERY[{key!r}] must be an integer >= {low}{nullable}, got {value!r}."
            )
    for key, unit in NUMBER_UNITS.items():
        value = raw[key]
        if value is None and key in NULLABLE_NUMBERS:
            continue
        positive = key in POSITIVE_NUMBERS
        if not _is_number(value) or not (value > 0 if positive else value >= 0):
            expected = f"a number {'>' if positive else '>='} 0 ({unit})"
            if key in NULLABLE_NUMBERS:
                expected += " or None"
            problems.append(f"RTDELIVERY[{key!r}] must be {expected}, got {value!r}.")
    timeout, most = raw["LONGPOLL_TIMEOUT"], raw["LONGPOLL_MAX_TIMEOUT"]
    if _is_number(timeout) and _is_number(most) and 0 <= most < timeout:
        problems.append(
            f"RTDELIVERY['LONGPOLL_TIMEOUT'] ({float(timeout)}) must not exceed "
            f"RTDELIVERY['LONGPOLL_MAX_TIMEOUT'] ({float(most)})."
        )

    backend = raw["HISTORY_BACKEND"]
    if backend not in HISTORY_BACKENDS:
        problems.append(
            f"RTDELIVERY['HISTORY_BACKEND'] must be one of {list(HISTORY_BACKENDS)}, "
            f"got {backend!r}."
        )
    redis_url = raw["REDIS_URL"]
    if redis_url is not None and not isinstance(redis_url, str):
        problems.append(
            f"RTDELIVERY['REDIS_URL'] must be a redis:// URL string or None, got {redis_url!r}."
        )
    if not isinstance(raw["REDIS_OPTIONS"], Mapping):
        options_type = type(raw["REDIS_OPTIONS"]).__name__
        problems.append(f"RTDELIVERY['REDIS_OPTIONS'] must be a dict, got {options_type}.")
    for key in ("KEY_PREFIX", "CHANNEL_LAYER"):
        if not isinstance(raw[key], str):
            problems.append(f"RTDELIVERY[{key!r}] must be a string, got {raw[key]!r}.")
    if not isinstance(raw["TOPICS"], Mapping):
        problems.append(
            "RTDELIVERY['TOPICS'] must be a dict of pattern -> options, "
            f"got {type(raw['TOPICS']).__name__}."
        )
    if not isinstance(raw["CORS_ALLOW_CREDENTIALS"], bool):
        problems.append(
            "RTDELIVERY['CORS_ALLOW_CREDENTIALS'] must be True or False, "
            f"got {raw['CORS_ALLOW_CREDENTIALS']!r}."
        )
    origins = raw["ALLOWED_ORIGINS"]
    if origins is not None and (
        not isinstance(origins, list | tuple | set | frozenset)
        or not all(isinstance(o, str) for o in origins)
    ):
        problems.append(
            "RTDELIVERY['ALLOWED_ORIGINS'] must be None or a list of origins like "
            f"'https://example.com' (or '*'), got {origins!r}."
        )
    elif origins is not None and "*" in origins and raw["CORS_ALLOW_CREDENTIALS"] is True:
        problems.append(
            "RTDELIVERY['ALLOWED_ORIGINS'] contains '*' while CORS_ALLOW_CREDENTIALS is True: "
            "any site could read what your users may read. Expected a list of the trusted "
            "origins with credentials, or '*' without them."
        )
    logout = raw["DISCONNECT_ON_LOGOUT"]
    if not (isinstance(logout, bool) or logout == "user"):
        problems.append(
            "RTDELIVERY['DISCONNECT_ON_LOGOUT'] must be True (the session's connections), "
            f"'user' (all of the user's connections) or False, got {logout!r}."
        )
    for tokens_key in ("PUBLISH_TOKENS", "METRICS_TOKENS"):
        tokens_problem = _tokens_problem(raw[tokens_key], tokens_key)
        if tokens_problem:
            problems.append(tokens_problem)
    from .authentication import validate_authenticators

    authenticators_problem = validate_authenticators(raw["AUTHENTICATORS"])
    if authenticators_problem:
        problems.append(authenticators_problem)
    return [Problem(E_VALUE, message) for message in problems]


def _tokens_problem(tokens: Any, key: str = "PUBLISH_TOKENS") -> str | None:
    """What is wrong with PUBLISH_TOKENS (or METRICS_TOKENS), never echoing a secret."""
    expected = f"RTDELIVERY[{key!r}] must be a list of secret strings of at least 16 characters"
    if not isinstance(tokens, list | tuple | set | frozenset):
        return f"{expected}, got {type(tokens).__name__}."
    for index, token in enumerate(tokens):
        if not isinstance(token, str):
            return f"{expected}, got {type(token).__name__} at index {index}."
        if len(token) < 16:
            return f"{expected}, got a string of {len(token)} characters at index {index}."
    return None


#: The keys of ``RTDELIVERY["REDIS"]``: exactly one of the first three says the kind.
REDIS_KINDS = ("url", "sentinels", "cluster")
REDIS_KEYS = (*REDIS_KINDS, "service", "sentinel_options")
REDIS_EXAMPLES = (
    "{'url': 'redis://10.0.0.1:6379/0'}, "
    "{'sentinels': [('10.0.0.1', 26379), ('10.0.0.2', 26379)], 'service': 'mymaster'} or "
    "{'cluster': ['redis://10.0.0.1:7000', 'redis://10.0.0.2:7000']}"
)


def _url_scheme_problem(where: str, url: str, schemes: tuple[str, ...]) -> Problem | None:
    if urlsplit(url).scheme in schemes:
        return None
    examples = (
        "E.g. 'redis://127.0.0.1:6379/0', 'rediss://host:6380/0' (TLS) or 'unix:///run/redis.sock'."
        if "unix" in schemes
        else "E.g. 'redis://10.0.0.1:7000' or 'rediss://10.0.0.1:7000' (TLS)."
    )
    return Problem(
        E_REDIS,
        f"{where} must be a URL with the scheme "
        f"{', '.join(s + '://' for s in schemes)}, got {redact_url(url)!r}.",
        examples,
    )


def _sentinel_problems(config: Mapping[str, Any]) -> list[str]:
    where = "RTDELIVERY['REDIS']"
    problems = []
    sentinels = config["sentinels"]
    expected = f"{where}['sentinels'] must be a non-empty list of (host, port) pairs"
    if not isinstance(sentinels, list | tuple) or not sentinels:
        problems.append(f"{expected}, got {sentinels!r}.")
    else:
        for index, pair in enumerate(sentinels):
            ok = (
                isinstance(pair, list | tuple)
                and len(pair) == 2
                and isinstance(pair[0], str)
                and bool(pair[0])
                and _is_int(pair[1])
                and 0 < pair[1] < 65536
            )
            if not ok:
                problems.append(f"{expected}, got {pair!r} at index {index}.")
                break
    service = config.get("service")
    if not isinstance(service, str) or not service:
        problems.append(
            f"{where}['service'] must be the name Sentinel monitors the master under "
            f"(e.g. 'mymaster'), got {service!r}."
        )
    options = config.get("sentinel_options", {})
    if not isinstance(options, Mapping):
        problems.append(
            f"{where}['sentinel_options'] must be a dict of connection options for the "
            f"Sentinels, got {type(options).__name__}."
        )
    return problems


def _cluster_problems(config: Mapping[str, Any], options: Any) -> list[Problem]:
    where = "RTDELIVERY['REDIS']['cluster']"
    nodes = config["cluster"]
    expected = f"{where} must be a non-empty list of node URLs like 'redis://10.0.0.1:7000'"
    if not isinstance(nodes, list | tuple) or not nodes:
        return [Problem(E_REDIS, f"{expected}, got {nodes!r}.")]
    for index, url in enumerate(nodes):
        if not isinstance(url, str):
            return [Problem(E_REDIS, f"{expected}, got {url!r} at index {index}.")]
        problem = _url_scheme_problem(f"{where}[{index}]", url, ("redis", "rediss"))
        if problem:
            return [problem]
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            port = None
            parts = None
        if parts is None or not parts.hostname or port is None:
            return [Problem(E_REDIS, f"{expected}, got {redact_url(url)!r} (no host and port).")]
        if parts.path not in ("", "/", "/0"):
            return [
                Problem(
                    E_REDIS,
                    f"{where}[{index}] must not select a database (Redis Cluster has only "
                    f"db 0), got {redact_url(url)!r}.",
                )
            ]
    if isinstance(options, Mapping) and options.get("db") not in (None, 0):
        return [
            Problem(
                E_REDIS,
                "RTDELIVERY['REDIS_OPTIONS']['db'] must be 0 or absent with Redis Cluster "
                f"(it has only db 0), got {options['db']!r}.",
            )
        ]
    return []


def _redis_config_problems(raw: Mapping[str, Any]) -> list[Problem]:
    """What is wrong with ``RTDELIVERY["REDIS"]`` (whatever the history backend)."""
    config = raw["REDIS"]
    where = "RTDELIVERY['REDIS']"
    if config is None:
        return []
    if not isinstance(config, Mapping):
        return [
            Problem(
                E_REDIS,
                f"{where} must be a dict or None, got {type(config).__name__}.",
                f"E.g. {REDIS_EXAMPLES}.",
            )
        ]
    unknown = sorted(set(config) - set(REDIS_KEYS), key=str)
    if unknown:
        names = ", ".join(f"{name!r}{_did_you_mean(name, REDIS_KEYS)}" for name in unknown)
        return [
            Problem(
                E_REDIS,
                f"{where} has unknown key(s) {names}; expected some of {list(REDIS_KEYS)}.",
                f"E.g. {REDIS_EXAMPLES}.",
            )
        ]
    kinds = [key for key in REDIS_KINDS if key in config]
    if len(kinds) != 1:
        got = "none" if not kinds else " and ".join(repr(k) for k in kinds)
        return [
            Problem(
                E_REDIS,
                f"{where} must have exactly one of 'url', 'sentinels' or 'cluster', got {got}.",
                f"E.g. {REDIS_EXAMPLES}.",
            )
        ]
    kind = kinds[0]
    stray = [k for k in ("service", "sentinel_options") if k in config and kind != "sentinels"]
    if stray:
        return [
            Problem(
                E_REDIS,
                f"{where}[{stray[0]!r}] only applies with 'sentinels', got it with {kind!r}.",
            )
        ]
    if kind == "url":
        url = config["url"]
        if not isinstance(url, str) or not url:
            return [Problem(E_REDIS, f"{where}['url'] must be a redis:// URL string, got {url!r}.")]
        problem = _url_scheme_problem(f"{where}['url']", url, REDIS_SCHEMES)
        return [problem] if problem else []
    if kind == "sentinels":
        return [Problem(E_REDIS, message) for message in _sentinel_problems(config)]
    return _cluster_problems(config, raw["REDIS_OPTIONS"])


def _redis_problems(raw: Mapping[str, Any]) -> list[Problem]:
    """Redis history needs REDIS_URL (with a scheme redis-py understands) or REDIS."""
    problems = _redis_config_problems(raw)
    url, config = raw["REDIS_URL"], raw["REDIS"]
    if url and config is not None:
        problems.append(
            Problem(
                E_REDIS,
                "RTDELIVERY['REDIS_URL'] and RTDELIVERY['REDIS'] are both set; expected one.",
                "Keep REDIS_URL for one server, or move it into REDIS as {'url': ...}.",
            )
        )
    if raw["HISTORY_BACKEND"] != "redis" or not (url is None or isinstance(url, str)):
        return problems
    if config is not None:
        return problems
    if not url:
        return [
            *problems,
            Problem(
                E_REDIS,
                "RTDELIVERY['HISTORY_BACKEND'] is 'redis' but RTDELIVERY['REDIS_URL'] is not set.",
                "Set REDIS_URL, e.g. 'redis://127.0.0.1:6379/0'.",
            ),
        ]
    problem = _url_scheme_problem("RTDELIVERY['REDIS_URL']", url, REDIS_SCHEMES)
    return [*problems, problem] if problem else problems


def redis_target(raw: Mapping[str, Any]) -> RedisTarget | None:
    """The :class:`RedisTarget` of valid merged settings (None: neither REDIS nor REDIS_URL)."""
    config = raw["REDIS"]
    if config is None:
        return RedisTarget("url", url=raw["REDIS_URL"]) if raw["REDIS_URL"] else None
    if "url" in config:
        return RedisTarget("url", url=config["url"])
    if "sentinels" in config:
        return RedisTarget(
            "sentinel",
            sentinels=tuple((host, port) for host, port in config["sentinels"]),
            service=config["service"],
            sentinel_options=dict(config.get("sentinel_options", {})),
        )
    return RedisTarget("cluster", nodes=tuple(config["cluster"]))


def validate_rule(rule: Any) -> str | None:
    """A problem with one policy rule, or None when it is valid.

    Dotted paths are imported, so a hook that cannot be imported is reported when the
    settings are loaded (and by ``check``), not at the first request on its topic.
    """
    if rule is None:
        return None
    if isinstance(rule, list | tuple):
        for item in rule:
            problem = validate_rule(item)
            if problem:
                return problem
        return None
    if not isinstance(rule, str):
        return f"a rule must be a string or a list of strings, got {rule!r}"
    if rule in BUILTIN_RULES:
        return None
    if "." not in rule:
        return (
            f"unknown rule {rule!r}{_did_you_mean(rule, BUILTIN_RULES)}; expected one of "
            f"{', '.join(BUILTIN_RULES)} or a dotted path to a callable"
        )
    try:
        hook = import_string(rule)
    except ImportError as exc:
        return f"cannot import rule {rule!r}: {exc}"
    if not callable(hook):
        return f"rule {rule!r} must be a callable (user, topic, action) -> bool, got {hook!r}"
    return None


def validate_topic_options(pattern: Any, options: Any) -> list[str]:
    """Problems with one ``TOPICS`` entry, its policy rules included (empty when fine)."""
    where = f"RTDELIVERY['TOPICS'][{pattern!r}]"
    problems = []
    if not isinstance(pattern, str) or not pattern:
        problems.append(
            f"RTDELIVERY['TOPICS'] keys must be non-empty pattern strings, got {pattern!r}."
        )
    if not isinstance(options, Mapping):
        return [*problems, f"{where} must be a dict of options, got {type(options).__name__}."]
    unknown = sorted(set(options) - TOPIC_OPTION_KEYS, key=str)
    if unknown:
        hints = "".join(_did_you_mean(name, TOPIC_OPTION_KEYS) for name in unknown)
        problems.append(
            f"{where} has unknown option(s) {unknown}{hints}; "
            f"expected some of {sorted(TOPIC_OPTION_KEYS)}."
        )
    for key in ("history_size", "history_max_age"):
        if key in options:
            value = options[key]
            if not _is_int(value) or value < 0:
                problems.append(f"{where}[{key!r}] must be an integer >= 0, got {value!r}.")
    for key in ("presence", "client_publish"):
        if key in options and not isinstance(options[key], bool):
            problems.append(f"{where}[{key!r}] must be True or False, got {options[key]!r}.")
    for key in ("subscribe", "publish"):
        problem = validate_rule(options.get(key))
        if problem:
            problems.append(f"{where}[{key!r}]: {problem}.")
    return problems


def validate(raw_user: Any) -> list[Problem]:
    """Every problem with ``settings.RTDELIVERY`` (``None``: not set), in a stable order.

    The only copy of the rules: :func:`get_settings` raises ``ImproperlyConfigured``
    from these problems and the system checks report them as Errors.
    """
    if raw_user is None:
        raw_user = {}
    if not isinstance(raw_user, Mapping):
        return [
            Problem(E_SHAPE, f"settings.RTDELIVERY must be a dict, got {type(raw_user).__name__}.")
        ]
    problems: list[Problem] = []
    unknown = sorted(set(raw_user) - set(DEFAULTS), key=str)
    if unknown:
        names = ", ".join(f"{name!r}{_did_you_mean(name, DEFAULTS)}" for name in unknown)
        problems.append(
            Problem(
                E_SHAPE,
                f"Unknown RTDELIVERY setting(s): {names}.",
                f"Expected some of: {', '.join(sorted(DEFAULTS))}.",
            )
        )
    raw = {**DEFAULTS, **{k: v for k, v in raw_user.items() if k in DEFAULTS}}
    problems.extend(_value_problems(raw))
    problems.extend(_redis_problems(raw))
    if isinstance(raw["TOPICS"], Mapping):
        for pattern, options in raw["TOPICS"].items():
            problems.extend(
                Problem(E_TOPICS, message) for message in validate_topic_options(pattern, options)
            )
    return problems


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
