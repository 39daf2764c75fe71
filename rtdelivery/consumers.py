"""rtdelivery's WebSocket endpoint as a Channels consumer.

Route it beside your own consumers (see :mod:`rtdelivery.routing`), inside Channels'
``AuthMiddlewareStack`` so that ``scope["user"]`` is the session's user::

    URLRouter([path("rt/ws", RealtimeConsumer.as_asgi()), *your_patterns])

It checks the handshake's ``Origin`` itself (``RTDELIVERY["ALLOWED_ORIGINS"]``, else
``ALLOWED_HOSTS``), so wrapping it in ``AllowedHostsOriginValidator`` is harmless but
not needed.
"""

from __future__ import annotations

from typing import Any

from channels.consumer import AsyncConsumer

from .transports.websocket import serve_websocket


class RealtimeConsumer(AsyncConsumer):
    """Subscribe, unsubscribe, publish and presence over one WebSocket (docs/protocol.md).

    Unlike a consumer that handles each layer message in a handler, it joins no layer
    channel of its own and runs no handler per delivered event: the process's hub
    writes events from its inbox straight to the socket, encoded once per process.
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Nothing is stored on the instance: idle connections are many, and their memory
        # is a published figure (docs/performance.md).
        await serve_websocket(scope, receive, send)
