"""System checks: every rtdelivery check ID, a clean configuration, and registration."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from django.core.checks import Error, Warning  # noqa: A004 - Django's name
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from rtdelivery.checks import check_redis_reachable, check_settings
from rtdelivery.conf import DEFAULTS

REDIS_LAYER = {
    "BACKEND": "channels_redis.core.RedisChannelLayer",
    "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:6379/0", "socket_timeout": None}]},
}
MEMORY_LAYER = {"BACKEND": "channels.layers.InMemoryChannelLayer"}


@pytest.fixture
def production(settings: Any) -> Any:
    """A clean production configuration: Redis history and layer, DEBUG off."""
    settings.DEBUG = False
    settings.ASGI_APPLICATION = "demo_site.asgi.application"
    settings.CHANNEL_LAYERS = {"default": REDIS_LAYER}
    settings.RTDELIVERY = {"HISTORY_BACKEND": "redis", "REDIS_URL": "redis://127.0.0.1:6379/0"}
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
    settings.CHANNEL_LAYERS = {"default": MEMORY_LAYER}
    settings.RTDELIVERY = {}
    assert check_settings() == []


@pytest.mark.parametrize("url", ["redis://h:6379/0", "rediss://h:6380/1", "unix:///tmp/r.sock"])
def test_redis_url_schemes_accepted(production: Any, url: str) -> None:
    production.RTDELIVERY = {"HISTORY_BACKEND": "redis", "REDIS_URL": url}
    assert check_settings() == []


# -- E001 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "name"), [(["X"], "list"), ("redis", "str"), (1, "int")])
def test_e001_rtdelivery_not_a_dict(production: Any, value: Any, name: str) -> None:
    production.RTDELIVERY = value
    assert check_settings() == [
        Error(f"settings.RTDELIVERY must be a dict, got {name}.", id="rtdelivery.E001")
    ]


def test_e001_unknown_keys(production: Any) -> None:
    production.RTDELIVERY = {**production.RTDELIVERY, "HISTORY_SIEZ": 5, "ABC": 1}
    assert check_settings() == [
        Error(
            "Unknown RTDELIVERY setting(s): ABC, HISTORY_SIEZ.",
            hint=f"Expected some of: {', '.join(sorted(DEFAULTS))}.",
            id="rtdelivery.E001",
        )
    ]


def test_e001_hides_e002_from_other_bad_values(production: Any) -> None:
    production.RTDELIVERY = {"NOPE": 1, "QUEUE_SIZE": 0}
    assert ids(check_settings()) == ["rtdelivery.E001"]


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
        ({"TOPICS": ["chat.*"]}, "RTDELIVERY['TOPICS'] must be a dict of pattern -> options."),
        (
            {"PUBLISH_TOKENS": None},
            "RTDELIVERY['PUBLISH_TOKENS'] must be a list of secret strings of at least 16 "
            "characters.",
        ),
        (
            {"ALLOWED_ORIGINS": 5},
            "RTDELIVERY['ALLOWED_ORIGINS'] must be None or a list of origins like "
            "'https://example.com' (or '*'), got 5.",
        ),
    ],
)
def test_e002_bad_value(settings: Any, config: dict[str, Any], message: str) -> None:
    settings.DEBUG = True
    settings.CHANNEL_LAYERS = {"default": MEMORY_LAYER}
    settings.RTDELIVERY = config
    assert check_settings() == [Error(message, id="rtdelivery.E002")]


def test_e002_channel_layer_not_a_string_also_gives_e006(production: Any) -> None:
    production.RTDELIVERY = {**production.RTDELIVERY, "CHANNEL_LAYER": 5}
    messages = check_settings()
    assert ids(messages) == ["rtdelivery.E002", "rtdelivery.E006"]
    assert messages[0].msg == "RTDELIVERY['CHANNEL_LAYER'] must be a string, got 5."


# -- E003 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topics", "messages"),
    [
        ({"": {}}, ["TOPICS keys must be non-empty pattern strings, got ''."]),
        ({"chat.*": []}, ["TOPICS['chat.*'] must be a dict, got list."]),
        (
            {"chat.*": {"precense": True}},
            [
                "TOPICS['chat.*'] has unknown option(s) ['precense']; expected some of "
                "['client_publish', 'history_max_age', 'history_size', 'presence', 'publish', "
                "'subscribe']."
            ],
        ),
        (
            {"a": {"history_size": -5}},
            ["TOPICS['a']['history_size'] must be an integer >= 0, got -5."],
        ),
        ({"a": {"presence": 1}}, ["TOPICS['a']['presence'] must be True or False."]),
        (
            {"a": {"client_publish": "no"}, "b": {"history_max_age": None}},
            [
                "TOPICS['a']['client_publish'] must be True or False.",
                "TOPICS['b']['history_max_age'] must be an integer >= 0, got None.",
            ],
        ),
    ],
)
def test_e003_bad_topics_entry(
    production: Any, topics: dict[Any, Any], messages: list[str]
) -> None:
    production.RTDELIVERY = {**production.RTDELIVERY, "TOPICS": topics}
    assert check_settings() == [Error(m, id="rtdelivery.E003") for m in messages]


def allow_all(user: Any, topic: str, action: str) -> bool:
    """A policy hook for the tests below."""
    return True


RULES = "anyone, authenticated, staff, owner, nobody"


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("authenticted", f"unknown rule 'authenticted'; expected one of {RULES} or a dotted path"),
        (
            ["staff", "everyone"],
            f"unknown rule 'everyone'; expected one of {RULES} or a dotted path",
        ),
        (5, "a rule must be a string or a list of strings, got 5"),
        ({"staff": True}, "a rule must be a string or a list of strings, got {'staff': True}"),
        ("os.sep", "rule 'os.sep' is not callable"),
        (
            "no_such_module_xyz.hook",
            "cannot import rule 'no_such_module_xyz.hook': No module named 'no_such_module_xyz'",
        ),
    ],
)
@pytest.mark.parametrize("action", ["subscribe", "publish"])
def test_e003_bad_policy_rule(production: Any, action: str, rule: Any, problem: str) -> None:
    production.RTDELIVERY = {**production.RTDELIVERY, "TOPICS": {"chat.*": {action: rule}}}
    assert check_settings() == [
        Error(f"TOPICS['chat.*'][{action!r}]: {problem}.", id="rtdelivery.E003")
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
        **production.RTDELIVERY,
        "TOPICS": {"chat.*": {"subscribe": rule, "publish": rule}},
    }
    assert check_settings() == []


# -- E004 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [None, ""])
def test_e004_redis_history_without_url(production: Any, url: Any) -> None:
    production.RTDELIVERY = {"HISTORY_BACKEND": "redis", "REDIS_URL": url}
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
    production.RTDELIVERY = {"HISTORY_BACKEND": "redis", "REDIS_URL": url}
    assert check_settings() == [
        Error(
            "RTDELIVERY['REDIS_URL'] must use one of the schemes redis, rediss, unix; "
            f"got {url!r}.",
            id="rtdelivery.E004",
        )
    ]


def test_e004_not_for_memory_history(production: Any) -> None:
    production.DEBUG = True
    production.RTDELIVERY = {"HISTORY_BACKEND": "memory", "REDIS_URL": "http://nope"}
    assert check_settings() == []


# -- E005 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["missing", "none", "empty"])
def test_e005_missing_asgi_application(production: Any, how: str) -> None:
    if how == "missing":
        del production.ASGI_APPLICATION
    else:
        production.ASGI_APPLICATION = None if how == "none" else ""
    assert check_settings() == [
        Error(
            "settings.ASGI_APPLICATION is not set; rtdelivery's streams and WebSockets need an "
            "ASGI server.",
            hint="Set ASGI_APPLICATION = 'yourproject.asgi.application'.",
            id="rtdelivery.E005",
        )
    ]


# -- E006 ---------------------------------------------------------------------------------------------


def e006(alias: Any) -> Error:
    return Error(
        f"settings.CHANNEL_LAYERS has no {alias!r} layer; rtdelivery uses it as its backplane.",
        hint="Configure channels_redis.core.RedisChannelLayer (or the in-memory layer for one "
        "process) under that alias, or change RTDELIVERY['CHANNEL_LAYER'].",
        id="rtdelivery.E006",
    )


def test_e006_alias_not_configured(production: Any) -> None:
    production.RTDELIVERY = {**production.RTDELIVERY, "CHANNEL_LAYER": "events"}
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
    production.RTDELIVERY = {**production.RTDELIVERY, "CHANNEL_LAYER": "events"}
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
    production.RTDELIVERY = {"HISTORY_BACKEND": "memory"}
    assert check_settings() == [W002]


def test_w002_not_with_debug(production: Any) -> None:
    production.DEBUG = True
    production.RTDELIVERY = {}
    assert check_settings() == []


def test_w001_and_w002_together(production: Any) -> None:
    production.CHANNEL_LAYERS = {"default": MEMORY_LAYER}
    production.RTDELIVERY = {}
    assert check_settings() == [W002, W001]


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
    production.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"]},
        }
    }
    assert check_settings() == []


def test_w003_checks_the_configured_alias_only(production: Any) -> None:
    production.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer"},
        "events": REDIS_LAYER,
    }
    production.RTDELIVERY = {**production.RTDELIVERY, "CHANNEL_LAYER": "events"}
    assert check_settings() == []


# -- W004 ---------------------------------------------------------------------------------------------


def test_w004_unreachable_redis(production: Any, free_port: Callable[[], int]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    production.RTDELIVERY = {"HISTORY_BACKEND": "redis", "REDIS_URL": url}
    messages = check_redis_reachable(databases=["default"])
    assert ids(messages) == ["rtdelivery.W004"]
    warning = messages[0]
    assert isinstance(warning, Warning)
    assert warning.msg.startswith(f"Redis for rtdelivery's history at {url!r} did not answer: ")
    assert warning.hint == "Start Redis or fix RTDELIVERY['REDIS_URL']."


def test_w004_only_when_databases_are_checked(
    production: Any, free_port: Callable[[], int]
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    production.RTDELIVERY = {"HISTORY_BACKEND": "redis", "REDIS_URL": url}
    assert check_redis_reachable() == []
    assert check_redis_reachable(databases=None) == []
    assert check_redis_reachable(databases=[]) == []


def test_w004_bad_url_is_a_warning_not_a_crash(production: Any) -> None:
    production.RTDELIVERY = {"HISTORY_BACKEND": "redis", "REDIS_URL": "redis://:notaport"}
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
    production.RTDELIVERY = {"HISTORY_BACKEND": "redis", "REDIS_URL": redis_url}
    assert check_redis_reachable(databases=["default"]) == []


# -- registration -------------------------------------------------------------------------------------


def test_checks_are_registered_with_django(production: Any) -> None:
    production.RTDELIVERY = {"NOPE": 1}
    with pytest.raises(SystemCheckError) as info:
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
    assert "rtdelivery.E001" in str(info.value)
    assert "Unknown RTDELIVERY setting(s): NOPE." in str(info.value)


def test_clean_config_passes_django_check(production: Any) -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("check", stdout=out, stderr=err)
    assert "rtdelivery." not in out.getvalue() + err.getvalue()


def test_reachability_check_runs_with_database_flag(
    production: Any, free_port: Callable[[], int]
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    production.RTDELIVERY = {"HISTORY_BACKEND": "redis", "REDIS_URL": url}
    err = io.StringIO()
    call_command("check", stdout=io.StringIO(), stderr=err)
    assert "rtdelivery.W004" not in err.getvalue()
    call_command("check", databases=["default"], stdout=io.StringIO(), stderr=err)
    assert "rtdelivery.W004" in err.getvalue()
