"""ASGI application of the benchmark server: rtdelivery, the naive consumer, a bare view."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from rtdelivery.asgi import http_application, websocket_application  # noqa: E402

from .naive import NaiveConsumer  # noqa: E402

_rt_ws = websocket_application(prefix="rt/")
_naive = URLRouter([path("naive/ws", NaiveConsumer.as_asgi())])


async def _websocket(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["path"].startswith("/naive/"):
        await _naive(scope, receive, send)
    else:
        await _rt_ws(scope, receive, send)


application = ProtocolTypeRouter(
    {"http": http_application(django_asgi_app, prefix="rt/"), "websocket": _websocket}
)
