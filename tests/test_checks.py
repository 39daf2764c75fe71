"""System checks: every rtdelivery check ID (each with its negative case), a clean
configuration, one validation path shared with rtdelivery.conf, no side effects, and
registration with Django's `check`."""

from __future__ import annotations

import io
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer, channel_layers
from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application
from django.core.checks import Error, Warning  # noqa: A004 - Django's name
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from rtdelivery.asgi import rtdelivery_application
from rtdelivery.checks import TOPICS_EXAMPLE, check_redis_reachable, check_settings
from rtdelivery.conf import DEFAULTS, get_settings, validate

REDIS_LAYER: dict[str, Any] = {
    "BACKEND": "channels_redis.core.RedisChannelLayer",
    "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:6379/0", "socket_timeout": None}]},
}
PUBSUB_LAYER: dict[str, Any] = {
    "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]},
}
MEMORY_LAYER: dict[str, Any] = {"BACKEND": "channels.layers.InMemoryChannelLayer"}
TOPICS = {"feed": {"subscribe": "anyone"}}
REDIS_HISTORY = {
    "HISTORY_BACKEND": "redis",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "TOPICS": TOPICS,
}
KNOWN = ", ".join(sorted(DEFAULTS))
T = "RTDELIVERY['TOPICS']"


@pytest.fixture
def production(settings: Any) -> Any:
    """A clean production configuration: Redis history and layer, DEBUG off, rtdelivery
    mounted in the URLconf and served by the demo's wrapped rtdelivery_application."""
    settings.DEBUG = False
    settings.ASGI_APPLICATION = "demo_site.asgi.application"
    settings.ROOT_URLCONF = "tests.urls_checks"
    settings.CHANNEL_LAYERS = {"default": REDIS_LAYER}
    settings.RTDELIVERY = REDIS_HISTORY
    return settings


def ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


def only(messages: list[Any], check_id: str) -> Any:
    found = [m for m in messages if m.id == check_id]
    assert len(found) == 1, f"expected one {check_id}, got {ids(messages)}"
    return found[0]


# -- clean configurations --------------------------------------------------------------------------


def test_clean_production_config_gives_no_messages(production: Any) -> None:
    assert check_settings() == []


def test_clean_development_config_gives_no_messages(settings: Any) -> None:
    settings.DEBUG = True
    settings.ASGI_APPLICATION = "demo_site.asgi.application"
    settings.ROOT_URLCONF = "tests.urls_checks"
    settings.CHANNEL_LAYERS = {"default": MEMORY_LAYER}
    settings.RTDELIVERY = {"TOPICS": {"*": {"subscribe": "anyone", "publish": "anyone"}}}
    assert check_settings() == []


@pytest.mark.parametrize("url", ["redis://h:6379/0", "rediss://h:6380/1", "unix:///tmp/r.sock"])
def test_redis_url_schemes_accepted(production: Any, url: str) -> None:
    production.RTDELIVERY = {**REDIS_HISTORY, "REDIS_URL": url}
    assert check_settings() == []


# -- one validation path ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        ["X"],
        {"NOPE": 1},
        {"QUEUE_SIZE": 0, "SSE_HEARTBEAT": -1},
        {"TOPICS": {"a": {"presence": 1, "subscribe": "everyone"}}},
        {"HISTORY_BACKEND": "redis", "REDIS_URL": "localhost:6379"},
        {"NOPE": 1, "QUEUE_SIZE": 0, "HISTORY_BACKEND": "redis", "TOPICS": {"": {}}},
    ],
)
def test_errors_are_the_problems_conf_validate_finds(production: Any, config: Any) -> None:
    """E001-E004 are rtdelivery.conf.validate()'s problems, word for word; the runtime
    raises ImproperlyConfigured from the same list."""
    production.RTDELIVERY = config
    problems = validate(config)
    assert problems
    errors = [m for m in check_settings() if m.id in {p.check_id for p in problems}]
    assert errors == [Error(p.message, hint=p.hint, id=p.check_id) for p in problems]
    with pytest.raises(ImproperlyConfigured) as info:
        get_settings()
    assert str(info.value) == "\n".join(str(p) for p in problems)


# -- E001 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "name"), [(["X"], "list"), ("redis", "str"), (1, "int")])
def test_e001_rtdelivery_not_a_dict(production: Any, value: Any, name: str) -> None:
    production.RTDELIVERY = value
    assert check_settings() == [
        Error(f"settings.RTDELIVERY must be a dict, got {name}.", id="rtdelivery.E001")
    ]


def test_e001_unknown_keys(production: Any) -> None:
    production.RTDELIVERY = {**REDIS_HISTORY, "HISTORY_SIEZ": 5, "ABC": 1}
    assert check_settings() == [
        Error(
            "Unknown RTDELIVERY setting(s): 'ABC', 'HISTORY_SIEZ' (did you mean 'HISTORY_SIZE'?).",
            hint=f"Expected some of: {KNOWN}.",
            id="rtdelivery.E001",
        )
    ]


def test_e001_no_longer_hides_other_problems(production: Any) -> None:
    production.RTDELIVERY = {**REDIS_HISTORY, "NOPE": 1, "QUEUE_SIZE": 0}
    assert ids(check_settings()) == ["rtdelivery.E001", "rtdelivery.E002"]


def test_e001_not_for_known_keys(production: Any) -> None:
    production.RTDELIVERY = {**REDIS_HISTORY, "HISTORY_SIZE": 5}
    assert check_settings() == []


# -- E002 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"HISTORY_BACKEND": "sqlite"},
            "RTDELIVERY['HISTORY_BACKEND'] must be one of ['memory', 'redis'], got 'sqlite'.",
        ),
        ({"QUEUE_SIZE": 0}, "RTDELIVERY['QUEUE_SIZE'] must be an integer >= 1, got 0."),
        (
            {"TAIL_CHECK_INTERVAL": float("nan")},
            "RTDELIVERY['TAIL_CHECK_INTERVAL'] must be a number >= 0 (seconds), got nan.",
        ),
        (
            {"TOPICS": ["chat.*"]},
            "RTDELIVERY['TOPICS'] must be a dict of pattern -> options, got list.",
        ),
        (
            {"PUBLISH_TOKENS": None},
            "RTDELIVERY['PUBLISH_TOKENS'] must be a list of secret strings of at least 16 "
            "characters, got NoneType.",
        ),
        (
            {"ALLOWED_ORIGINS": 5},
            "RTDELIVERY['ALLOWED_ORIGINS'] must be None or a list of origins like "
            "'https://example.com' (or '*'), got 5.",
        ),
        (
            {"SSE_HEARTBEAT": 0},
            "RTDELIVERY['SSE_HEARTBEAT'] must be a number > 0 (seconds), got 0.",
        ),
    ],
)
def test_e002_bad_value(settings: Any, config: dict[str, Any], message: str) -> None:
    settings.DEBUG = True
    settings.CHANNEL_LAYERS = {"default": MEMORY_LAYER}
    settings.RTDELIVERY = config
    assert check_settings() == [Error(message, id="rtdelivery.E002")]


def test_e002_every_bad_value_is_reported(production: Any) -> None:
    production.RTDELIVERY = {**REDIS_HISTORY, "QUEUE_SIZE": 0, "WS_BURST": 0}
    assert [m.msg for m in check_settings()] == [
        "RTDELIVERY['QUEUE_SIZE'] must be an integer >= 1, got 0.",
        "RTDELIVERY['WS_BURST'] must be an integer >= 1, got 0.",
    ]


def test_e002_channel_layer_not_a_string_also_gives_e006(production: Any) -> None:
    production.RTDELIVERY = {**REDIS_HISTORY, "CHANNEL_LAYER": 5}
    messages = check_settings()
    assert ids(messages) == ["rtdelivery.E002", "rtdelivery.E006"]
    assert messages[0].msg == "RTDELIVERY['CHANNEL_LAYER'] must be a string, got 5."


# -- E003 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topics", "messages"),
    [
        ({"": {}}, [f"{T} keys must be non-empty pattern strings, got ''."]),
        ({"chat.*": []}, [f"{T}['chat.*'] must be a dict of options, got list."]),
        (
            {"chat.*": {"precense": True}},
            [
                f"{T}['chat.*'] has unknown option(s) ['precense'] (did you mean 'presence'?); "
                "expected some of ['client_publish', 'history_max_age', 'history_size', "
                "'presence', 'publish', 'subscribe']."
            ],
        ),
        (
            {"a": {"history_size": -5}},
            [f"{T}['a']['history_size'] must be an integer >= 0, got -5."],
        ),
        ({"a": {"presence": 1}}, [f"{T}['a']['presence'] must be True or False, got 1."]),
        (
            {"a": {"client_publish": "no"}, "b": {"history_max_age": None}},
            [
                f"{T}['a']['client_publish'] must be True or False, got 'no'.",
                f"{T}['b']['history_max_age'] must be an integer >= 0, got None.",
            ],
        ),
    ],
)
def test_e003_bad_topics_entry(
    production: Any, topics: dict[Any, Any], messages: list[str]
) -> None:
    production.RTDELIVERY = {**REDIS_HISTORY, "TOPICS": topics}
    assert check_settings() == [Error(m, id="rtdelivery.E003") for m in messages]


def allow_all(user: Any, topic: str, action: str) -> bool:
    """A policy hook for the tests below."""
    return True


RULES = "anyone, authenticated, staff, owner, nobody"


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (
            "authenticted",
            f"unknown rule 'authenticted' (did you mean 'authenticated'?); expected one of "
            f"{RULES} or a dotted path to a callable",
        ),
        (
            ["staff", "everyone"],
            f"unknown rule 'everyone'; expected one of {RULES} or a dotted path to a callable",
        ),
        (5, "a rule must be a string or a list of strings, got 5"),
        ({"staff": True}, "a rule must be a string or a list of strings, got {'staff': True}"),
        ("os.sep", "rule 'os.sep' must be a callable (user, topic, action) -> bool, got '/'"),
        (
            "no_such_module_xyz.hook",
            "cannot import rule 'no_such_module_xyz.hook': No module named 'no_such_module_xyz'",
        ),
    ],
)
@pytest.mark.parametrize("action", ["subscribe", "publish"])
def test_e003_bad_policy_rule(production: Any, action: str, rule: Any, problem: str) -> None:
    production.RTDELIVERY = {**REDIS_HISTORY, "TOPICS": {"chat.*": {action: rule}}}
    assert check_settings() == [
        Error(f"{T}['chat.*'][{action!r}]: {problem}.", id="rtdelivery.E003")
    ]


@pytest.mark.parametrize(
    "rule",
    [
        None,
        "anyone",
        "authenticated",
        "staff",
        "owner",
        "nobody",
        ["staff", "owner"],
        (),
        "tests.test_checks.allow_all",
    ],
)
def test_valid_policy_rules_pass(production: Any, rule: Any) -> None:
    production.RTDELIVERY = {
        **REDIS_HISTORY,
        "TOPICS": {"chat.*": {"subscribe": rule, "publish": rule}},
    }
    assert check_settings() == []


# -- E004 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [None, ""])
def test_e004_redis_history_without_url(production: Any, url: Any) -> None:
    production.RTDELIVERY = {**REDIS_HISTORY, "REDIS_URL": url}
    assert check_settings() == [
        Error(
            "RTDELIVERY['HISTORY_BACKEND'] is 'redis' but RTDELIVERY['REDIS_URL'] is not set.",
            hint="Set REDIS_URL, e.g. 'redis://127.0.0.1:6379/0'.",
            id="rtdelivery.E004",
        )
    ]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "localhost:6379", "127.0.0.1", "memcached://x", "REDIS"]
)
def test_e004_redis_url_with_a_bad_scheme(production: Any, url: str) -> None:
    production.RTDELIVERY = {**REDIS_HISTORY, "REDIS_URL": url}
    assert check_settings() == [
        Error(
            "RTDELIVERY['REDIS_URL'] must be a URL with the scheme redis://, rediss://, unix://, "
            f"got {url!r}.",
            hint="E.g. 'redis://127.0.0.1:6379/0', 'rediss://host:6380/0' (TLS) or "
            "'unix:///run/redis.sock'.",
            id="rtdelivery.E004",
        )
    ]


def test_e004_does_not_echo_the_password(production: Any) -> None:
    production.RTDELIVERY = {**REDIS_HISTORY, "REDIS_URL": "http://:hunter2@h:6379/0"}
    error = only(check_settings(), "rtdelivery.E004")
    assert "hunter2" not in error.msg
    assert "'http://:***@h:6379/0'" in error.msg


def test_e004_not_for_memory_history(production: Any) -> None:
    production.DEBUG = True
    production.CHANNEL_LAYERS = {"default": MEMORY_LAYER}
    production.RTDELIVERY = {
        "HISTORY_BACKEND": "memory",
        "REDIS_URL": "http://nope",
        "TOPICS": TOPICS,
    }
    assert check_settings() == []


# -- E005 (retired) and W006 ----------------------------------------------------------------------------

W006 = Warning(
    "settings.ASGI_APPLICATION is not set: rtdelivery's WebSocket, and its fast path that "
    "serves long polls and SSE streams without a worker thread each, need an ASGI server. "
    "Under WSGI only polling, history and publishing work well.",
    hint="Fine for a WSGI tier that only publishes (silence rtdelivery.W006). Otherwise set "
    "ASGI_APPLICATION = 'yourproject.asgi.application' and wrap it with "
    "rtdelivery.asgi.rtdelivery_application (see docs/deployment.md).",
    id="rtdelivery.W006",
)


@pytest.mark.parametrize("how", ["missing", "none", "empty"])
def test_w006_missing_asgi_application_is_a_warning(production: Any, how: str) -> None:
    if how == "missing":
        del production.ASGI_APPLICATION
    else:
        production.ASGI_APPLICATION = None if how == "none" else ""
    assert check_settings() == [W006]


def test_e005_is_retired_a_wsgi_publish_tier_passes_check(production: Any) -> None:
    """A WSGI-only tier that only publishes: no ASGI_APPLICATION, rtdelivery not mounted."""
    del production.ASGI_APPLICATION
    production.ROOT_URLCONF = "tests.urls_checks_bare"
    out, err = io.StringIO(), io.StringIO()
    call_command("check", stdout=out, stderr=err)  # no SystemCheckError
    assert "rtdelivery.E005" not in out.getvalue() + err.getvalue()
    assert "rtdelivery.W006" in err.getvalue()
    with override_settings(SILENCED_SYSTEM_CHECKS=["rtdelivery.W006"]):
        err = io.StringIO()
        call_command("check", stdout=io.StringIO(), stderr=err)
        assert "rtdelivery." not in err.getvalue()


def test_w006_not_when_asgi_application_is_set(production: Any) -> None:
    assert "rtdelivery.W006" not in ids(check_settings())


# -- E006 ---------------------------------------------------------------------------------------------


def e006(alias: Any) -> Error:
    return Error(
        f"settings.CHANNEL_LAYERS has no {alias!r} layer; rtdelivery uses it as its backplane.",
        hint="Configure channels_redis.core.RedisChannelLayer (or the in-memory layer for one "
        "process) under that alias, or change RTDELIVERY['CHANNEL_LAYER'].",
        id="rtdelivery.E006",
    )


def test_e006_alias_not_configured(production: Any) -> None:
    production.RTDELIVERY = {**REDIS_HISTORY, "CHANNEL_LAYER": "events"}
    assert check_settings() == [e006("events")]


@pytest.mark.parametrize("how", ["missing", "empty"])
def test_e006_no_channel_layers_at_all(production: Any, how: str) -> None:
    if how == "missing":
        del production.CHANNEL_LAYERS
    else:
        production.CHANNEL_LAYERS = {}
    assert check_settings() == [e006("default")]


def test_e006_other_alias_configured(production: Any) -> None:
    production.CHANNEL_LAYERS = {"events": REDIS_LAYER}
    production.RTDELIVERY = {**REDIS_HISTORY, "CHANNEL_LAYER": "events"}
    assert check_settings() == []


# -- E007 ---------------------------------------------------------------------------------------------


class SubclassedMemoryLayer(InMemoryChannelLayer):
    """Still one process."""


def e007(backend: str, alias: str = "default") -> Error:
    return Error(
        f"RTDELIVERY['HISTORY_BACKEND'] is 'memory' but the channel layer {alias!r} "
        f"({backend}) connects processes: each process would number its own seq and keep its "
        "own history and presence, so events published in one process would not reach "
        "subscribers in another.",
        hint="Set RTDELIVERY['HISTORY_BACKEND'] = 'redis' and RTDELIVERY['REDIS_URL'] (the "
        "layer's Redis will do), or use channels.layers.InMemoryChannelLayer for a single "
        "process.",
        id="rtdelivery.E007",
    )


@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize("layer", [REDIS_LAYER, PUBSUB_LAYER, {"BACKEND": "myproject.MyLayer"}])
def test_e007_memory_history_with_a_cross_process_layer(
    production: Any, debug: bool, layer: dict[str, Any]
) -> None:
    production.DEBUG = debug
    production.CHANNEL_LAYERS = {"default": layer}
    production.RTDELIVERY = {"TOPICS": TOPICS}  # HISTORY_BACKEND defaults to "memory"
    # The error replaces W002 (which would only say "per process" when DEBUG is off).
    assert check_settings() == [e007(layer["BACKEND"])]


def test_e007_names_the_configured_alias(production: Any) -> None:
    production.CHANNEL_LAYERS = {"default": MEMORY_LAYER, "events": PUBSUB_LAYER}
    production.RTDELIVERY = {
        "HISTORY_BACKEND": "memory",
        "CHANNEL_LAYER": "events",
        "TOPICS": TOPICS,
    }
    assert check_settings() == [e007(PUBSUB_LAYER["BACKEND"], "events")]


@pytest.mark.parametrize(
    "backend", ["channels.layers.InMemoryChannelLayer", "tests.test_checks.SubclassedMemoryLayer"]
)
def test_e007_not_with_an_in_memory_layer(settings: Any, backend: str) -> None:
    settings.DEBUG = True
    settings.ROOT_URLCONF = "tests.urls_checks_bare"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": backend}}
    settings.RTDELIVERY = {"HISTORY_BACKEND": "memory", "TOPICS": TOPICS}
    assert check_settings() == []


def test_e007_not_with_redis_history(production: Any) -> None:
    production.DEBUG = True
    production.CHANNEL_LAYERS = {"default": PUBSUB_LAYER}
    assert check_settings() == []


# -- W001 / W002 --------------------------------------------------------------------------------------

W001 = Warning(
    "The in-memory channel layer is used while DEBUG is False: events do not reach other "
    "processes.",
    hint="Use channels_redis.core.RedisChannelLayer in production.",
    id="rtdelivery.W001",
)
W002 = Warning(
    "rtdelivery keeps history in memory while DEBUG is False: each process has its own "
    "history and it is lost on restart.",
    hint="Use RTDELIVERY['HISTORY_BACKEND'] = 'redis' in production.",
    id="rtdelivery.W002",
)


def test_w001_in_memory_layer_without_debug(production: Any) -> None:
    production.CHANNEL_LAYERS = {"default": MEMORY_LAYER}
    assert check_settings() == [W001]


def test_w001_not_with_debug(production: Any) -> None:
    production.DEBUG = True
    production.CHANNEL_LAYERS = {"default": MEMORY_LAYER}
    assert check_settings() == []


def test_w002_memory_history_without_debug(production: Any) -> None:
    production.CHANNEL_LAYERS = {"default": MEMORY_LAYER}
    production.RTDELIVERY = {"HISTORY_BACKEND": "memory", "TOPICS": TOPICS}
    assert check_settings() == [W001, W002]


def test_w002_not_with_debug(production: Any) -> None:
    production.DEBUG = True
    production.CHANNEL_LAYERS = {"default": MEMORY_LAYER}
    production.RTDELIVERY = {"TOPICS": TOPICS}
    assert check_settings() == []


# -- W003 ---------------------------------------------------------------------------------------------

W003 = Warning(
    "A RedisChannelLayer host has a socket timeout: with redis-py 8 idle receivers fail with "
    "TimeoutError every few seconds.",
    hint='Give each host as a dict with "socket_timeout": None, e.g. '
    '{"address": "redis://127.0.0.1:6379/0", "socket_timeout": None}.',
    id="rtdelivery.W003",
)


@pytest.mark.parametrize(
    "config",
    [
        {"hosts": ["redis://127.0.0.1:6379/0"]},
        {"hosts": [("127.0.0.1", 6379)]},
        {"hosts": [{"address": "redis://127.0.0.1:6379/0"}]},
        {"hosts": [{"address": "redis://127.0.0.1:6379/0", "socket_timeout": 5}]},
        {
            "hosts": [
                {"address": "redis://a:6379/0", "socket_timeout": None},
                {"address": "redis://b:6379/0"},
                "redis://c:6379/0",
            ]
        },
        {},  # channels-redis then connects to localhost:6379 with the default timeout
        None,
    ],
)
def test_w003_redis_layer_host_with_a_socket_timeout(production: Any, config: Any) -> None:
    layer: dict[str, Any] = {"BACKEND": "channels_redis.core.RedisChannelLayer"}
    if config is not None:
        layer["CONFIG"] = config
    production.CHANNEL_LAYERS = {"default": layer}
    assert check_settings() == [W003]  # once, however many hosts


def test_w003_not_when_every_host_has_no_timeout(production: Any) -> None:
    production.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [
                    {"address": "redis://a:6379/0", "socket_timeout": None},
                    {"address": "redis://b:6379/0", "socket_timeout": None},
                ]
            },
        }
    }
    assert check_settings() == []


def test_w003_only_for_redis_channel_layer(production: Any) -> None:
    production.CHANNEL_LAYERS = {"default": PUBSUB_LAYER}
    assert check_settings() == []


def test_w003_checks_the_configured_alias_only(production: Any) -> None:
    production.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer"},
        "events": REDIS_LAYER,
    }
    production.RTDELIVERY = {**REDIS_HISTORY, "CHANNEL_LAYER": "events"}
    assert check_settings() == []


# -- W004 ---------------------------------------------------------------------------------------------


def test_w004_unreachable_redis(production: Any, free_port: Callable[[], int]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    production.RTDELIVERY = {**REDIS_HISTORY, "REDIS_URL": url}
    messages = check_redis_reachable(databases=["default"])
    assert ids(messages) == ["rtdelivery.W004"]
    warning = messages[0]
    assert isinstance(warning, Warning)
    assert warning.msg.startswith(f"Redis for rtdelivery's history at {url!r} did not answer: ")
    assert warning.hint == "Start Redis or fix RTDELIVERY['REDIS_URL']."


def test_w004_does_not_echo_the_password(production: Any, free_port: Callable[[], int]) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    production.RTDELIVERY = {**REDIS_HISTORY, "REDIS_URL": url}
    warning = only(check_redis_reachable(databases=["default"]), "rtdelivery.W004")
    assert "hunter2" not in warning.msg
    assert ":***@127.0.0.1:" in warning.msg


def test_w004_only_when_databases_are_checked(
    production: Any, free_port: Callable[[], int]
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    production.RTDELIVERY = {**REDIS_HISTORY, "REDIS_URL": url}
    assert check_redis_reachable() == []
    assert check_redis_reachable(databases=None) == []
    assert check_redis_reachable(databases=[]) == []


def test_w004_bad_url_is_a_warning_not_a_crash(production: Any) -> None:
    production.RTDELIVERY = {**REDIS_HISTORY, "REDIS_URL": "redis://:notaport"}
    assert ids(check_redis_reachable(databases=["default"])) == ["rtdelivery.W004"]


@pytest.mark.parametrize(
    "config",
    [
        {"HISTORY_BACKEND": "memory"},  # nothing to reach
        {"HISTORY_BACKEND": "redis"},  # no URL: E004 reports it
        {"QUEUE_SIZE": 0},  # invalid: E002 reports it
    ],
)
def test_w004_silent_when_not_applicable(production: Any, config: dict[str, Any]) -> None:
    production.RTDELIVERY = config
    assert check_redis_reachable(databases=["default"]) == []


def test_w004_not_when_redis_answers(production: Any, redis_url: str) -> None:
    production.RTDELIVERY = {**REDIS_HISTORY, "REDIS_URL": redis_url}
    assert check_redis_reachable(databases=["default"]) == []


# -- W005 ---------------------------------------------------------------------------------------------


def w005(where: str) -> Warning:
    return Warning(
        f"{where}: no topic pattern is configured, so every topic is denied (every subscribe "
        "and publish from a client gets 403 forbidden).",
        hint=f"Allow the topics your clients use, e.g. {TOPICS_EXAMPLE}",
        id="rtdelivery.W005",
    )


def test_w005_no_rtdelivery_setting(production: Any) -> None:
    production.DEBUG = True
    production.CHANNEL_LAYERS = {"default": MEMORY_LAYER}
    del production.RTDELIVERY
    assert check_settings() == [w005("settings.RTDELIVERY is not set")]


@pytest.mark.parametrize("config", [{}, {"TOPICS": {}}, {**REDIS_HISTORY, "TOPICS": {}}])
def test_w005_no_topics(production: Any, config: dict[str, Any]) -> None:
    production.DEBUG = True
    production.CHANNEL_LAYERS = {"default": MEMORY_LAYER}
    production.RTDELIVERY = config
    assert check_settings() == [w005("RTDELIVERY['TOPICS'] is empty")]


def test_w005_example_is_a_valid_configuration() -> None:
    namespace: dict[str, Any] = {}
    exec(TOPICS_EXAMPLE, namespace)
    assert validate(namespace["RTDELIVERY"]) == []


def test_w005_not_with_a_topic_pattern(production: Any) -> None:
    production.RTDELIVERY = {**REDIS_HISTORY, "TOPICS": {"nothing.*": {}}}
    assert check_settings() == []


def test_w005_not_when_topics_is_invalid(production: Any) -> None:
    production.RTDELIVERY = {**REDIS_HISTORY, "TOPICS": []}
    assert ids(check_settings()) == ["rtdelivery.E002"]


# -- W007 / W008: the ASGI application and the fast path -----------------------------------------------


async def plain_app(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI application that is not rtdelivery's."""


class FastPathApp:
    rtdelivery_fast_path = True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


class Wrapper:
    """A middleware keeping the application it wraps under ``attribute``."""

    def __init__(self, attribute: str, app: Any) -> None:
        setattr(self, attribute, app)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        pass


class FailingProperty:
    @property
    def app(self) -> Any:
        raise RuntimeError("not available")


def deep(levels: int, app: Any) -> Any:
    for _ in range(levels):
        app = Wrapper("app", app)
    return app


def cyclic() -> Any:
    outer = Wrapper("app", None)
    outer.inner = Wrapper("app", outer)  # type: ignore[attr-defined]
    return outer


PLAIN = plain_app
DJANGO = get_asgi_application()
FAST = FastPathApp()
REAL = rtdelivery_application(DJANGO)
IN_APP = Wrapper("app", FAST)
IN_INNER = Wrapper("inner", FAST)
IN_APPLICATION = Wrapper("application", FAST)
IN_ASGI_APP = Wrapper("asgi_app", FAST)
IN_ROUTER = ProtocolTypeRouter({"http": Wrapper("app", REAL), "websocket": plain_app})
PLAIN_IN_ROUTER = ProtocolTypeRouter({"http": DJANGO, "websocket": REAL})  # fast path not on http
NESTED = Wrapper("inner", Wrapper("application", Wrapper("asgi_app", FAST)))
TOO_DEEP = deep(20, FAST)
CYCLE = cyclic()
BROKEN_PROPERTY = FailingProperty()
NOT_CALLED = "no module"

W007_HINT = (
    "Wrap the Django application in asgi.py: application = "
    "rtdelivery_application(get_asgi_application()) (from rtdelivery.asgi); see "
    "docs/deployment.md."
)


def w007(path: str) -> Warning:
    return Warning(
        f"settings.ASGI_APPLICATION {path!r} does not serve rtdelivery's long-poll and SSE "
        "views on the fast path: each held request then holds a worker thread for as long as "
        "it is open, and under Daphne an SSE client that stops reading makes the server "
        "buffer everything sent to it.",
        hint=W007_HINT,
        id="rtdelivery.W007",
    )


@pytest.mark.parametrize(
    "name", ["PLAIN", "DJANGO", "PLAIN_IN_ROUTER", "TOO_DEEP", "CYCLE", "BROKEN_PROPERTY"]
)
def test_w007_application_without_the_fast_path(production: Any, name: str) -> None:
    production.ASGI_APPLICATION = f"tests.test_checks.{name}"
    assert check_settings() == [w007(f"tests.test_checks.{name}")]


@pytest.mark.parametrize(
    "name",
    ["FAST", "REAL", "IN_APP", "IN_INNER", "IN_APPLICATION", "IN_ASGI_APP", "IN_ROUTER", "NESTED"],
)
def test_w007_not_for_rtdelivery_application_or_a_wrapper_of_it(production: Any, name: str) -> None:
    production.ASGI_APPLICATION = f"tests.test_checks.{name}"
    assert check_settings() == []


def test_w007_not_for_the_demo_wrapped_in_its_simulator_middleware(production: Any) -> None:
    # demo_site/asgi.py: SimulatorMiddleware(rtdelivery_application(...)), kept in `.app`.
    production.ASGI_APPLICATION = "demo_site.asgi.application"
    assert check_settings() == []


@pytest.mark.parametrize("debug", [True, False])
def test_w007_whatever_debug_is(production: Any, debug: bool) -> None:
    production.DEBUG = debug
    production.CHANNEL_LAYERS = {"default": MEMORY_LAYER if debug else REDIS_LAYER}
    production.ASGI_APPLICATION = "tests.test_checks.PLAIN"
    assert ids(check_settings())[-1] == "rtdelivery.W007"


@pytest.mark.parametrize("path", ["tests.test_checks.PLAIN", "no.such.module.app"])
def test_w007_w008_not_when_rtdelivery_is_not_mounted(production: Any, path: str) -> None:
    production.ROOT_URLCONF = "tests.urls_checks_bare"
    production.ASGI_APPLICATION = path
    assert check_settings() == []


@pytest.mark.parametrize(
    ("path", "error"),
    [
        (
            "no_such_module_xyz.application",
            "ModuleNotFoundError: No module named 'no_such_module_xyz'",
        ),
        (
            "tests.test_checks.MISSING",
            'ImportError: Module "tests.test_checks" does not define a "MISSING" attribute/class',
        ),
        ("application", "ImportError: application doesn't look like a module path"),
        ("tests.asgi_that_fails.application", "RuntimeError: asgi.py failed on import"),
    ],
)
def test_w008_asgi_application_cannot_be_imported(production: Any, path: str, error: str) -> None:
    production.ASGI_APPLICATION = path
    assert check_settings() == [
        Warning(
            f"settings.ASGI_APPLICATION {path!r} cannot be imported ({error}), so whether it "
            "serves rtdelivery's long polls and SSE streams on the fast path is unknown.",
            hint="Fix the path or the module; an ASGI server would fail the same way.",
            id="rtdelivery.W008",
        )
    ]


def test_w008_does_not_crash_manage_py_check(production: Any) -> None:
    production.ASGI_APPLICATION = "tests.asgi_that_fails.application"
    err = io.StringIO()
    call_command("check", stdout=io.StringIO(), stderr=err)
    assert "rtdelivery.W008" in err.getvalue()


# -- W009: rules that need a user without sessions/auth ----------------------------------------------

WITHOUT_AUTH = ["django.contrib.contenttypes", "channels", "rtdelivery"]
WITHOUT_SESSIONS = ["django.contrib.auth", *WITHOUT_AUTH]


@pytest.fixture
def anonymous_only(production: Any) -> Iterator[Any]:
    """rtdelivery without django.contrib.auth and django.contrib.sessions."""
    production.ROOT_URLCONF = "tests.urls_checks_bare"
    with override_settings(INSTALLED_APPS=WITHOUT_AUTH):
        yield production


def w009(missing: str, rules: str) -> Warning:
    verb = "are" if " and " in missing else "is"
    return Warning(
        f"{missing} {verb} not in INSTALLED_APPS, so every client is anonymous; yet these "
        f"TOPICS rules need to know the user: {rules}. 'authenticated', 'staff' and 'owner' "
        "can then never allow anyone, and hooks only ever see an anonymous client.",
        hint="Add 'django.contrib.sessions' and 'django.contrib.auth' to INSTALLED_APPS (with "
        "SessionMiddleware and AuthenticationMiddleware), or use rules that do not depend on "
        "the user ('anyone', 'nobody').",
        id="rtdelivery.W009",
    )


@pytest.mark.parametrize(
    "rule", ["authenticated", "staff", "owner", "tests.test_checks.allow_all", ["anyone", "staff"]]
)
def test_w009_user_rules_without_auth_and_sessions(anonymous_only: Any, rule: Any) -> None:
    anonymous_only.RTDELIVERY = {**REDIS_HISTORY, "TOPICS": {"chat.*": {"subscribe": rule}}}
    assert check_settings() == [
        w009("django.contrib.sessions and django.contrib.auth", f"'chat.*' (subscribe: {rule!r})")
    ]


def test_w009_lists_every_rule_that_needs_a_user(anonymous_only: Any) -> None:
    anonymous_only.RTDELIVERY = {
        **REDIS_HISTORY,
        "TOPICS": {
            "feed": {"subscribe": "anyone", "publish": "staff"},
            "open": {"subscribe": "anyone", "publish": "nobody"},
            "user.*": {"subscribe": "owner"},
        },
    }
    assert check_settings() == [
        w009(
            "django.contrib.sessions and django.contrib.auth",
            "'feed' (publish: 'staff'), 'user.*' (subscribe: 'owner')",
        )
    ]


def test_w009_sessions_alone_missing(production: Any) -> None:
    production.ROOT_URLCONF = "tests.urls_checks_bare"
    production.RTDELIVERY = {**REDIS_HISTORY, "TOPICS": {"chat.*": {"publish": "authenticated"}}}
    with override_settings(INSTALLED_APPS=WITHOUT_SESSIONS):
        assert check_settings() == [
            w009("django.contrib.sessions", "'chat.*' (publish: 'authenticated')")
        ]


@pytest.mark.parametrize("rule", [None, "anyone", "nobody", ["anyone", "nobody"]])
def test_w009_not_for_rules_that_ignore_the_user(anonymous_only: Any, rule: Any) -> None:
    anonymous_only.RTDELIVERY = {**REDIS_HISTORY, "TOPICS": {"feed": {"subscribe": rule}}}
    assert check_settings() == []


def test_w009_not_with_auth_and_sessions_installed(production: Any) -> None:
    production.RTDELIVERY = {**REDIS_HISTORY, "TOPICS": {"chat.*": {"subscribe": "staff"}}}
    assert check_settings() == []


# -- no side effects ------------------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening TCP socket nothing should connect to."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def connections_to(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def test_checks_open_no_connection_and_build_no_layer(
    production: Any, listener: socket.socket
) -> None:
    url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    production.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": url, "socket_timeout": None}]},
        }
    }
    production.RTDELIVERY = {**REDIS_HISTORY, "REDIS_URL": url}
    channel_layers.backends.clear()
    cached = get_settings()
    assert check_settings() == []
    call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
    assert connections_to(listener) == 0
    assert channel_layers.backends == {}
    assert get_settings() is cached  # the runtime's settings cache is left alone
    # Only W004, tagged "database", connects (and the listener sees it).
    check_redis_reachable(databases=["default"])
    assert connections_to(listener) == 1


# -- registration -------------------------------------------------------------------------------------


def test_checks_are_registered_with_django(production: Any) -> None:
    production.RTDELIVERY = {"NOPE": 1}
    with pytest.raises(SystemCheckError) as info:
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
    assert "rtdelivery.E001" in str(info.value)
    assert "Unknown RTDELIVERY setting(s): 'NOPE'." in str(info.value)


def test_e007_fails_django_check(production: Any) -> None:
    production.RTDELIVERY = {"TOPICS": TOPICS}
    with pytest.raises(SystemCheckError) as info:
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
    assert "rtdelivery.E007" in str(info.value)


def test_clean_config_passes_django_check(production: Any) -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("check", stdout=out, stderr=err)
    assert "rtdelivery." not in out.getvalue() + err.getvalue()


def test_reachability_check_runs_with_database_flag(
    production: Any, free_port: Callable[[], int]
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    production.RTDELIVERY = {**REDIS_HISTORY, "REDIS_URL": url}
    err = io.StringIO()
    call_command("check", stdout=io.StringIO(), stderr=err)
    assert "rtdelivery.W004" not in err.getvalue()
    call_command("check", databases=["default"], stdout=io.StringIO(), stderr=err)
    assert "rtdelivery.W004" in err.getvalue()
