"""The bridge's view: django-eventstream's ``events`` URL, served by rtdelivery.

Under :func:`rtdelivery.asgi.rtdelivery_application` the stream is answered on the
no-thread fast path (the URL's kwargs arrive in ``scope["url_route"]``); under
``runserver``, WSGI or Django's test client this view serves the same bytes.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from ...transports.http import Request, Send
from ...transports.serving import serve_django
from ...views import ROUTE_ATTRIBUTE
from . import stream


@csrf_exempt
async def events(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
    """``GET`` django-eventstream's event stream for the URL's or the query's channels."""

    async def handler(rt_request: Request, send: Send) -> None:
        rt_request.scope["url_route"] = {"args": args, "kwargs": kwargs}
        await stream.handle(rt_request, send)

    setattr(handler, "metrics_label", stream.TRANSPORT)  # noqa: B010 - metrics.endpoint_of
    return await serve_django(handler, "GET", request, streaming=True)


setattr(events, ROUTE_ATTRIBUTE, ("held", "GET", stream.handle))
