"""The checks of a ``settings.RTDELIVERY`` value: :func:`validate` and its tables.

The one copy of the rules: validate() lists every problem with its system check ID;
rtdelivery.conf.build() raises ImproperlyConfigured from the same list and checks.py
turns it into Errors, so `manage.py check` and the runtime always say the same thing.

No settings are read here: :func:`validate` is given the value. The defaults and the
topic option names live in :mod:`rtdelivery.conf` (imported when called: conf imports
this module); the ``REDIS``/``REDIS_URL`` checks live in :mod:`rtdelivery.redis_config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils.module_loading import import_string

from .conf_problems import E_SHAPE, E_TOPICS, E_VALUE, Problem, did_you_mean, is_int, is_number
from .redis_config import redis_problems

#: Built-in policy rule names (rtdelivery.policy gives them their meaning).
BUILTIN_RULES = ("anyone", "authenticated", "staff", "owner", "nobody")

#: The values of ``HISTORY_BACKEND``.
HISTORY_BACKENDS = ("memory", "redis")

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


def _value_problems(raw: Mapping[str, Any]) -> list[Problem]:
    """Problems with the values of a merged (defaults + user) RTDELIVERY dict."""
    problems: list[str] = []
    for key, low in INT_MINIMUMS.items():
        value = raw[key]
        if value is None and key in NULLABLE_INTS:
            continue
        if not is_int(value) or value < low:
            nullable = " or None" if key in NULLABLE_INTS else ""
            problems.append(
                f"RTDELIVERY[{key!r}] must be an integer >= {low}{nullable}, got {value!r}."
            )
    for key, unit in NUMBER_UNITS.items():
        value = raw[key]
        if value is None and key in NULLABLE_NUMBERS:
            continue
        positive = key in POSITIVE_NUMBERS
        if not is_number(value) or not (value > 0 if positive else value >= 0):
            expected = f"a number {'>' if positive else '>='} 0 ({unit})"
            if key in NULLABLE_NUMBERS:
                expected += " or None"
            problems.append(f"RTDELIVERY[{key!r}] must be {expected}, got {value!r}.")
    timeout, most = raw["LONGPOLL_TIMEOUT"], raw["LONGPOLL_MAX_TIMEOUT"]
    if is_number(timeout) and is_number(most) and 0 <= most < timeout:
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
            f"unknown rule {rule!r}{did_you_mean(rule, BUILTIN_RULES)}; expected one of "
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
    from .conf import TOPIC_OPTION_KEYS

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
        hints = "".join(did_you_mean(name, TOPIC_OPTION_KEYS) for name in unknown)
        problems.append(
            f"{where} has unknown option(s) {unknown}{hints}; "
            f"expected some of {sorted(TOPIC_OPTION_KEYS)}."
        )
    for key in ("history_size", "history_max_age"):
        if key in options:
            value = options[key]
            if not is_int(value) or value < 0:
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

    The only copy of the rules: :func:`rtdelivery.conf.get_settings` raises ``ImproperlyConfigured``
    from these problems and the system checks report them as Errors.
    """
    from .conf import DEFAULTS

    if raw_user is None:
        raw_user = {}
    if not isinstance(raw_user, Mapping):
        return [
            Problem(E_SHAPE, f"settings.RTDELIVERY must be a dict, got {type(raw_user).__name__}.")
        ]
    problems: list[Problem] = []
    unknown = sorted(set(raw_user) - set(DEFAULTS), key=str)
    if unknown:
        names = ", ".join(f"{name!r}{did_you_mean(name, DEFAULTS)}" for name in unknown)
        problems.append(
            Problem(
                E_SHAPE,
                f"Unknown RTDELIVERY setting(s): {names}.",
                f"Expected some of: {', '.join(sorted(DEFAULTS))}.",
            )
        )
    raw = {**DEFAULTS, **{k: v for k, v in raw_user.items() if k in DEFAULTS}}
    problems.extend(_value_problems(raw))
    problems.extend(redis_problems(raw))
    if isinstance(raw["TOPICS"], Mapping):
        for pattern, options in raw["TOPICS"].items():
            problems.extend(
                Problem(E_TOPICS, message) for message in validate_topic_options(pattern, options)
            )
    return problems
