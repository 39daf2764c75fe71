"""System checks for rtdelivery's configuration. IDs are stable; see docs/checks.md.

The rules for ``RTDELIVERY`` itself live in :func:`rtdelivery.conf_validation.validate`
(E001-E004, re-exported as ``rtdelivery.conf.validate``): this module reports those same
problems and adds what depends on the rest of the project (channel layers, the ASGI
application, the URLconf, installed apps).

No check has a side effect except W004, which pings Redis and is tagged ``database``.
The fast-path check imports ``settings.ASGI_APPLICATION``, as an ASGI server would.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning  # noqa: A004 - Django's name
from django.core.checks import register as register_check
from django.utils.module_loading import import_string

from . import conf
from .policy import rule_needs_user

IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"
#: Attributes under which ASGI wrappers commonly keep the application they wrap.
WRAPPED_APP_ATTRIBUTES = ("app", "inner", "application", "asgi_app", "__wrapped__")
#: How many wrappers deep the fast-path check looks.
MAX_WRAPPER_DEPTH = 10
#: The URL names of the views that hold a request open (long poll, SSE).
HELD_VIEWS = ("rtdelivery:longpoll", "rtdelivery:sse")
#: The apps Channels' AuthMiddlewareStack needs to know who a client is.
AUTH_APPS = ("django.contrib.sessions", "django.contrib.auth")

TOPICS_EXAMPLE = (
    'RTDELIVERY = {"TOPICS": {"chat.*": {"subscribe": "authenticated", '
    '"publish": "authenticated"}, "feed": {"subscribe": "anyone"}}}'
)


def register() -> None:
    register_check(check_settings, "rtdelivery")
    register_check(check_redis_reachable, Tags.database)


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every rtdelivery check except the Redis ping."""
    raw = getattr(settings, "RTDELIVERY", None)
    problems = conf.validate(raw)
    messages: list[CheckMessage] = [
        Error(problem.message, hint=problem.hint, id=problem.check_id) for problem in problems
    ]
    alias = raw.get("CHANNEL_LAYER", "default") if isinstance(raw, Mapping) else "default"
    layer = _layer_backend(alias)
    messages.extend(_check_layer(alias, layer))
    if not problems:
        # Valid: build a Settings object without touching get_settings()'s cache.
        built = conf.build(raw)
        messages.extend(_check_history(built, layer))
        messages.extend(_check_topics(raw, built))
    messages.extend(_check_asgi())
    if importlib.util.find_spec("django_eventstream") is not None:  # the extra is installed
        from .contrib.eventstream.checks import check_eventstream

        messages.extend(check_eventstream())
    return messages


# -- channel layer and history ---------------------------------------------------------------------


def _layer_backend(alias: Any) -> str | None:
    """The BACKEND of the layer rtdelivery uses, "" when it has none, None when absent."""
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    if not isinstance(alias, str) or not isinstance(layers, Mapping) or alias not in layers:
        return None
    config = layers[alias]
    backend = config.get("BACKEND", "") if isinstance(config, Mapping) else ""
    return backend if isinstance(backend, str) else ""


def _is_in_memory(backend: str) -> bool:
    """Whether ``backend`` is Channels' in-memory layer (or a subclass): one process only."""
    if backend == IN_MEMORY_LAYER:
        return True
    try:
        from channels.layers import InMemoryChannelLayer

        cls = import_string(backend)
    except ImportError:
        # Channels reports an unimportable layer itself; judge by the name meanwhile.
        return backend.endswith("InMemoryChannelLayer")
    return isinstance(cls, type) and issubclass(cls, InMemoryChannelLayer)


def _check_layer(alias: Any, backend: str | None) -> list[CheckMessage]:
    if backend is None:
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
    messages: list[CheckMessage] = []
    if _is_in_memory(backend) and not settings.DEBUG:
        messages.append(
            Warning(
                "The in-memory channel layer is used while DEBUG is False: events do not "
                "reach other processes.",
                hint="Use channels_redis.core.RedisChannelLayer in production.",
                id="rtdelivery.W001",
            )
        )
    if backend == "channels_redis.core.RedisChannelLayer":
        config: Mapping[str, Any] = settings.CHANNEL_LAYERS[alias]
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


def _check_history(built: conf.Settings, backend: str | None) -> list[CheckMessage]:
    if built.history_backend != "memory":
        return []
    if backend is not None and not _is_in_memory(backend):
        # Presence follows HISTORY_BACKEND (rtdelivery.presence), so it is per process too.
        return [
            Error(
                "RTDELIVERY['HISTORY_BACKEND'] is 'memory' but the channel layer "
                f"{built.channel_layer!r} ({backend}) connects processes: each process "
                "would number its own seq and keep its own history and presence, so "
                "events published in one process would not reach subscribers in another.",
                hint="Set RTDELIVERY['HISTORY_BACKEND'] = 'redis' and RTDELIVERY['REDIS_URL'] "
                "(the layer's Redis will do), or use channels.layers.InMemoryChannelLayer "
                "for a single process.",
                id="rtdelivery.E007",
            )
        ]
    if not settings.DEBUG:
        return [
            Warning(
                "rtdelivery keeps history in memory while DEBUG is False: each process has "
                "its own history and it is lost on restart.",
                hint="Use RTDELIVERY['HISTORY_BACKEND'] = 'redis' in production.",
                id="rtdelivery.W002",
            )
        ]
    return []


# -- topics and who the client is ----------------------------------------------------------------------


def _check_topics(raw: Any, built: conf.Settings) -> list[CheckMessage]:
    if not built.topics:
        where = "settings.RTDELIVERY is not set" if raw is None else "RTDELIVERY['TOPICS'] is empty"
        return [
            Warning(
                f"{where}: no topic pattern is configured, so every topic is denied "
                "(every subscribe and publish from a client gets 403 forbidden).",
                hint=f"Allow the topics your clients use, e.g. {TOPICS_EXAMPLE}",
                id="rtdelivery.W005",
            )
        ]
    missing = [name for name in AUTH_APPS if not apps.is_installed(name)]
    if not missing:
        return []
    needy = [
        f"{pattern!r} ({action}: {options[action]!r})"
        for pattern, options in built.topics.items()
        for action in ("subscribe", "publish")
        if rule_needs_user(options.get(action))
    ]
    if not needy:
        return []
    return [
        Warning(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not in "
            "INSTALLED_APPS, so every client is anonymous; yet these TOPICS rules need to "
            f"know the user: {', '.join(needy)}. 'authenticated', 'staff' and 'owner' can "
            "then never allow anyone, and hooks only ever see an anonymous client.",
            hint="Add 'django.contrib.sessions' and 'django.contrib.auth' to INSTALLED_APPS "
            "(with SessionMiddleware and AuthenticationMiddleware), or use rules that do "
            "not depend on the user ('anyone', 'nobody').",
            id="rtdelivery.W009",
        )
    ]


# -- the ASGI application -------------------------------------------------------------------------


def _held_views_mounted() -> bool:
    """Whether the project's URLconf mounts rtdelivery's long-poll or SSE view."""
    from django.urls import NoReverseMatch, reverse

    for name in HELD_VIEWS:
        try:
            reverse(name)
        except NoReverseMatch:
            continue
        except Exception:  # whatever a broken URLconf raises
            return False  # Django's own URL checks (and W011 with the extra) report it
        return True
    return False


def _wrapped(app: Any) -> Iterator[Any]:
    """The applications ``app`` wraps, by the attribute names wrappers commonly use."""
    for name in WRAPPED_APP_ATTRIBUTES:
        try:
            inner = getattr(app, name, None)
        except Exception:  # a property that fails: not a wrapper we can see through
            continue
        if inner is not None:
            yield inner
    try:
        mapping = getattr(app, "application_mapping", None)  # channels' ProtocolTypeRouter
    except Exception:
        return
    if isinstance(mapping, Mapping) and mapping.get("http") is not None:
        yield mapping["http"]


def serves_fast_path(app: Any) -> bool:
    """Whether ``app``, or an application it wraps, is ``rtdelivery_application``'s."""
    seen: set[int] = set()
    level = [app]
    for _ in range(MAX_WRAPPER_DEPTH):
        following: list[Any] = []
        for candidate in level:
            if id(candidate) in seen:
                continue
            seen.add(id(candidate))
            if getattr(candidate, "rtdelivery_fast_path", False) is True:
                return True
            following.extend(_wrapped(candidate))
        if not following:
            return False
        level = following
    return False


def _check_asgi() -> list[CheckMessage]:
    path = getattr(settings, "ASGI_APPLICATION", None)
    if not path:
        return [
            Warning(
                "settings.ASGI_APPLICATION is not set: rtdelivery's WebSocket, and its fast "
                "path that serves long polls and SSE streams without a worker thread each, "
                "need an ASGI server. Under WSGI only polling, history and publishing work "
                "well.",
                hint="Fine for a WSGI tier that only publishes (silence rtdelivery.W006). "
                "Otherwise set ASGI_APPLICATION = 'yourproject.asgi.application' and wrap it "
                "with rtdelivery.asgi.rtdelivery_application (see docs/deployment.md).",
                id="rtdelivery.W006",
            )
        ]
    if not _held_views_mounted():
        return []
    try:
        app = import_string(path)
    except Exception as exc:  # whatever the project's asgi.py raises, `check` goes on
        return [
            Warning(
                f"settings.ASGI_APPLICATION {path!r} cannot be imported "
                f"({type(exc).__name__}: {exc}), so whether it serves rtdelivery's long polls "
                "and SSE streams on the fast path is unknown.",
                hint="Fix the path or the module; an ASGI server would fail the same way.",
                id="rtdelivery.W008",
            )
        ]
    if serves_fast_path(app):
        return []
    return [
        Warning(
            f"settings.ASGI_APPLICATION {path!r} does not serve rtdelivery's long-poll and "
            "SSE views on the fast path: each held request then holds a worker thread for "
            "as long as it is open, and under Daphne an SSE client that stops reading makes "
            "the server buffer everything sent to it.",
            hint="Wrap the Django application in asgi.py: application = "
            "rtdelivery_application(get_asgi_application()) (from rtdelivery.asgi); "
            "see docs/deployment.md.",
            id="rtdelivery.W007",
        )
    ]


# -- Redis reachability (tagged database) -------------------------------------------------------------


def check_redis_reachable(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Connects to Redis: tagged ``database`` so it only runs with ``check --database``
    and before ``migrate``, never on every ``runserver`` reload."""
    databases = kwargs.get("databases")
    if not databases:
        return []
    raw = getattr(settings, "RTDELIVERY", None)
    if conf.validate(raw):
        return []  # reported by check_settings
    built = conf.build(raw)
    if built.history_backend != "redis" or built.redis is None:
        return []
    import redis

    from .connections import ping

    target = built.redis
    try:
        ping(built, timeout=2.0)
    except (redis.RedisError, redis.exceptions.RedisClusterException, ValueError, OSError) as exc:
        setting = "REDIS_URL" if target.kind == "url" and built.raw["REDIS"] is None else "REDIS"
        return [
            Warning(
                f"Redis for rtdelivery's history at {target.describe()!r} did not answer: {exc}",
                hint=f"Start Redis or fix RTDELIVERY[{setting!r}].",
                id="rtdelivery.W004",
            )
        ]
    return []
