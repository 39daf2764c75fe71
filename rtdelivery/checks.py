"""System checks for rtdelivery's settings. IDs are stable; see docs/checks.md."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning  # noqa: A004 - Django's name
from django.core.checks import register as register_check
from django.core.exceptions import ImproperlyConfigured

from .conf import DEFAULTS, get_settings, validate_topic_options
from .policy import validate_rule

REDIS_SCHEMES = ("redis", "rediss", "unix")


def register() -> None:
    register_check(check_settings, "rtdelivery")
    register_check(check_redis_reachable, Tags.database)


def _raw() -> Any:
    return getattr(settings, "RTDELIVERY", None)


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    raw = _raw()
    if raw is not None and not isinstance(raw, Mapping):
        return [
            Error(
                f"settings.RTDELIVERY must be a dict, got {type(raw).__name__}.",
                id="rtdelivery.E001",
            )
        ]
    raw = raw or {}
    messages: list[CheckMessage] = []
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        messages.append(
            Error(
                f"Unknown RTDELIVERY setting(s): {', '.join(unknown)}.",
                hint=f"Expected some of: {', '.join(sorted(DEFAULTS))}.",
                id="rtdelivery.E001",
            )
        )
    topics = raw.get("TOPICS", {})
    topic_problems = False
    if isinstance(topics, Mapping):
        for pattern, options in topics.items():
            for problem in _topic_problems(pattern, options):
                topic_problems = True
                messages.append(Error(problem, id="rtdelivery.E003"))
    if not unknown and not topic_problems:
        try:
            get_settings.cache_clear()
            conf = get_settings()
        except ImproperlyConfigured as exc:
            messages.append(Error(str(exc), id="rtdelivery.E002"))
        else:
            messages.extend(_check_conf(conf))
    messages.extend(_check_layers(raw.get("CHANNEL_LAYER", "default")))
    if not getattr(settings, "ASGI_APPLICATION", None):
        messages.append(
            Error(
                "settings.ASGI_APPLICATION is not set; rtdelivery's streams and WebSockets "
                "need an ASGI server.",
                hint="Set ASGI_APPLICATION = 'yourproject.asgi.application'.",
                id="rtdelivery.E005",
            )
        )
    return messages


def _topic_problems(pattern: Any, options: Any) -> list[str]:
    """Problems with one TOPICS entry: its shape and its policy rules."""
    problems = validate_topic_options(pattern, options)
    if isinstance(options, Mapping):
        for action in ("subscribe", "publish"):
            problem = validate_rule(options.get(action))
            if problem:
                problems.append(f"TOPICS[{pattern!r}][{action!r}]: {problem}.")
    return problems


def _check_conf(conf: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if conf.history_backend == "redis":
        url = conf.redis_url
        if not url:
            messages.append(
                Error(
                    "RTDELIVERY['HISTORY_BACKEND'] is 'redis' but RTDELIVERY['REDIS_URL'] "
                    "is not set.",
                    hint="Set REDIS_URL, e.g. 'redis://127.0.0.1:6379/0'.",
                    id="rtdelivery.E004",
                )
            )
        elif urlsplit(url).scheme not in REDIS_SCHEMES:
            messages.append(
                Error(
                    f"RTDELIVERY['REDIS_URL'] must use one of the schemes "
                    f"{', '.join(REDIS_SCHEMES)}; got {url!r}.",
                    id="rtdelivery.E004",
                )
            )
    elif not settings.DEBUG:
        messages.append(
            Warning(
                "rtdelivery keeps history in memory while DEBUG is False: each process has "
                "its own history and it is lost on restart.",
                hint="Use RTDELIVERY['HISTORY_BACKEND'] = 'redis' in production.",
                id="rtdelivery.W002",
            )
        )
    return messages


def _check_layers(alias: Any) -> list[CheckMessage]:
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    if not isinstance(alias, str) or alias not in layers:
        return [
            Error(
                f"settings.CHANNEL_LAYERS has no {alias!r} layer; rtdelivery uses it as "
                "its backplane.",
                hint="Configure channels_redis.core.RedisChannelLayer (or the in-memory "
                "layer for one process) under that alias, or change "
                "RTDELIVERY['CHANNEL_LAYER'].",
                id="rtdelivery.E006",
            )
        ]
    config = layers[alias]
    backend = config.get("BACKEND", "") if isinstance(config, Mapping) else ""
    messages: list[CheckMessage] = []
    if backend.endswith("InMemoryChannelLayer") and not settings.DEBUG:
        messages.append(
            Warning(
                "The in-memory channel layer is used while DEBUG is False: events do not "
                "reach other processes.",
                hint="Use channels_redis.core.RedisChannelLayer in production.",
                id="rtdelivery.W001",
            )
        )
    if backend == "channels_redis.core.RedisChannelLayer":
        # No hosts: channels-redis connects to redis://localhost:6379 with the default
        # socket timeout, so that needs the warning too.
        hosts = (config.get("CONFIG") or {}).get("hosts") or ["redis://localhost:6379"]
        for host in hosts:
            if not isinstance(host, Mapping) or host.get("socket_timeout", 0) is not None:
                messages.append(
                    Warning(
                        "A RedisChannelLayer host has a socket timeout: with redis-py 8 idle "
                        "receivers fail with TimeoutError every few seconds.",
                        hint='Give each host as a dict with "socket_timeout": None, e.g. '
                        '{"address": "redis://127.0.0.1:6379/0", "socket_timeout": None}.',
                        id="rtdelivery.W003",
                    )
                )
                break
    return messages


def check_redis_reachable(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Connects to Redis: tagged ``database`` so it only runs with ``check --database``
    and before ``migrate``, never on every ``runserver`` reload."""
    databases = kwargs.get("databases")
    if not databases:
        return []
    try:
        conf = get_settings()
    except ImproperlyConfigured:
        return []  # reported by check_settings
    if conf.history_backend != "redis" or not conf.redis_url:
        return []
    import redis

    try:
        client = redis.Redis.from_url(conf.redis_url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, ValueError, OSError) as exc:
        return [
            Warning(
                f"Redis for rtdelivery's history at {conf.redis_url!r} did not answer: {exc}",
                hint="Start Redis or fix RTDELIVERY['REDIS_URL'].",
                id="rtdelivery.W004",
            )
        ]
    return []
