"""rtdelivery's URLconf: ``path("rt/", include("rtdelivery.urls"))``.

Names (namespace ``rtdelivery``): ``poll``, ``longpoll``, ``sse``, ``history``,
``presence``, ``publish`` and ``ws`` (the WebSocket route, served by the ASGI
application). Any other path under the prefix answers a JSON 404.
"""

from django.urls import path, re_path

from . import views

app_name = "rtdelivery"

urlpatterns = [
    path("poll", views.poll, name="poll"),
    path("longpoll", views.longpoll, name="longpoll"),
    path("sse", views.sse, name="sse"),
    path("history", views.history, name="history"),
    path("presence", views.presence, name="presence"),
    path("publish", views.publish, name="publish"),
    path("ws", views.ws, name="ws"),
    re_path(r"^.*$", views.not_found),
]
