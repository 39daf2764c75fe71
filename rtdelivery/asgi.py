"""Mount rtdelivery's endpoints in front of a project's Django ASGI application.

    # yourproject/asgi.py
    django_asgi_app = get_asgi_application()
    from rtdelivery.asgi import rtdelivery_application
    application = rtdelivery_application(django_asgi_app, prefix="rt/")

Requests under ``/rt/`` are answered by rtdelivery's plain ASGI endpoints (no thread
held per open stream); everything else goes to Django unchanged. WebSockets connect
at ``/rt/ws``.
"""

from __future__ import annotations

import logging
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter

from .core.errors import InternalError, RTDeliveryError
from .transports import endpoints, longpoll, poll, sse
from .transports.http import (
    ClientGone,
    MethodNotAllowed,
    NotFound,
    Receive,
    Request,
    Scope,
    Send,
    respond_error,
)
from .transports.websocket import websocket_app

logger = logging.getLogger("rtdelivery.asgi")

ASGIApp = Any

ROUTES = {
    "poll": ("GET", poll.handle),
    "longpoll": ("GET", longpoll.handle),
    "sse": ("GET", sse.handle),
    "history": ("GET", endpoints.history),
    "presence": ("GET", endpoints.presence),
    "publish": ("POST", endpoints.publish),
}


class HttpEndpoints:
    """ASGI app answering rtdelivery's HTTP routes under ``prefix`` (JSON errors only)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            route = ROUTES.get(scope["path"][len(self.prefix) :])
            if route is None:
                raise NotFound(f"No rtdelivery endpoint at {scope['path']!r}.")
            method, handler = route
            if scope["method"] != method:
                raise MethodNotAllowed(
                    f"Expected {method} for {scope['path']!r}, got {scope['method']}."
                )
            await handler(Request(scope, receive), tracked_send)
        except ClientGone:
            return
        except RTDeliveryError as exc:
            if started:
                return
            headers = []
            if isinstance(exc, MethodNotAllowed):
                headers.append((b"allow", route[0].encode()))  # type: ignore[index]
            await respond_error(tracked_send, exc, headers)
        except Exception:
            logger.exception("rtdelivery endpoint %s failed", scope.get("path"))
            if not started:
                await respond_error(
                    tracked_send,
                    InternalError("Internal error; see the server log."),
                    (),
                )


def _normalize(prefix: str) -> str:
    return "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"


def http_application(django_app: ASGIApp, *, prefix: str = "rt/") -> ASGIApp:
    """HTTP only: rtdelivery's endpoints under ``prefix``, the rest to ``django_app``."""
    root = _normalize(prefix)
    # No session middleware: a Request loads the session (and user) itself, only when a
    # topic's policy needs to know who is asking.
    endpoints_app = HttpEndpoints(root)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"].startswith(root):
            await endpoints_app(scope, receive, send)
        else:
            await django_app(scope, receive, send)

    return app


def websocket_application(*, prefix: str = "rt/") -> ASGIApp:
    """WebSocket only: rtdelivery's ``ws`` route under ``prefix`` with auth and Origin checks."""
    path = _normalize(prefix) + "ws"
    authed = AuthMiddlewareStack(websocket_app)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == path:
            await authed(scope, receive, send)
        else:
            await receive()
            await send({"type": "websocket.close", "code": 1008})

    return app


def rtdelivery_application(django_app: ASGIApp, *, prefix: str = "rt/") -> ASGIApp:
    """The project's ASGI application with rtdelivery's routes under ``prefix``."""
    return ProtocolTypeRouter(
        {
            "http": http_application(django_app, prefix=prefix),
            "websocket": websocket_application(prefix=prefix),
        }
    )
