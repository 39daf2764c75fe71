"""ASGI application of the benchmark server: rtdelivery, the naive consumer, a bare view."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.routing import URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from rtdelivery.asgi import rtdelivery_application  # noqa: E402

from .naive import NaiveConsumer  # noqa: E402

_rt = rtdelivery_application(django_asgi_app)
# The naive consumer as the Channels tutorial has it: no auth stack, its own router.
_naive = URLRouter([path("naive/ws", NaiveConsumer.as_asgi())])


async def application(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "websocket" and scope["path"].startswith("/naive/"):
        await _naive(scope, receive, send)
    else:
        await _rt(scope, receive, send)
