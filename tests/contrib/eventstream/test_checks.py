"""rtdelivery.W010: the bridge's URLs without the bridge's storage class."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks

from rtdelivery.contrib.eventstream.checks import STORAGE


def w010() -> list[checks.CheckMessage]:
    return [m for m in checks.run_checks(tags=["rtdelivery"]) if m.id == "rtdelivery.W010"]


@pytest.mark.urls("tests.contrib.eventstream.urls_es")
@pytest.mark.parametrize("storage", [None, "django_eventstream.storage.DjangoModelStorage"])
def test_bridge_urls_without_its_storage(settings: Any, storage: str | None) -> None:
    if storage is None:
        del settings.EVENTSTREAM_STORAGE_CLASS
    else:
        settings.EVENTSTREAM_STORAGE_CLASS = storage
    (message,) = w010()
    assert message.level == checks.WARNING
    assert f"EVENTSTREAM_STORAGE_CLASS is {storage!r}" in message.msg
    assert STORAGE in (message.hint or "")


@pytest.mark.urls("tests.contrib.eventstream.urls_es")
def test_bridge_urls_with_its_storage(settings: Any) -> None:
    settings.EVENTSTREAM_STORAGE_CLASS = STORAGE
    assert w010() == []


@pytest.mark.urls("tests.urls_checks_bare")
def test_bridge_not_mounted(settings: Any) -> None:
    settings.EVENTSTREAM_STORAGE_CLASS = "django_eventstream.storage.DjangoModelStorage"
    assert w010() == []


@pytest.mark.urls("tests.contrib.eventstream.urls_broken")
def test_broken_urlconf_is_a_warning_not_a_crash(settings: Any) -> None:
    del settings.EVENTSTREAM_STORAGE_CLASS
    messages = checks.run_checks(tags=["rtdelivery"])
    (message,) = [m for m in messages if m.id.startswith("rtdelivery.W01")]
    assert message.id == "rtdelivery.W011"
    assert message.level == checks.WARNING
    assert "RuntimeError: a typo in the project's urls.py" in message.msg
    assert "tests.contrib.eventstream.urls_broken" in message.msg
