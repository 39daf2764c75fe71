"""rtdelivery's HTTP endpoints as Django views, mounted by :mod:`rtdelivery.urls`.

They are ordinary async views: the project's middleware runs, ``request.user`` comes from
its ``AuthenticationMiddleware``, publishes are checked by Django's CSRF protection, and
Django's test ``Client`` reaches them. They work under ASGI, ``runserver`` and WSGI.

``longpoll`` and ``sse`` hold the request open. Served by Django they hold a worker (a
thread under ASGI, a process or thread under WSGI) while they wait; under
:func:`rtdelivery.asgi.rtdelivery_application` the same views are answered on its
no-thread fast path instead, found by resolving the request path against the project's
URLconf, with the same answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from .core.errors import NotFound, UpgradeRequired
from .transports import endpoints
from .transports import longpoll as longpoll_transport
from .transports import poll as poll_transport
from .transports import sse as sse_transport
from .transports.http import error_payload
from .transports.serving import Handler, serve_django

_View = TypeVar("_View", bound=Callable[..., Awaitable[HttpResponseBase]])

#: ``route`` attribute of views that :func:`rtdelivery.asgi.rtdelivery_application`
#: serves itself: ("held", method, handler) on the fast path, or the WebSocket route.
ROUTE_ATTRIBUTE = "rtdelivery_route"
WEBSOCKET_ROUTE = ("websocket",)


def _held(method: str, handler: Handler) -> Callable[[_View], _View]:
    def mark(view: _View) -> _View:
        setattr(view, ROUTE_ATTRIBUTE, ("held", method, handler))
        return view

    return mark


@csrf_exempt
async def poll(request: HttpRequest) -> HttpResponseBase:
    """``GET poll?topic=T[&cursor=C]``: events after the cursor, at once."""
    return await serve_django(poll_transport.handle, "GET", request)


@csrf_exempt
@_held("GET", longpoll_transport.handle)
async def longpoll(request: HttpRequest) -> HttpResponseBase:
    """``GET longpoll?topic=T&cursor=C[&timeout=S]``: held until an event or S seconds."""
    return await serve_django(longpoll_transport.handle, "GET", request)


@csrf_exempt
@_held("GET", sse_transport.handle)
async def sse(request: HttpRequest) -> HttpResponseBase:
    """``GET sse?topic=T[&cursor=C]``: a ``text/event-stream``."""
    return await serve_django(sse_transport.handle, "GET", request, streaming=True)


@csrf_exempt
async def history(request: HttpRequest) -> HttpResponseBase:
    """``GET history?topic=T[&limit=N][&cursor=C]``: the latest retained events."""
    return await serve_django(endpoints.history, "GET", request)


@csrf_exempt
async def presence(request: HttpRequest) -> HttpResponseBase:
    """``GET presence?topic=T``: who is subscribed to T now."""
    return await serve_django(endpoints.presence, "GET", request)


# Every view is exempt from the project's CSRF middleware only so that every answer is
# JSON: the GET views refuse other methods with 405 (they change nothing), and publish
# runs Django's own CSRF check itself for every request that has no server token.


@csrf_exempt
async def publish(request: HttpRequest) -> HttpResponseBase:
    """``POST publish`` ``{"topic", "type", "data"}``: 201 ``{"topic", "seq", "id"}``."""
    return await serve_django(endpoints.publish, "POST", request)


@csrf_exempt
async def ws(request: HttpRequest) -> HttpResponseBase:
    """The WebSocket route's place in the URLconf (so ``reverse("rtdelivery:ws")`` works
    and the ASGI application finds it); a plain HTTP request gets 426."""
    error = UpgradeRequired(
        "Expected a WebSocket handshake (Upgrade: websocket) at this URL, got plain HTTP."
    )
    return _json_error(error, upgrade="websocket")


setattr(ws, ROUTE_ATTRIBUTE, WEBSOCKET_ROUTE)


@csrf_exempt
async def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
    """Any other path under rtdelivery's prefix: a JSON 404."""
    return _json_error(NotFound(f"No rtdelivery endpoint at {request.path!r}."))


def _json_error(error: NotFound | UpgradeRequired, **headers: str) -> HttpResponse:
    response = HttpResponse(
        error_payload(error), status=error.status, content_type="application/json"
    )
    response.headers["Cache-Control"] = "no-store"
    for name, value in headers.items():
        response.headers[name] = value
    return response
