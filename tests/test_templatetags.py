"""``{% rtdelivery_config %}``: the client's configuration comes from the URLconf."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.template import Context, Template
from django.urls import NoReverseMatch, include, path

from rtdelivery.templatetags.rtdelivery import client_config

urlpatterns = [path("live/updates/", include("rtdelivery.urls"))]


def _render() -> dict[str, Any]:
    html = Template("{% load rtdelivery %}{% rtdelivery_config %}").render(Context())
    match = re.fullmatch(
        r'<script id="rtdelivery-config" type="application/json">(.*)</script>', html, re.S
    )
    assert match, html
    return json.loads(match[1])  # type: ignore[no-any-return]


def test_config_follows_the_demo_prefix() -> None:
    config = _render()
    assert config["url"] == "/rt/"
    assert config["urls"]["sse"] == "/rt/sse"
    assert config["urls"]["ws"] == "/rt/ws"
    assert set(config["urls"]) == {
        "poll",
        "longpoll",
        "sse",
        "history",
        "presence",
        "publish",
        "ws",
    }


def test_config_follows_any_prefix(settings: Any) -> None:
    settings.ROOT_URLCONF = __name__
    config = _render()
    assert config["url"] == "/live/updates/"
    assert config["urls"]["publish"] == "/live/updates/publish"
    assert client_config() == config


def test_not_mounted_is_a_clear_error(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.urls_checks_bare"
    with pytest.raises(NoReverseMatch, match="rtdelivery"):
        client_config()
