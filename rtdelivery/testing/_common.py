"""What the helpers share: the application they run when a test names none (the one place
it is built) and the ``Cookie`` header they send."""

from __future__ import annotations

from collections.abc import Mapping
from http.cookies import SimpleCookie
from typing import Any


def _default_application() -> Any:
    """The settings' Django project with rtdelivery's routes, as ``asgi.py`` wraps it.

    Used by :func:`~rtdelivery.testing.ws_client`, :func:`~rtdelivery.testing.live_server`
    and :func:`~rtdelivery.testing.sse_events` when no application is given. Built on
    each call, so it follows settings a test overrides (middleware, URLconf).
    """
    from django.core.asgi import get_asgi_application

    from ..asgi import rtdelivery_application

    return rtdelivery_application(get_asgi_application())


def cookie_header(cookies: Mapping[str, Any] | SimpleCookie | None) -> list[tuple[str, str]]:
    """``cookies`` (a mapping, or a test client's ``client.cookies``) as a ``Cookie`` header."""
    if not cookies:
        return []
    pairs = []
    for name, value in cookies.items():
        text = value.value if hasattr(value, "value") else str(value)
        pairs.append(f"{name}={text}")
    return [("cookie", "; ".join(pairs))]
