"""URLconf of the e2e servers: django-eventstream's URL shapes on the bridge, views that
call send_event, a page with django-eventstream's ReconnectingEventSource."""

from pathlib import Path

import django_eventstream
from django.http import FileResponse, HttpRequest, HttpResponse
from django.urls import include, path

from demo_site.urls import urlpatterns as demo_urlpatterns

from .project import send_async, send_sync

STATIC = Path(django_eventstream.__file__).parent / "static" / "django_eventstream"
BRIDGE = "rtdelivery.contrib.eventstream.urls"

PAGE = """<!doctype html><meta charset="utf-8"><title>es</title>
<script src="/es/reconnecting-eventsource.js"></script>
<script>
window.received = []; window.opens = 0; window.resets = [];
const es = new ReconnectingEventSource("/events/multi/?channel=" + encodeURIComponent(
  new URLSearchParams(location.search).get("channel")), {max_retry_time: 500});
es.addEventListener("stream-open", () => { window.opens += 1; });
es.addEventListener("stream-reset", (e) => { window.resets.push(JSON.parse(e.data)); });
es.addEventListener("message", (e) => { window.received.push([e.lastEventId, JSON.parse(e.data)]); });
</script>"""


def reconnecting_js(request: HttpRequest) -> FileResponse:
    return FileResponse(
        (STATIC / "reconnecting-eventsource.js").open("rb"), content_type="text/javascript"
    )


def page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(PAGE)


urlpatterns = [
    path("events/test/", include(BRIDGE), {"channels": ["test"]}),
    path("events/multi/", include(BRIDGE)),
    path("events/objects/<int:obj_id>/", include(BRIDGE), {"format-channels": ["object-{obj_id}"]}),
    # django-eventstream's own view, for the thread-count contrast.
    path("original/", include(django_eventstream.urls), {"channels": ["original"]}),
    path("es/reconnecting-eventsource.js", reconnecting_js),
    path("es/page", page),
    path("send/sync", send_sync),
    path("send/async", send_async),
    *demo_urlpatterns,
]
