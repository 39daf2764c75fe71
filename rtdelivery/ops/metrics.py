"""The Prometheus scrape view: ``path("metrics", metrics_view)`` in the project's URLconf.

Allowed for a staff session or ``Authorization: Bearer <token>`` with a token of
``RTDELIVERY["METRICS_TOKENS"]``; anyone else gets 401 (no credentials) or 403. With
``PROMETHEUS_MULTIPROC_DIR`` set (several worker processes) the answer combines every
process's values through prometheus-client's multiprocess collector; otherwise it is the
default registry of the process that answers. Without prometheus-client: 501.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .. import metrics
from ..conf import get_settings


def _bearer(request: HttpRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def allowed(request: HttpRequest) -> bool | None:
    """True: may scrape; False: wrong credentials; None: none given."""
    token = _bearer(request)
    if token is not None:
        given = token.encode("latin-1", "replace")
        return any(hmac.compare_digest(given, t.encode()) for t in get_settings().metrics_tokens)
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return bool(user.is_active and user.is_staff)
    return None


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The metrics in Prometheus' text format."""
    verdict = allowed(request)
    if verdict is None:
        response = HttpResponse(
            "Expected a staff session or 'Authorization: Bearer <token>' (METRICS_TOKENS).\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not verdict:
        return HttpResponse(
            "Not allowed to read the metrics.\n", status=403, content_type="text/plain"
        )
    if not metrics.ENABLED:
        return HttpResponse(
            "Expected prometheus-client to be installed: pip install 'rtdelivery[prometheus]'.\n",
            status=501,
            content_type="text/plain; charset=utf-8",
        )
    import prometheus_client

    metrics.flush()
    registry = prometheus_client.REGISTRY
    if metrics.multiprocess():
        from prometheus_client import multiprocess

        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return HttpResponse(
        prometheus_client.generate_latest(registry),
        content_type=prometheus_client.CONTENT_TYPE_LATEST,
    )
