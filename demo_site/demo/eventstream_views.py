"""The django-eventstream page: one channel served through rtdelivery's bridge.

A django-eventstream project's pieces, unchanged: a view calls
``django_eventstream.send_event()`` and the page's ``ReconnectingEventSource`` (from
django-eventstream's static files) reads ``eventstream/events/``, mounted with
``include("rtdelivery.contrib.eventstream.urls")``. Beside it rtdelivery's own client
subscribes to the channel's topic (``es.demo-es``) on any transport: both get the same
events (docs/migrating-from-django-eventstream.md).
"""

from __future__ import annotations

import itertools

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_eventstream import send_event

from rtdelivery.contrib.eventstream import channel_to_topic

CHANNEL = "demo-es"
_GREETINGS = itertools.cycle(["Hello", "Bonjour", "Hola", "Ciao", "Hallo", "Olá"])


def page(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "demo/eventstream.html",
        {"channel": CHANNEL, "topic": channel_to_topic(CHANNEL)},
    )


@require_POST
def send(request: HttpRequest) -> JsonResponse:
    """``send_event`` as a django-eventstream project calls it (a sync view). The text is
    the server's own: visitors press a button, they do not post content."""
    now = timezone.now()
    data = {"text": f"{next(_GREETINGS)} from send_event()", "sent": now.isoformat()}
    send_event(CHANNEL, "message", data)
    return JsonResponse({"ok": True})
