"""ASGI application of the e2e settings with a project consumer beside rtdelivery's:
``/echo/`` is :class:`tests.project_consumers.EchoConsumer`, ``/rt/ws`` is rtdelivery's
(tests/test_consumers.py serves it with Uvicorn)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.e2e.settings_e2e")
django_asgi_app = get_asgi_application()

from django.urls import path  # noqa: E402

from rtdelivery.asgi import rtdelivery_application  # noqa: E402
from tests.project_consumers import EchoConsumer  # noqa: E402

application = rtdelivery_application(
    django_asgi_app, websocket_urlpatterns=[path("echo/", EchoConsumer.as_asgi())]
)
