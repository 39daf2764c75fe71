"""A project without ``django.contrib.auth`` and ``django.contrib.sessions``: every client is
anonymous, and every transport still works for topics anyone may read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from channels.testing import HttpCommunicator, WebsocketCommunicator
from django.core.asgi import get_asgi_application
from django.test import override_settings
from django.urls import include, path

from rtdelivery.asgi import rtdelivery_application
from rtdelivery.testing import areset

pytestmark = pytest.mark.django_db(transaction=False)

WAIT = 5.0

urlpatterns = [path("rt/", include("rtdelivery.urls"))]


@pytest.fixture
def no_auth_project() -> Iterator[None]:
    with override_settings(
        INSTALLED_APPS=["django.contrib.contenttypes", "channels", "rtdelivery"],
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["testserver"],
        RTDELIVERY={
            "HISTORY_BACKEND": "memory",
            "TAIL_CHECK_INTERVAL": 0,
            "TOPICS": {
                "news": {"subscribe": "anyone", "publish": "anyone"},
                "members": {"subscribe": "authenticated"},
            },
        },
    ):
        yield


async def test_websocket_and_http_are_anonymous(no_auth_project: None) -> None:
    from rtdelivery import apublish

    app: Any = rtdelivery_application(get_asgi_application())
    try:
        ws = WebsocketCommunicator(
            app, "/rt/ws", headers=[(b"host", b"testserver"), (b"origin", b"http://testserver")]
        )
        connected, code = await ws.connect(WAIT)
        assert connected, code
        await ws.send_json_to({"op": "subscribe", "topic": "news", "ref": 1})
        subscribed = await ws.receive_json_from(WAIT)
        assert subscribed["op"] == "subscribed", subscribed
        await apublish("news", {"n": 1})
        event = await ws.receive_json_from(WAIT)
        assert (event["op"], event["data"]) == ("event", {"n": 1})
        # A rule that needs a user refuses cleanly (no user can exist): 403, not a crash.
        await ws.send_json_to({"op": "subscribe", "topic": "members", "ref": 2})
        refused = await ws.receive_json_from(WAIT)
        assert (refused["op"], refused["code"], refused["ref"]) == ("error", "forbidden", 2)
        await ws.disconnect()

        for path, status in (
            ("/rt/poll?topic=news", 200),
            ("/rt/poll?topic=members", 403),
            ("/rt/sse?topic=members", 403),
        ):
            http = HttpCommunicator(app, "GET", path, headers=[(b"host", b"testserver")])
            answer = await http.get_response(WAIT)
            await http.wait(WAIT)
            assert answer["status"] == status, answer
    finally:
        await areset()
