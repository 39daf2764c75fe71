"""Who may subscribe to and publish on which topic: deny by default.

Rules come from ``RTDELIVERY["TOPICS"][pattern]["subscribe"|"publish"]`` (the first
pattern matching the topic wins). A rule is one of the names below, a dotted path
to a callable ``(user, topic, action) -> bool`` (sync or async), or a list of rules
of which any may allow. No matching pattern, or no rule for the action: denied.
Every transport calls :func:`authorize`, so the decision (and its message) is the
same everywhere.

``user`` is a user object or an async callable returning one (the HTTP transports pass
``Request.user``): it is only awaited when a rule needs it ("anyone" and "nobody" don't),
so credentials (a connection token, a session) are only checked where they matter. A user
authenticated by a connection token limited to some topics is anonymous on any other
topic; a refusal there says so with the code ``token_topics``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils.module_loading import import_string

from .authentication import anonymous, check_refused
from .conf import get_settings
from .conf_validation import BUILTIN_RULES
from .conf_validation import validate_rule as validate_rule  # re-exported
from .core.errors import Forbidden
from .tokens import token_claims

SUBSCRIBE = "subscribe"
PUBLISH = "publish"

#: Built-in rules (their names, and the validation of rules: rtdelivery.conf_validation).
ANYONE, AUTHENTICATED, STAFF, OWNER, NOBODY = BUILTIN_RULES
#: Rules that decide without looking at the user.
USERLESS_RULES = frozenset({ANYONE, NOBODY})


def is_owner(user: Any, topic: str) -> bool:
    """True when the topic's last dot-separated part is the user's primary key
    (``user.42``, ``notifications.42``)."""
    if not getattr(user, "is_authenticated", False):
        return False
    return topic.rsplit(".", 1)[-1] == str(user.pk)


def rule_needs_user(rule: Any) -> bool:
    """Whether ``rule`` looks at who the client is ("authenticated", "staff", "owner",
    a hook): without sessions and auth such a rule only ever sees anonymous clients."""
    if rule is None:
        return False
    if isinstance(rule, list | tuple):
        return any(rule_needs_user(item) for item in rule)
    return rule not in USERLESS_RULES


@functools.lru_cache(maxsize=128)
def _hook(path: str) -> Callable[..., Any]:
    hook: Callable[..., Any] = import_string(path)
    return hook


class _Who:
    """The client of one decision: resolved (loaded) at most once, and only if a rule
    needs it; anonymous on topics its connection token does not cover."""

    __slots__ = ("limited", "source", "user")

    def __init__(self, source: Any) -> None:
        self.source = source
        self.user: Any = _UNRESOLVED
        #: Whether a token's topic limits made the client anonymous for this topic.
        self.limited = False

    async def get(self, topic: str) -> Any:
        if self.user is _UNRESOLVED:
            user = self.source
            if inspect.iscoroutinefunction(user):
                user = await user()
            self.user = check_refused(user)
        claims = token_claims(self.user)
        if claims is not None and not claims.allows(topic):
            self.limited = True
            return anonymous()
        return self.user


_UNRESOLVED = object()


def effective_user(user: Any, topic: str) -> Any:
    """``user`` as ``topic`` sees it: anonymous when a connection token that does not cover
    the topic identified it (presence must not name a user the policy would not)."""
    claims = token_claims(user)
    if claims is not None and not claims.allows(topic):
        return anonymous()
    return user


async def _allows(rule: Any, who: _Who, topic: str, action: str) -> bool:
    if rule is None or rule == NOBODY:
        return False
    if isinstance(rule, list | tuple):
        for item in rule:
            if await _allows(item, who, topic, action):
                return True
        return False
    if rule == ANYONE:
        return True
    user = await who.get(topic)
    if rule == AUTHENTICATED:
        return bool(getattr(user, "is_authenticated", False))
    if rule == STAFF:
        return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_staff", False))
    if rule == OWNER:
        return is_owner(user, topic)
    hook = _hook(rule)
    if inspect.iscoroutinefunction(hook):
        result = await hook(user, topic, action)
    else:
        # Hooks may use the ORM: run them off the event loop.
        result = await sync_to_async(hook)(user, topic, action)
    return bool(result)


async def _decide(who: _Who, topic: str, action: str) -> bool:
    options = get_settings().topic_options(topic)
    rule = options.subscribe if action == SUBSCRIBE else options.publish
    return await _allows(rule, who, topic, action)


async def allowed(user: Any, topic: str, action: str) -> bool:
    """Whether ``user`` may ``action`` ("subscribe" or "publish") on ``topic``.

    Refused credentials (an expired token, …) raise their ``Unauthorized`` error when a
    rule needs the user."""
    return await _decide(_Who(user), topic, action)


async def authorize(user: Any, topic: str, action: str) -> None:
    """Raise :class:`Forbidden` unless ``user`` may ``action`` on ``topic``
    (``Unauthorized`` when a rule needs the user and its credentials are refused)."""
    who = _Who(user)
    if not await _decide(who, topic, action):
        if who.limited:
            raise Forbidden(
                f"Not allowed to {action} on topic {topic!r}: the connection token is "
                "limited to other topics.",
                code="token_topics",
                topic=topic,
            )
        raise Forbidden(denial_message(topic, action), topic=topic)


def denial_message(topic: str, action: str) -> str:
    """Why ``action`` on ``topic`` was refused.

    A topic no pattern matches says so (the usual first-hour mistake: no or a misspelt
    ``TOPICS``) and a refusal names the pattern and rule that refused, when ``DEBUG``
    is on. Without ``DEBUG`` every refusal reads alike, so clients cannot map the
    configuration by probing topics (an empty ``TOPICS`` is check W005).
    """
    if not settings.DEBUG:
        return f"Not allowed to {action} on topic {topic!r}."
    options = get_settings().topic_options(topic)
    if options.pattern is None:
        return (
            f"No RTDELIVERY['TOPICS'] pattern matches topic {topic!r}; every topic is "
            "denied unless a pattern allows it."
        )
    rule = options.subscribe if action == SUBSCRIBE else options.publish
    if rule is None:
        return (
            f"Not allowed to {action} on topic {topic!r}: RTDELIVERY['TOPICS']"
            f"[{options.pattern!r}] has no {action!r} rule, so nobody may {action}."
        )
    return (
        f"Not allowed to {action} on topic {topic!r}: RTDELIVERY['TOPICS']"
        f"[{options.pattern!r}][{action!r}] is {rule!r}."
    )


async def authorize_client_publish(user: Any, topic: str) -> None:
    """Publishing from a browser/client: the topic must allow client publishes too."""
    if not get_settings().topic_options(topic).client_publish:
        raise Forbidden(f"Clients may not publish on topic {topic!r}.", topic=topic)
    await authorize(user, topic, PUBLISH)
