"""The dashboard page, its rate control and the request-size probe its byte counts use."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_http_methods

from rtdelivery import apublish

from .simulator import RATES, SENSORS_TOPIC, simulator

#: The rate control's body is ``{"rate": 5}``: anything longer is not one.
MAX_BODY = 256
#: How often the dashboard's short-polling client asks (ms); the page says so.
POLL_INTERVAL_MS = 2000


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _rate_label(rate: float) -> str:
    return f"{rate:g}"


@ensure_csrf_cookie
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "demo/dashboard.html",
        {
            "rates": [_rate_label(r) for r in RATES],
            "rate": _rate_label(simulator.rate),
            "poll_interval": POLL_INTERVAL_MS,
        },
    )


@never_cache
@require_http_methods(["GET", "POST"])
async def rate(request: HttpRequest) -> JsonResponse:
    """GET: the simulator's rate. POST ``{"rate": r}`` (CSRF-protected): set it for everyone."""
    running = bool(getattr(settings, "DEMO_SIMULATOR", False))
    if request.method == "POST":
        if not running:
            return _error(409, "simulator_off", "The simulator is off (DEMO_SIMULATOR).")
        if len(request.body) > MAX_BODY:
            return _error(413, "too_large", f"Expected a body of at most {MAX_BODY} bytes.")
        allowed = ", ".join(_rate_label(r) for r in RATES)
        try:
            value = json.loads(request.body)["rate"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "bad_request", f'Expected {{"rate": r}} with r one of {allowed}.')
        if isinstance(value, bool) or not isinstance(value, int | float) or value not in RATES:
            return _error(400, "bad_rate", f"Expected a rate of {allowed} events/s, got {value!r}.")
        simulator.set_rate(float(value))
        # Every open dashboard learns the new rate on the stream itself; its seq is where
        # the new rate's figures start.
        event = await apublish(SENSORS_TOPIC, {"rate": simulator.rate}, type="rate")
        return JsonResponse({"rate": simulator.rate, "seq": event.seq})
    return JsonResponse({"rate": simulator.rate, "rates": list(RATES), "running": running})


@never_cache
@require_GET
def probe(request: HttpRequest) -> JsonResponse:
    """The size of this request's head as the server received it: its request line and each
    header's name and size (never a value: no HttpOnly cookie is echoed to the page).

    The browser does not say how many bytes its request headers take; the dashboard sends
    this probe the way its clients send their requests and derives their sizes from it.
    """
    scope = getattr(request, "scope", None)
    path = request.get_full_path()
    line = f"{request.method} {path} HTTP/1.1\r\n"
    if scope is not None:
        raw = [(name.decode("latin-1"), value) for name, value in scope.get("headers", [])]
        headers = [[name, len(name) + len(value) + 4] for name, value in raw]  # ": " + CRLF
    else:  # WSGI: the headers as META has them
        headers = [
            [key[5:].replace("_", "-").lower(), len(key) - 5 + len(str(value)) + 4]
            for key, value in request.META.items()
            if key.startswith("HTTP_")
        ]
    return JsonResponse({"request_line": len(line), "headers": headers})
