"""Who may subscribe to and publish on which topic: deny by default.

Rules come from ``RTDELIVERY["TOPICS"][pattern]["subscribe"|"publish"]`` (the first
pattern matching the topic wins). A rule is one of the names below, a dotted path
to a callable ``(user, topic, action) -> bool`` (sync or async), or a list of rules
of which any may allow. No matching pattern, or no rule for the action: denied.
Every transport calls :func:`authorize`, so the decision is the same everywhere.

``user`` is a user object or an async callable returning one (the HTTP transports pass
``Request.user``): it is only awaited when a rule needs it ("anyone" and "nobody" don't).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.utils.module_loading import import_string

from .conf import get_settings
from .core.errors import Forbidden

SUBSCRIBE = "subscribe"
PUBLISH = "publish"

#: Built-in rules.
ANYONE = "anyone"
AUTHENTICATED = "authenticated"
STAFF = "staff"
OWNER = "owner"
NOBODY = "nobody"
BUILTIN_RULES = (ANYONE, AUTHENTICATED, STAFF, OWNER, NOBODY)


def is_owner(user: Any, topic: str) -> bool:
    """True when the topic's last dot-separated part is the user's primary key
    (``user.42``, ``notifications.42``)."""
    if not getattr(user, "is_authenticated", False):
        return False
    return topic.rsplit(".", 1)[-1] == str(user.pk)


def validate_rule(rule: Any) -> str | None:
    """A problem with ``rule``, or None when it is valid (used by the system checks)."""
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
        return f"unknown rule {rule!r}; expected one of {', '.join(BUILTIN_RULES)} or a dotted path"
    try:
        hook = import_string(rule)
    except ImportError as exc:
        return f"cannot import rule {rule!r}: {exc}"
    if not callable(hook):
        return f"rule {rule!r} is not callable"
    return None


@functools.lru_cache(maxsize=128)
def _hook(path: str) -> Callable[..., Any]:
    hook: Callable[..., Any] = import_string(path)
    return hook


async def _resolve(user: Any) -> Any:
    """The user itself, or what a lazy loader (an async callable) returns."""
    if inspect.iscoroutinefunction(user):
        return await user()
    return user


async def _allows(rule: Any, user: Any, topic: str, action: str) -> bool:
    if rule is None or rule == NOBODY:
        return False
    if isinstance(rule, list | tuple):
        for item in rule:
            if await _allows(item, user, topic, action):
                return True
        return False
    if rule == ANYONE:
        return True
    user = await _resolve(user)
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


async def allowed(user: Any, topic: str, action: str) -> bool:
    """Whether ``user`` may ``action`` ("subscribe" or "publish") on ``topic``."""
    options = get_settings().topic_options(topic)
    rule = options.subscribe if action == SUBSCRIBE else options.publish
    return await _allows(rule, user, topic, action)


async def authorize(user: Any, topic: str, action: str) -> None:
    """Raise :class:`Forbidden` unless ``user`` may ``action`` on ``topic``."""
    if not await allowed(user, topic, action):
        raise Forbidden(f"Not allowed to {action} on topic {topic!r}.")


async def authorize_client_publish(user: Any, topic: str) -> None:
    """Publishing from a browser/client: the topic must allow client publishes too."""
    if not get_settings().topic_options(topic).client_publish:
        raise Forbidden(f"Clients may not publish on topic {topic!r}.")
    await authorize(user, topic, PUBLISH)
