"""rtdelivery's WebSocket endpoint as a Channels consumer.

Route it beside your own consumers (see :mod:`rtdelivery.routing`)::

    URLRouter([path("rt/ws", RealtimeConsumer.as_asgi()), *your_patterns])

It settles the connection's user itself, with ``RTDELIVERY["AUTHENTICATORS"]`` (connection
tokens, the session cookie, DRF ...) as on every HTTP transport, so it works the same
inside Channels' ``AuthMiddlewareStack`` or outside it.

It checks the handshake's ``Origin`` itself (``RTDELIVERY["ALLOWED_ORIGINS"]``, else
``ALLOWED_HOSTS``), so wrapping it in ``AllowedHostsOriginValidator`` is harmless but
not needed.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable
from typing import Any

from asgiref.sync import markcoroutinefunction
from channels.consumer import AsyncConsumer

from .authentication import IDENTIFIED
from .transports.websocket import serve_websocket


class RealtimeConsumer(AsyncConsumer):
    """Subscribe, unsubscribe, publish and presence over one WebSocket (docs/protocol.md).

    Unlike a consumer that handles each layer message in a handler, it joins no layer
    channel of its own and runs no handler per delivered event: the process's hub
    writes events from its inbox straight to the socket, encoded once per process.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await serve_websocket(scope, receive, send)

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> Any:  # Any: routers type routes as views
        """The ASGI application for a router, as Channels' ``as_asgi()``.

        No instance per connection and no frame of its own: it hands back the
        connection's coroutine, since idle connections are many and their memory is a
        published figure (docs/performance.md). It takes no init arguments.
        """
        if initkwargs:
            raise TypeError(
                f"RealtimeConsumer.as_asgi() takes no arguments, got {sorted(initkwargs)}; "
                "configure it with RTDELIVERY settings."
            )

        def app(scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
            # Not identified by IdentityMiddleware (rtdelivery_application's route, or a
            # hand-composed router whose AuthMiddlewareStack gave the session user only):
            # the authenticators (tokens, session, DRF) settle the user at the handshake.
            return serve_websocket(scope, receive, send, identify=IDENTIFIED not in scope)

        markcoroutinefunction(app)
        app.consumer_class = cls  # type: ignore[attr-defined]
        app.consumer_initkwargs = {}  # type: ignore[attr-defined]
        functools.update_wrapper(app, cls, updated=())
        return app
