"""Unit tests of rtdelivery.policy: rules, pattern order, deny by default, hooks."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser

from rtdelivery import policy
from rtdelivery.core.errors import Forbidden

ANON = AnonymousUser()
ALICE = SimpleNamespace(pk=42, is_authenticated=True, is_staff=False)
BOB = SimpleNamespace(pk=7, is_authenticated=True, is_staff=False)
STAFF = SimpleNamespace(pk=1, is_authenticated=True, is_staff=True)
#: A staff flag without authentication never counts.
FAKE_STAFF = SimpleNamespace(pk=None, is_authenticated=False, is_staff=True)

#: Calls to the hooks below: (hook, user, topic, action).
CALLS: list[tuple[str, Any, str, str]] = []


def sync_hook(user: Any, topic: str, action: str) -> bool:
    CALLS.append(("sync", user, topic, action))
    return topic.endswith(".open")


async def async_hook(user: Any, topic: str, action: str) -> bool:
    CALLS.append(("async", user, topic, action))
    return getattr(user, "pk", None) == 7


def truthy_hook(user: Any, topic: str, action: str) -> str:
    return "yes"


NOT_CALLABLE = 3


@pytest.fixture
def topics(settings: Any) -> Callable[[dict[str, Any]], None]:
    CALLS.clear()

    def configure(config: dict[str, Any]) -> None:
        settings.RTDELIVERY = {"HISTORY_BACKEND": "memory", "TOPICS": config}

    return configure


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("anyone", {"anon": True, "alice": True, "bob": True, "staff": True}),
        ("authenticated", {"anon": False, "alice": True, "bob": True, "staff": True}),
        ("staff", {"anon": False, "alice": False, "bob": False, "staff": True}),
        ("owner", {"anon": False, "alice": True, "bob": False, "staff": False}),
        ("nobody", {"anon": False, "alice": False, "bob": False, "staff": False}),
        (["owner", "staff"], {"anon": False, "alice": True, "bob": False, "staff": True}),
        (("nobody", "authenticated"), {"anon": False, "alice": True, "bob": True, "staff": True}),
        ([], {"anon": False, "alice": False, "bob": False, "staff": False}),
        (None, {"anon": False, "alice": False, "bob": False, "staff": False}),
    ],
)
@pytest.mark.parametrize("action", [policy.SUBSCRIBE, policy.PUBLISH])
async def test_builtin_rules(
    topics: Callable[[dict[str, Any]], None], rule: Any, expected: dict[str, bool], action: str
) -> None:
    topics({"user.*": {action: rule}})
    users = {"anon": ANON, "alice": ALICE, "bob": BOB, "staff": STAFF}
    got = {name: await policy.allowed(user, "user.42", action) for name, user in users.items()}
    assert got == expected
    # The rule of the other action is absent: denied for everyone.
    other = policy.PUBLISH if action == policy.SUBSCRIBE else policy.SUBSCRIBE
    assert not any([await policy.allowed(u, "user.42", other) for u in users.values()])


async def test_staff_needs_authentication(topics: Callable[[dict[str, Any]], None]) -> None:
    topics({"t.*": {"subscribe": "staff"}})
    assert not await policy.allowed(FAKE_STAFF, "t.x", policy.SUBSCRIBE)
    assert not await policy.allowed(None, "t.x", policy.SUBSCRIBE)


def test_is_owner() -> None:
    assert policy.is_owner(ALICE, "user.42")
    assert policy.is_owner(ALICE, "notifications.42")
    assert policy.is_owner(ALICE, "42")
    assert not policy.is_owner(ALICE, "user.420")
    assert not policy.is_owner(ALICE, "user.42.x")
    assert not policy.is_owner(BOB, "user.42")
    assert not policy.is_owner(ANON, "user.None")
    assert not policy.is_owner(None, "user.42")


async def test_first_matching_pattern_wins(topics: Callable[[dict[str, Any]], None]) -> None:
    topics(
        {
            "chat.secret": {"subscribe": "nobody"},
            "chat.*": {"subscribe": "anyone"},
            "chat.secret2": {"subscribe": "anyone"},
            "*": {"subscribe": "staff"},
        }
    )
    assert not await policy.allowed(STAFF, "chat.secret", policy.SUBSCRIBE)
    assert await policy.allowed(ANON, "chat.lobby", policy.SUBSCRIBE)
    assert await policy.allowed(ANON, "chat.secret2", policy.SUBSCRIBE)
    assert not await policy.allowed(ANON, "feed", policy.SUBSCRIBE)
    assert await policy.allowed(STAFF, "feed", policy.SUBSCRIBE)


async def test_patterns_are_case_sensitive_fnmatch(
    topics: Callable[[dict[str, Any]], None],
) -> None:
    topics({"chat.?": {"subscribe": "anyone"}})
    assert await policy.allowed(ANON, "chat.a", policy.SUBSCRIBE)
    assert not await policy.allowed(ANON, "chat.ab", policy.SUBSCRIBE)
    assert not await policy.allowed(ANON, "Chat.a", policy.SUBSCRIBE)


@pytest.mark.parametrize("config", [{}, {"other.*": {"subscribe": "anyone"}}])
async def test_no_matching_pattern_is_denied(
    topics: Callable[[dict[str, Any]], None], config: dict[str, Any]
) -> None:
    topics(config)
    for user in (ANON, ALICE, STAFF):
        for action in (policy.SUBSCRIBE, policy.PUBLISH):
            assert not await policy.allowed(user, "feed", action)
            with pytest.raises(Forbidden) as info:
                await policy.authorize(user, "feed", action)
            assert info.value.code == "forbidden"
            assert info.value.status == 403
            assert action in info.value.message


async def test_sync_hook(topics: Callable[[dict[str, Any]], None]) -> None:
    topics({"room.*": {"subscribe": "tests.test_policy.sync_hook"}})
    assert await policy.allowed(ALICE, "room.open", policy.SUBSCRIBE)
    assert not await policy.allowed(ALICE, "room.closed", policy.SUBSCRIBE)
    assert CALLS == [
        ("sync", ALICE, "room.open", "subscribe"),
        ("sync", ALICE, "room.closed", "subscribe"),
    ]


async def test_async_hook(topics: Callable[[dict[str, Any]], None]) -> None:
    topics({"room.*": {"publish": "tests.test_policy.async_hook"}})
    assert await policy.allowed(BOB, "room.x", policy.PUBLISH)
    assert not await policy.allowed(ALICE, "room.x", policy.PUBLISH)
    assert CALLS == [("async", BOB, "room.x", "publish"), ("async", ALICE, "room.x", "publish")]


async def test_hook_result_is_truthiness(topics: Callable[[dict[str, Any]], None]) -> None:
    topics({"room.*": {"subscribe": "tests.test_policy.truthy_hook"}})
    assert await policy.allowed(ANON, "room.x", policy.SUBSCRIBE) is True


async def test_list_mixes_builtins_and_hooks(topics: Callable[[dict[str, Any]], None]) -> None:
    topics({"room.*": {"subscribe": ["staff", "tests.test_policy.async_hook"]}})
    assert await policy.allowed(STAFF, "room.x", policy.SUBSCRIBE)
    assert CALLS == []  # "staff" already allowed: the hook is not called
    assert await policy.allowed(BOB, "room.x", policy.SUBSCRIBE)
    assert not await policy.allowed(ALICE, "room.x", policy.SUBSCRIBE)


async def test_lazy_user_loaded_only_when_a_rule_needs_it(
    topics: Callable[[dict[str, Any]], None],
) -> None:
    loads = []

    async def load_user() -> Any:
        loads.append(1)
        return ALICE

    topics(
        {
            "public.*": {"subscribe": "anyone"},
            "closed.*": {"subscribe": "nobody"},
            "user.*": {"subscribe": "owner"},
            "hook.*": {"subscribe": "tests.test_policy.async_hook"},
        }
    )
    assert await policy.allowed(load_user, "public.x", policy.SUBSCRIBE)
    assert not await policy.allowed(load_user, "closed.x", policy.SUBSCRIBE)
    assert loads == []
    assert await policy.allowed(load_user, "user.42", policy.SUBSCRIBE)
    assert loads == [1]
    assert not await policy.allowed(load_user, "hook.x", policy.SUBSCRIBE)
    assert CALLS == [("async", ALICE, "hook.x", "subscribe")]  # hooks get the real user


async def test_client_publish_false(topics: Callable[[dict[str, Any]], None]) -> None:
    topics(
        {
            "server.*": {"subscribe": "anyone", "publish": "anyone", "client_publish": False},
            "chat.*": {"publish": "authenticated"},
        }
    )
    # The policy itself allows it (server-side publishes are not checked against it) ...
    assert await policy.allowed(STAFF, "server.x", policy.PUBLISH)
    # ... but clients may not publish there, whoever they are.
    for user in (ANON, ALICE, STAFF):
        with pytest.raises(Forbidden, match="Clients may not publish"):
            await policy.authorize_client_publish(user, "server.x")
    await policy.authorize_client_publish(ALICE, "chat.x")
    with pytest.raises(Forbidden):
        await policy.authorize_client_publish(ANON, "chat.x")


@pytest.mark.parametrize(
    "rule",
    [
        None,
        "anyone",
        "authenticated",
        "staff",
        "owner",
        "nobody",
        ["owner", "staff"],
        ("staff",),
        [],
        "tests.test_policy.sync_hook",
        "tests.test_policy.async_hook",
        ["staff", "tests.test_policy.async_hook"],
    ],
)
def test_validate_rule_accepts(rule: Any) -> None:
    assert policy.validate_rule(rule) is None


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("everyone", "unknown rule 'everyone'; expected one of anyone, authenticated, staff, "),
        (3, "a rule must be a string or a list of strings, got 3"),
        ({"staff": True}, "a rule must be a string or a list of strings"),
        (["staff", 3], "a rule must be a string or a list of strings, got 3"),
        (["staff", "admins"], "unknown rule 'admins'"),
        ("tests.test_policy.missing_hook", "cannot import rule 'tests.test_policy.missing_hook'"),
        ("no_such_module_xyz.hook", "cannot import rule 'no_such_module_xyz.hook'"),
        (
            "tests.test_policy.NOT_CALLABLE",
            "rule 'tests.test_policy.NOT_CALLABLE' must be a callable (user, topic, action) -> "
            "bool, got 3",
        ),
    ],
)
def test_validate_rule_messages(rule: Any, message: str) -> None:
    problem = policy.validate_rule(rule)
    assert problem is not None
    assert message in problem


# -- what a refusal says ------------------------------------------------------------------------------

NO_PATTERN = (
    "No RTDELIVERY['TOPICS'] pattern matches topic 'feed'; every topic is denied unless a "
    "pattern allows it."
)


async def refusal(user: Any, topic: str, action: str) -> str:
    with pytest.raises(Forbidden) as info:
        await policy.authorize(user, topic, action)
    assert (info.value.code, info.value.status) == ("forbidden", 403)
    return str(info.value.message)


@pytest.mark.parametrize("config", [{}, {"other.*": {"subscribe": "anyone"}}])
@pytest.mark.parametrize("action", [policy.SUBSCRIBE, policy.PUBLISH])
async def test_debug_refusal_says_no_pattern_matches(
    settings: Any, topics: Callable[[dict[str, Any]], None], config: Any, action: str
) -> None:
    settings.DEBUG = True
    topics(config)
    assert await refusal(STAFF, "feed", action) == NO_PATTERN


async def test_debug_refusal_without_rtdelivery_setting(settings: Any) -> None:
    settings.DEBUG = True
    del settings.RTDELIVERY
    assert await refusal(ANON, "feed", policy.SUBSCRIBE) == NO_PATTERN


async def test_debug_refusal_names_the_pattern_and_rule(
    settings: Any, topics: Callable[[dict[str, Any]], None]
) -> None:
    settings.DEBUG = True
    topics({"chat.*": {"subscribe": "authenticated"}, "feed": {"subscribe": ["staff", "owner"]}})
    assert await refusal(ANON, "chat.x", policy.SUBSCRIBE) == (
        "Not allowed to subscribe on topic 'chat.x': RTDELIVERY['TOPICS']['chat.*']"
        "['subscribe'] is 'authenticated'."
    )
    assert await refusal(ALICE, "feed", policy.SUBSCRIBE) == (
        "Not allowed to subscribe on topic 'feed': RTDELIVERY['TOPICS']['feed']['subscribe'] "
        "is ['staff', 'owner']."
    )
    assert await refusal(STAFF, "chat.x", policy.PUBLISH) == (
        "Not allowed to publish on topic 'chat.x': RTDELIVERY['TOPICS']['chat.*'] has no "
        "'publish' rule, so nobody may publish."
    )


@pytest.mark.parametrize(
    ("config", "topic"),
    [
        ({}, "feed"),  # no pattern matches
        ({"feed": {"subscribe": "staff"}}, "feed"),  # the rule refuses
        ({"feed": {"publish": "anyone"}}, "feed"),  # no rule for the action
    ],
)
async def test_refusal_without_debug_is_generic(
    settings: Any, topics: Callable[[dict[str, Any]], None], config: Any, topic: str
) -> None:
    # Refusals read alike, so clients cannot map the configuration by probing topics.
    settings.DEBUG = False
    topics(config)
    assert await refusal(ALICE, topic, policy.SUBSCRIBE) == (
        f"Not allowed to subscribe on topic {topic!r}."
    )


async def test_allowed_topics_are_not_refused_in_debug(
    settings: Any, topics: Callable[[dict[str, Any]], None]
) -> None:
    settings.DEBUG = True
    topics({"feed": {"subscribe": "anyone"}})
    await policy.authorize(ANON, "feed", policy.SUBSCRIBE)


@pytest.mark.parametrize(
    ("rule", "needs"),
    [
        (None, False),
        ("anyone", False),
        ("nobody", False),
        ([], False),
        (["anyone", "nobody"], False),
        ("authenticated", True),
        ("staff", True),
        ("owner", True),
        ("tests.test_policy.sync_hook", True),
        (["anyone", "staff"], True),
        (("nobody", "tests.test_policy.async_hook"), True),
    ],
)
def test_rule_needs_user(rule: Any, needs: bool) -> None:
    assert policy.rule_needs_user(rule) is needs
