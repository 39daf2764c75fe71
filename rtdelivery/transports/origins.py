"""Origin validation for WebSockets: deny by default."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import validate_host

from ..conf import get_settings


def origin_allowed(origin: str | None) -> bool:
    """Whether a WebSocket handshake with this ``Origin`` header may proceed.

    With ``RTDELIVERY["ALLOWED_ORIGINS"]`` set, the origin must be listed exactly
    (scheme://host[:port]) or the list must contain "*". Otherwise its host must pass
    Django's ``ALLOWED_HOSTS`` (localhost variants when DEBUG and ALLOWED_HOSTS is empty).
    A missing Origin is refused unless "*" is allowed: browsers always send one.
    """
    allowed = get_settings().allowed_origins
    if allowed is not None and "*" in allowed:
        return True
    if not origin:
        return False
    try:
        parts = urlsplit(origin.strip())
        hostname = parts.hostname
    except ValueError:  # e.g. "http://[::1" (unbalanced brackets)
        return False
    if parts.scheme not in ("http", "https") or not hostname:
        return False
    if allowed is not None:
        normalized = f"{parts.scheme}://{parts.netloc}".lower()
        return normalized in {a.rstrip("/").lower() for a in allowed}
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    # urlsplit drops an IPv6 literal's brackets; ALLOWED_HOSTS writes them ("[::1]").
    host = f"[{hostname}]" if ":" in hostname else hostname
    return validate_host(host, hosts)
