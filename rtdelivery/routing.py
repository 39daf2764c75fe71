"""WebSocket routes for a project's own Channels router.

``rtdelivery_application(django_asgi_app, websocket_urlpatterns=[...])`` routes these by
itself. To compose the router yourself::

    from channels.auth import AuthMiddlewareStack
    from channels.routing import URLRouter
    import rtdelivery.routing

    URLRouter([*rtdelivery.routing.websocket_urlpatterns, *chat.routing.websocket_urlpatterns])

The path assumes rtdelivery's URLconf is included at ``rt/``; with another prefix, route
``RealtimeConsumer.as_asgi()`` at ``<prefix>ws`` yourself.
"""

from django.urls import path

from .consumers import RealtimeConsumer

websocket_urlpatterns = [
    path("rt/ws", RealtimeConsumer.as_asgi(), name="rtdelivery-ws"),
]
