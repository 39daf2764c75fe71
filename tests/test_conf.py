"""rtdelivery.conf: defaults, merging, validation messages, topic options and caching."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from rtdelivery.conf import (
    DEFAULTS,
    TOPIC_OPTION_KEYS,
    Problem,
    Settings,
    TopicOptions,
    get_settings,
    redact_url,
    validate,
)
from rtdelivery.core.cursors import Cursor, Position
from rtdelivery.core.errors import InvalidCursor

REPO = Path(__file__).resolve().parent.parent
TOKEN = "s3cret-token-0123456789"  # >= 16 characters
KNOWN = ", ".join(sorted(DEFAULTS))


def build(settings: Any, config: Any) -> Settings:
    settings.RTDELIVERY = config
    return get_settings()


def error_for(settings: Any, config: Any) -> str:
    settings.RTDELIVERY = config
    with pytest.raises(ImproperlyConfigured) as info:
        get_settings()
    return str(info.value)


# -- defaults and merging -------------------------------------------------------------------------

EXPECTED_DEFAULTS: dict[str, Any] = {
    "HISTORY_BACKEND": "memory",
    "REDIS_URL": None,
    "REDIS": None,
    "REDIS_OPTIONS": {},
    "KEY_PREFIX": "rtdelivery:",
    "HISTORY_SIZE": 1000,
    "HISTORY_MAX_AGE": 86400,
    "TOPIC_IDLE_TTL": 604800,
    "IDEMPOTENCY_TTL": 86400,
    "CHANNEL_LAYER": "default",
    "TOPICS": {},
    "MAX_EVENT_BYTES": 65536,
    "QUEUE_SIZE": 1000,
    "TAIL_CHECK_INTERVAL": 2.0,
    "GROUP_REFRESH_INTERVAL": None,
    "LONGPOLL_TIMEOUT": 25.0,
    "LONGPOLL_MAX_TIMEOUT": 55.0,
    "SSE_HEARTBEAT": 15.0,
    "SSE_RETRY": 2000,
    "MAX_TOPICS": 50,
    "POLL_LIMIT": 200,
    "HISTORY_LIMIT": 200,
    "MAX_HELD_REQUESTS": 20000,
    "MAX_REQUEST_BYTES": 131072,
    "WS_MAX_MESSAGE_BYTES": 131072,
    "WS_RATE": 50.0,
    "WS_BURST": 100,
    "ALLOWED_ORIGINS": None,
    "CORS_ALLOW_CREDENTIALS": False,
    "MAX_CONNECTIONS_PER_USER": 50,
    "MAX_CONNECTIONS_PER_IP": 200,
    "PUBLISH_RATE": 10.0,
    "PUBLISH_BURST": 20,
    "PUBLISH_TOKENS": [],
    "METRICS_TOKENS": [],
    "OPS_INTERVAL": 5.0,
    "PRESENCE_TTL": 60,
    "PRESENCE_POLL_TTL": 30,
    "SHUTDOWN_TIMEOUT": 5.0,
    "AUTHENTICATORS": [
        "rtdelivery.authentication.token_authenticator",
        "rtdelivery.authentication.session_authenticator",
    ],
    "TOKEN_TTL": 300,
    "DISCONNECT_ON_LOGOUT": True,
    "SESSION_CHECK_INTERVAL": 30.0,
}


def test_defaults_are_the_documented_ones() -> None:
    # docs/settings.md lists these; a new key must be documented (and added here).
    assert DEFAULTS == EXPECTED_DEFAULTS


def test_every_setting_has_a_typed_accessor() -> None:
    fields = {f.name for f in dataclasses.fields(Settings)} - {"raw", "cursor_key"}
    assert fields == {key.lower() for key in DEFAULTS}


@pytest.mark.parametrize("how", ["empty", "none", "missing"])
def test_defaults_apply_without_configuration(settings: Any, how: str) -> None:
    if how == "missing":
        del settings.RTDELIVERY
    else:
        settings.RTDELIVERY = {} if how == "empty" else None
    conf = get_settings()
    assert dict(conf.raw) == DEFAULTS
    for key, value in DEFAULTS.items():
        accessor = getattr(conf, key.lower())
        if isinstance(value, list):
            assert accessor == tuple(value), key
        else:
            assert accessor == value, key
        assert conf[key] == value
    assert conf.history_backend == "memory"
    assert conf.group_refresh_interval is None
    assert conf.publish_tokens == ()
    assert isinstance(conf.tail_check_interval, float)
    assert isinstance(conf.longpoll_timeout, float)


def test_user_values_are_merged_over_defaults(settings: Any) -> None:
    conf = build(settings, {"QUEUE_SIZE": 5, "KEY_PREFIX": "app:", "TAIL_CHECK_INTERVAL": 3})
    assert conf.queue_size == 5
    assert conf.key_prefix == "app:"
    assert conf.tail_check_interval == 3.0
    assert type(conf.tail_check_interval) is float
    assert conf.history_size == DEFAULTS["HISTORY_SIZE"]
    assert conf["QUEUE_SIZE"] == 5
    assert conf["HISTORY_SIZE"] == DEFAULTS["HISTORY_SIZE"]
    assert set(conf.raw) == set(DEFAULTS)
    assert DEFAULTS["QUEUE_SIZE"] == 1000  # the defaults themselves are untouched


def test_getitem_unknown_key_is_a_key_error(settings: Any) -> None:
    conf = build(settings, {})
    with pytest.raises(KeyError):
        conf["NOPE"]


@pytest.mark.parametrize(
    ("config", "attr", "expected"),
    [
        ({"HISTORY_SIZE": 0}, "history_size", 0),
        ({"SSE_RETRY": 0}, "sse_retry", 0),
        ({"TAIL_CHECK_INTERVAL": 0}, "tail_check_interval", 0.0),
        ({"WS_RATE": 0}, "ws_rate", 0.0),
        ({"GROUP_REFRESH_INTERVAL": 0}, "group_refresh_interval", None),
        ({"GROUP_REFRESH_INTERVAL": 30}, "group_refresh_interval", 30.0),
        ({"GROUP_REFRESH_INTERVAL": 0.5}, "group_refresh_interval", 0.5),
        ({"LONGPOLL_TIMEOUT": 55, "LONGPOLL_MAX_TIMEOUT": 55}, "longpoll_timeout", 55.0),
        ({"LONGPOLL_TIMEOUT": 0}, "longpoll_timeout", 0.0),
        (
            {"ALLOWED_ORIGINS": ["https://a.example", "*"]},
            "allowed_origins",
            ("https://a.example", "*"),
        ),
        ({"ALLOWED_ORIGINS": ()}, "allowed_origins", ()),
        ({"PUBLISH_TOKENS": [TOKEN]}, "publish_tokens", (TOKEN,)),
        ({"PUBLISH_TOKENS": (TOKEN,)}, "publish_tokens", (TOKEN,)),
        ({"HISTORY_BACKEND": "redis", "REDIS_URL": "redis://h:1/2"}, "redis_url", "redis://h:1/2"),
        ({"REDIS_OPTIONS": {"socket_timeout": 3}}, "redis_options", {"socket_timeout": 3}),
        ({"KEY_PREFIX": ""}, "key_prefix", ""),
        ({"CHANNEL_LAYER": "events"}, "channel_layer", "events"),
    ],
)
def test_accepted_values(settings: Any, config: dict[str, Any], attr: str, expected: Any) -> None:
    assert getattr(build(settings, config), attr) == expected


# -- validation messages ---------------------------------------------------------------------------


def int_msg(key: str, low: int, value: Any) -> str:
    return f"RTDELIVERY[{key!r}] must be an integer >= {low}, got {value!r}."


def num_msg(key: str, value: Any, unit: str = "seconds") -> str:
    expected = f"a number {'>' if key == 'SSE_HEARTBEAT' else '>='} 0 ({unit})"
    if key == "GROUP_REFRESH_INTERVAL":
        expected += " or None"
    return f"RTDELIVERY[{key!r}] must be {expected}, got {value!r}."


INT_KEYS = {  # key -> lowest accepted value
    "HISTORY_SIZE": 0,
    "HISTORY_MAX_AGE": 1,
    "TOPIC_IDLE_TTL": 1,
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
}
NUMBER_KEYS = {
    "TAIL_CHECK_INTERVAL": "seconds",
    "GROUP_REFRESH_INTERVAL": "seconds",
    "LONGPOLL_TIMEOUT": "seconds",
    "LONGPOLL_MAX_TIMEOUT": "seconds",
    "SSE_HEARTBEAT": "seconds",
    "WS_RATE": "frames per second",
}


@pytest.mark.parametrize("key", sorted(INT_KEYS))
@pytest.mark.parametrize("bad", ["below", "10", 1.5, True, None])
def test_integer_settings_reject_bad_values(settings: Any, key: str, bad: Any) -> None:
    low = INT_KEYS[key]
    value = low - 1 if bad == "below" else bad
    assert error_for(settings, {key: value}) == int_msg(key, low, value)


@pytest.mark.parametrize("key", sorted(NUMBER_KEYS))
@pytest.mark.parametrize("bad", [-1, -0.5, math.nan, -math.inf, "2", True, [1]])
def test_number_settings_reject_bad_values(settings: Any, key: str, bad: Any) -> None:
    config = {key: bad}
    if key == "LONGPOLL_TIMEOUT":
        config["LONGPOLL_MAX_TIMEOUT"] = 55.0
    assert error_for(settings, config) == num_msg(key, bad, NUMBER_KEYS[key])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (["HISTORY_BACKEND"], "settings.RTDELIVERY must be a dict, got list."),
        ("redis", "settings.RTDELIVERY must be a dict, got str."),
        (
            {"NOPE": 1, "ALSO": 2},
            f"Unknown RTDELIVERY setting(s): 'ALSO', 'NOPE'. Expected some of: {KNOWN}.",
        ),
        (
            {"history_backend": "redis"},
            "Unknown RTDELIVERY setting(s): 'history_backend' (did you mean 'HISTORY_BACKEND'?). "
            f"Expected some of: {KNOWN}.",
        ),
        (
            {"HISTORY_SIEZ": 5},
            "Unknown RTDELIVERY setting(s): 'HISTORY_SIEZ' (did you mean 'HISTORY_SIZE'?). "
            f"Expected some of: {KNOWN}.",
        ),
        (
            {"HISTORY_BACKEND": "sqlite"},
            "RTDELIVERY['HISTORY_BACKEND'] must be one of ['memory', 'redis'], got 'sqlite'.",
        ),
        (
            {"HISTORY_BACKEND": None},
            "RTDELIVERY['HISTORY_BACKEND'] must be one of ['memory', 'redis'], got None.",
        ),
        (
            {"REDIS_URL": 6379},
            "RTDELIVERY['REDIS_URL'] must be a redis:// URL string or None, got 6379.",
        ),
        ({"REDIS_OPTIONS": [("a", 1)]}, "RTDELIVERY['REDIS_OPTIONS'] must be a dict, got list."),
        ({"REDIS_OPTIONS": None}, "RTDELIVERY['REDIS_OPTIONS'] must be a dict, got NoneType."),
        ({"KEY_PREFIX": None}, "RTDELIVERY['KEY_PREFIX'] must be a string, got None."),
        ({"KEY_PREFIX": b"x:"}, "RTDELIVERY['KEY_PREFIX'] must be a string, got b'x:'."),
        ({"CHANNEL_LAYER": 1}, "RTDELIVERY['CHANNEL_LAYER'] must be a string, got 1."),
        ({"TOPICS": []}, "RTDELIVERY['TOPICS'] must be a dict of pattern -> options, got list."),
        (
            {"TOPICS": "chat.*"},
            "RTDELIVERY['TOPICS'] must be a dict of pattern -> options, got str.",
        ),
        (
            {"LONGPOLL_TIMEOUT": 60, "LONGPOLL_MAX_TIMEOUT": 55},
            "RTDELIVERY['LONGPOLL_TIMEOUT'] (60.0) must not exceed "
            "RTDELIVERY['LONGPOLL_MAX_TIMEOUT'] (55.0).",
        ),
        (
            {"LONGPOLL_MAX_TIMEOUT": 10},
            "RTDELIVERY['LONGPOLL_TIMEOUT'] (25.0) must not exceed "
            "RTDELIVERY['LONGPOLL_MAX_TIMEOUT'] (10.0).",
        ),
        (
            {"SSE_HEARTBEAT": 0},
            "RTDELIVERY['SSE_HEARTBEAT'] must be a number > 0 (seconds), got 0.",
        ),
        (
            {"HISTORY_BACKEND": "redis"},
            "RTDELIVERY['HISTORY_BACKEND'] is 'redis' but RTDELIVERY['REDIS_URL'] is not set. "
            "Set REDIS_URL, e.g. 'redis://127.0.0.1:6379/0'.",
        ),
        (
            {"HISTORY_BACKEND": "redis", "REDIS_URL": "http://u:hunter2@h:6379"},
            "RTDELIVERY['REDIS_URL'] must be a URL with the scheme redis://, rediss://, unix://, "
            "got 'http://u:***@h:6379'. E.g. 'redis://127.0.0.1:6379/0', 'rediss://host:6380/0' "
            "(TLS) or 'unix:///run/redis.sock'.",
        ),
    ],
)
def test_bad_values_give_clear_messages(settings: Any, config: Any, message: str) -> None:
    assert error_for(settings, config) == message


ORIGINS_MSG = (
    "RTDELIVERY['ALLOWED_ORIGINS'] must be None or a list of origins like "
    "'https://example.com' (or '*'), got {!r}."
)
TOKENS_MSG = (
    "RTDELIVERY['PUBLISH_TOKENS'] must be a list of secret strings of at least 16 characters"
)


@pytest.mark.parametrize("bad", ["https://a.example", 5, [1], ["https://a", None], {"a": 1}])
def test_allowed_origins_must_be_a_list_of_strings(settings: Any, bad: Any) -> None:
    assert error_for(settings, {"ALLOWED_ORIGINS": bad}) == ORIGINS_MSG.format(bad)


@pytest.mark.parametrize(
    ("bad", "got"),
    [
        (TOKEN, "got str."),
        (None, "got NoneType."),
        (5, "got int."),
        (["short"], "got a string of 5 characters at index 0."),
        ([TOKEN, "tiny-secret"], "got a string of 11 characters at index 1."),
        ([TOKEN, 7], "got int at index 1."),
    ],
)
def test_publish_tokens_must_be_long_secret_strings(settings: Any, bad: Any, got: str) -> None:
    message = error_for(settings, {"PUBLISH_TOKENS": bad})
    assert message == f"{TOKENS_MSG}, {got}"
    assert "tiny-secret" not in message  # never echo secrets
    assert TOKEN not in message


T = "RTDELIVERY['TOPICS']"


@pytest.mark.parametrize(
    ("topics", "problems"),
    [
        ({"": {}}, [f"{T} keys must be non-empty pattern strings, got ''."]),
        ({1: {}}, [f"{T} keys must be non-empty pattern strings, got 1."]),
        ({"chat.*": []}, [f"{T}['chat.*'] must be a dict of options, got list."]),
        ({"chat.*": None}, [f"{T}['chat.*'] must be a dict of options, got NoneType."]),
        (
            {"": None},
            [
                f"{T} keys must be non-empty pattern strings, got ''.",
                f"{T}[''] must be a dict of options, got NoneType.",
            ],
        ),
        (
            {"chat.*": {"presense": True, "history": 1}},
            [
                f"{T}['chat.*'] has unknown option(s) ['history', 'presense'] "
                "(did you mean 'history_size'?) (did you mean 'presence'?); "
                f"expected some of {sorted(TOPIC_OPTION_KEYS)}."
            ],
        ),
        (
            {"a": {"history_size": -1}},
            [f"{T}['a']['history_size'] must be an integer >= 0, got -1."],
        ),
        (
            {"a": {"history_max_age": "1h"}},
            [f"{T}['a']['history_max_age'] must be an integer >= 0, got '1h'."],
        ),
        (
            {"a": {"history_size": True, "history_max_age": 1.5}},
            [
                f"{T}['a']['history_size'] must be an integer >= 0, got True.",
                f"{T}['a']['history_max_age'] must be an integer >= 0, got 1.5.",
            ],
        ),
        ({"a": {"presence": "yes"}}, [f"{T}['a']['presence'] must be True or False, got 'yes'."]),
        (
            {"a": {"client_publish": 1}},
            [f"{T}['a']['client_publish'] must be True or False, got 1."],
        ),
        (
            {"a": {"subscribe": "authenticted"}},
            [
                f"{T}['a']['subscribe']: unknown rule 'authenticted' (did you mean "
                "'authenticated'?); expected one of anyone, authenticated, staff, owner, nobody "
                "or a dotted path to a callable."
            ],
        ),
        (
            {"a": {"publish": "no_such_module_xyz.hook"}},
            [
                f"{T}['a']['publish']: cannot import rule 'no_such_module_xyz.hook': "
                "No module named 'no_such_module_xyz'."
            ],
        ),
    ],
)
def test_bad_topics_entries_are_reported(
    settings: Any, topics: dict[Any, Any], problems: list[str]
) -> None:
    assert error_for(settings, {"TOPICS": topics}) == "\n".join(problems)


# -- one validation path -----------------------------------------------------------------------------


def test_validate_lists_every_problem_with_its_check_id() -> None:
    problems = validate(
        {
            "NOPE": 1,
            "QUEUE_SIZE": 0,
            "HISTORY_BACKEND": "redis",
            "TOPICS": {"chat.*": {"presence": "yes"}},
        }
    )
    assert problems == [
        Problem(
            "rtdelivery.E001",
            "Unknown RTDELIVERY setting(s): 'NOPE'.",
            f"Expected some of: {KNOWN}.",
        ),
        Problem("rtdelivery.E002", "RTDELIVERY['QUEUE_SIZE'] must be an integer >= 1, got 0."),
        Problem(
            "rtdelivery.E004",
            "RTDELIVERY['HISTORY_BACKEND'] is 'redis' but RTDELIVERY['REDIS_URL'] is not set.",
            "Set REDIS_URL, e.g. 'redis://127.0.0.1:6379/0'.",
        ),
        Problem(
            "rtdelivery.E003",
            "RTDELIVERY['TOPICS']['chat.*']['presence'] must be True or False, got 'yes'.",
        ),
    ]


def test_get_settings_raises_every_problem_validate_finds(settings: Any) -> None:
    config = {"NOPE": 1, "QUEUE_SIZE": 0, "TOPICS": {"chat.*": {"presence": "yes"}}}
    message = error_for(settings, config)
    assert message == "\n".join(str(p) for p in validate(config))
    assert message.count("\n") == 2


@pytest.mark.parametrize("config", [None, {}, EXPECTED_DEFAULTS, {"TOPICS": {"*": {}}}])
def test_valid_settings_have_no_problems(config: Any) -> None:
    assert validate(config) == []


def test_policy_hooks_are_imported_when_settings_load(settings: Any) -> None:
    conf = build(settings, {"TOPICS": {"a": {"subscribe": ["staff", "tests.test_conf.hook"]}}})
    assert conf.topic_options("a").subscribe == ["staff", "tests.test_conf.hook"]
    message = error_for(settings, {"TOPICS": {"a": {"subscribe": "tests.test_conf.NOT_A_HOOK"}}})
    assert message == (
        "RTDELIVERY['TOPICS']['a']['subscribe']: rule 'tests.test_conf.NOT_A_HOOK' must be a "
        "callable (user, topic, action) -> bool, got 3."
    )


def hook(user: Any, topic: str, action: str) -> bool:
    return True


NOT_A_HOOK = 3


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@h:6379/0", "redis://:***@h:6379/0"),
        ("rediss://user:hunter2@h:6380/1", "rediss://user:***@h:6380/1"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("redis://:notaport", "redis://:notaport"),
    ],
)
def test_redact_url_hides_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# -- topic options ---------------------------------------------------------------------------------


def test_topic_options_default_without_topics(settings: Any) -> None:
    conf = build(settings, {"HISTORY_SIZE": 10, "HISTORY_MAX_AGE": 60})
    assert conf.topic_options("anything") == TopicOptions(
        pattern=None,
        history_size=10,
        history_max_age=60,
        subscribe=None,
        publish=None,
        presence=False,
        client_publish=True,
    )


def test_first_matching_pattern_wins(settings: Any) -> None:
    conf = build(
        settings,
        {
            "HISTORY_SIZE": 10,
            "TOPICS": {
                "chat.*": {"history_size": 100, "presence": True, "subscribe": "authenticated"},
                "chat.lobby": {"history_size": 5, "presence": False},
                "*": {"history_max_age": 30, "client_publish": False, "publish": "staff"},
            },
        },
    )
    lobby = conf.topic_options("chat.lobby")
    assert lobby.pattern == "chat.*"
    assert lobby.history_size == 100
    assert lobby.presence is True
    assert lobby.subscribe == "authenticated"
    # Options a pattern doesn't set fall back to the global settings, not to later patterns.
    assert lobby.history_max_age == DEFAULTS["HISTORY_MAX_AGE"]
    assert lobby.client_publish is True
    assert lobby.publish is None

    feed = conf.topic_options("feed")
    assert feed == TopicOptions(
        pattern="*",
        history_size=10,
        history_max_age=30,
        subscribe=None,
        publish="staff",
        presence=False,
        client_publish=False,
    )


@pytest.mark.parametrize(
    ("pattern", "topic", "matches"),
    [
        ("chat.*", "chat.lobby", True),
        ("chat.*", "chat.a.b", True),  # "*" crosses dots
        ("chat.*", "chat", False),
        ("chat.*", "Chat.lobby", False),  # case-sensitive on every platform
        ("chat.?", "chat.a", True),
        ("chat.?", "chat.ab", False),
        ("user.[0-9]*", "user.42", True),
        ("user.[0-9]*", "user.x", False),
        ("user.[!0-9]*", "user.x", True),
        ("feed", "feed", True),
        ("feed", "feeds", False),
        ("*", "x", True),
    ],
)
def test_patterns_are_fnmatch_style(settings: Any, pattern: str, topic: str, matches: bool) -> None:
    conf = build(settings, {"TOPICS": {pattern: {"history_size": 7}}})
    options = conf.topic_options(topic)
    assert (options.pattern == pattern) is matches
    assert options.history_size == (7 if matches else DEFAULTS["HISTORY_SIZE"])


def test_topic_options_follow_settings_changes(settings: Any) -> None:
    first = build(settings, {"TOPICS": {"chat.*": {"history_size": 1}}})
    assert first.topic_options("chat.x").history_size == 1
    second = build(settings, {"TOPICS": {"chat.*": {"history_size": 2}}})
    assert second.topic_options("chat.x").history_size == 2
    assert get_settings().topic_options("chat.x").history_size == 2


def test_topic_options_are_immutable(settings: Any) -> None:
    options = build(settings, {}).topic_options("t")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.history_size = 1  # type: ignore[misc]


# -- caching -----------------------------------------------------------------------------------------


def test_settings_are_cached(settings: Any) -> None:
    settings.RTDELIVERY = {"QUEUE_SIZE": 7}
    assert get_settings() is get_settings()


def test_cache_is_cleared_when_rtdelivery_changes(settings: Any) -> None:
    before = build(settings, {"QUEUE_SIZE": 7})
    settings.RTDELIVERY = {"QUEUE_SIZE": 8}
    after = get_settings()
    assert after is not before
    assert after.queue_size == 8


def test_cache_is_cleared_when_secret_key_changes(settings: Any) -> None:
    settings.SECRET_KEY = "first-secret"
    first = get_settings()
    assert first.cursor_key == hashlib.sha256(b"rtdelivery.cursor:first-secret").digest()
    text = Cursor({"t": Position(1, 2)}).encode(first.cursor_key)
    settings.SECRET_KEY = "second-secret"
    second = get_settings()
    assert second is not first
    assert second.cursor_key == hashlib.sha256(b"rtdelivery.cursor:second-secret").digest()
    with pytest.raises(InvalidCursor):
        Cursor.decode(text, second.cursor_key)


def test_cache_is_cleared_when_channel_layers_change(settings: Any) -> None:
    before = get_settings()
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    assert get_settings() is not before


def test_unrelated_settings_keep_the_cache(settings: Any) -> None:
    before = get_settings()
    settings.DEBUG = not settings.DEBUG
    assert get_settings() is before


def test_a_failed_build_is_not_cached(settings: Any) -> None:
    settings.RTDELIVERY = {"QUEUE_SIZE": 0}
    with pytest.raises(ImproperlyConfigured):
        get_settings()
    settings.RTDELIVERY = {"QUEUE_SIZE": 3}
    assert get_settings().queue_size == 3


def test_cursor_key_is_derived_and_hidden(settings: Any) -> None:
    settings.SECRET_KEY = "k"
    conf = get_settings()
    assert len(conf.cursor_key) == 32
    assert conf.cursor_key != b"k"
    assert "cursor_key" not in repr(conf)
    with pytest.raises(dataclasses.FrozenInstanceError):
        conf.queue_size = 1  # type: ignore[misc]


# -- nothing is read at import time -------------------------------------------------------------------

IMPORT_SCRIPT = textwrap.dedent(
    """
    import sys
    import warnings

    warnings.simplefilter("error")

    import rtdelivery
    import rtdelivery.checks
    import rtdelivery.conf
    import rtdelivery.core.cursors
    import rtdelivery.core.errors
    import rtdelivery.core.events
    import rtdelivery.core.sse
    import rtdelivery.core.topics
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    assert not settings.configured, "importing rtdelivery configured Django settings"
    loaded = sorted(m for m in ("channels", "redis", "daphne") if m in sys.modules)
    assert not loaded, f"importing rtdelivery loaded {loaded}"
    try:
        rtdelivery.conf.get_settings()
    except ImproperlyConfigured:
        pass
    else:
        raise AssertionError("get_settings() worked without settings")
    # Configured afterwards, it reads the settings then (a failed call is not cached).
    settings.configure(RTDELIVERY={"QUEUE_SIZE": 5}, SECRET_KEY="x")
    assert rtdelivery.conf.get_settings().queue_size == 5
    print("ok")
    """
)


def test_importing_reads_no_settings() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_SCRIPT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
