"""System checks rtdelivery.W010: the bridge's URLs are mounted but ``send_event`` does not
publish through rtdelivery, and W011: the URLconf could not be loaded to tell
(docs/checks.md)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning  # noqa: A004 - Django's name

STORAGE = "rtdelivery.contrib.eventstream.storage.RTDeliveryStorage"
BRIDGE_VIEW = "rtdelivery.contrib.eventstream.views.events"


def _mounted(patterns: Iterable[Any], depth: int = 0) -> bool:
    if depth > 20:
        return False
    for pattern in patterns:
        inner = getattr(pattern, "url_patterns", None)
        if inner is not None:
            if _mounted(inner, depth + 1):
                return True
            continue
        callback = getattr(pattern, "callback", None)
        name = f"{getattr(callback, '__module__', '')}.{getattr(callback, '__name__', '')}"
        if name == BRIDGE_VIEW:
            return True
    return False


def bridge_mounted() -> bool:
    """Whether the project's URLconf includes ``rtdelivery.contrib.eventstream.urls``
    (raises what loading the URLconf raises)."""
    from django.urls import get_resolver

    return _mounted(get_resolver().url_patterns)


def check_eventstream() -> list[CheckMessage]:
    storage = getattr(settings, "EVENTSTREAM_STORAGE_CLASS", None)
    if storage == STORAGE:
        return []
    try:
        mounted = bridge_mounted()
    except Exception as exc:  # any error in the project's URLconf
        # check must not crash on the project's URLconf: say what failed, go on.
        return [
            Warning(
                f"Loading ROOT_URLCONF {getattr(settings, 'ROOT_URLCONF', None)!r} failed "
                f"({type(exc).__name__}: {exc}), so rtdelivery cannot tell whether "
                "rtdelivery.contrib.eventstream.urls is mounted without "
                f"EVENTSTREAM_STORAGE_CLASS = {STORAGE!r} (check W010).",
                hint="Fix the error in the URLconf (the server would fail on it too).",
                id="rtdelivery.W011",
            )
        ]
    if not mounted:
        return []
    return [
        Warning(
            "rtdelivery.contrib.eventstream.urls is mounted but EVENTSTREAM_STORAGE_CLASS is "
            f"{storage!r}: django_eventstream.send_event() does not publish through rtdelivery, "
            "so the bridge's streams never get its events.",
            hint=f"Set EVENTSTREAM_STORAGE_CLASS = {STORAGE!r} "
            "(docs/migrating-from-django-eventstream.md).",
            id="rtdelivery.W010",
        )
    ]
