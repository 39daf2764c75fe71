"""The project's ASGI application, with rtdelivery's held requests on a fast path.

    # yourproject/asgi.py
    django_asgi_app = get_asgi_application()
    from rtdelivery.asgi import rtdelivery_application
    application = rtdelivery_application(django_asgi_app)

The URLconf stays the single source of truth: each HTTP request's path is resolved
against the project's ``ROOT_URLCONF``. Requests for rtdelivery's ``longpoll`` and ``sse``
views (wherever the project included ``rtdelivery.urls``) are answered here, on the
event loop, without Django's request cycle: Django's ASGI handler pins one OS thread per
open request, which a long poll or a stream would hold for minutes. Every other HTTP
request, rtdelivery's short ones included, goes to Django with its middleware.

WebSockets at rtdelivery's ``ws`` URL go to :class:`~rtdelivery.consumers.RealtimeConsumer`;
other WebSocket paths go to ``websocket_urlpatterns`` (the project's own consumers,
inside ``AllowedHostsOriginValidator`` and ``AuthMiddlewareStack``), or are refused.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from django.apps import apps
from django.conf import settings
from django.urls import Resolver404, re_path, resolve

from . import shutdown
from .transports.flow import server_send
from .transports.http import Receive, Scope, Send
from .transports.serving import serve_asgi

ASGIApp = Any


def _path_info(scope: Scope) -> str:
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


@functools.lru_cache(maxsize=1024)
def _route_for(urlconf: str, path_info: str) -> tuple[Any, ...] | None:
    from .views import ROUTE_ATTRIBUTE

    try:
        match = resolve(path_info, urlconf)
    except Resolver404:
        return None
    route: tuple[Any, ...] | None = getattr(match.func, ROUTE_ATTRIBUTE, None)
    if route is not None and route[0] == "held" and (match.args or match.kwargs):
        # What the URLconf captured or passed (include(..., {"channels": [...]})), for
        # handlers that read it from scope["url_route"] as Channels' consumers do.
        route = (*route, {"args": match.args, "kwargs": match.kwargs})
    return route


def route_for(scope: Scope) -> tuple[Any, ...] | None:
    """rtdelivery's route for this path in the project's URLconf: ``("held", method,
    handler[, url_route])``, ``("websocket",)`` or None (not one of rtdelivery's served
    routes). ``url_route`` (``{"args", "kwargs"}``) is there when the URL gives any."""
    return _route_for(settings.ROOT_URLCONF, _path_info(scope))


def clear_route_cache(**kwargs: Any) -> None:
    """``setting_changed`` receiver: a new URLconf means new routes."""
    _route_for.cache_clear()


def _with_identity(app: ASGIApp) -> ASGIApp:
    from .consumers import RealtimeConsumer

    if getattr(app, "consumer_class", None) is RealtimeConsumer:
        # rtdelivery's own route: RTDELIVERY["AUTHENTICATORS"] (connection tokens, the
        # session cookie, DRF, ...) say who the client is, as on every HTTP transport;
        # the consumer runs them itself at the handshake (no middleware frame per socket).
        return app
    # Channels' AuthMiddlewareStack needs both apps; without them every client is
    # anonymous (scope["user"] absent), and check rtdelivery.W006 says what that costs.
    if apps.is_installed("django.contrib.sessions") and apps.is_installed("django.contrib.auth"):
        from channels.auth import AuthMiddlewareStack

        return AuthMiddlewareStack(app)
    return app


class RealtimeApplication:
    """See :func:`rtdelivery_application`."""

    #: Looked for by system check rtdelivery.W007.
    rtdelivery_fast_path = True

    def __init__(
        self, django_app: ASGIApp, websocket_urlpatterns: Sequence[Any] | None = None
    ) -> None:
        from channels.routing import URLRouter
        from channels.security.websocket import AllowedHostsOriginValidator

        from .consumers import RealtimeConsumer

        self.django_app = django_app
        self.websocket = _with_identity(RealtimeConsumer.as_asgi())
        self.project_websocket: ASGIApp | None = None
        if websocket_urlpatterns:
            # The catch-all last: a path none of them matches is refused like any other
            # (Channels' URLRouter would raise ValueError, a 500 and a traceback per handshake).
            # URLRouter routes ASGI applications; django-stubs types re_path() for views.
            refuse = re_path(r"", _refuse_application)  # type: ignore[arg-type]
            routes = [*websocket_urlpatterns, refuse]
            self.project_websocket = AllowedHostsOriginValidator(_with_identity(URLRouter(routes)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # SIGTERM lets connections say goodbye first: hooked from the first call (a
        # lifespan startup or a connection), in the server's thread (rtdelivery.shutdown).
        shutdown.install()
        kind = scope["type"]
        if kind == "http":
            route = route_for(scope)
            if route is not None and route[0] == "held":
                # The server's own send, before any wrapper: its write buffer bounds a
                # stream's memory under Daphne (rtdelivery.transports.daphne). No copy of
                # the scope here (serve_asgi's Request has it): this frame waits for the
                # life of a stream.
                url_route = route[3] if len(route) > 3 else None
                await serve_asgi(route[2], route[1], scope, receive, send, url_route)
            else:
                await self.django_app(scope, receive, send)
        elif kind == "websocket":
            route = route_for(scope)
            if route is not None and route[0] == "websocket":
                token = server_send.set(send)
                try:
                    await self.websocket(scope, receive, send)
                finally:
                    server_send.reset(token)
            elif self.project_websocket is not None:
                await self.project_websocket(scope, receive, send)
            else:
                await _refuse(receive, send)
        else:
            await self.django_app(scope, receive, send)


async def _refuse(receive: Receive, send: Send) -> None:
    # Closing before accept: the server answers the handshake with 403.
    await receive()
    await send({"type": "websocket.close", "code": 1008})


async def _refuse_application(scope: Scope, receive: Receive, send: Send) -> None:
    await _refuse(receive, send)


def rtdelivery_application(
    django_app: ASGIApp, *, websocket_urlpatterns: Sequence[Any] | None = None
) -> RealtimeApplication:
    """``django_app`` (from ``get_asgi_application()``) with rtdelivery's fast path and
    WebSocket route, plus the project's own WebSocket routes if given."""
    return RealtimeApplication(django_app, websocket_urlpatterns)
