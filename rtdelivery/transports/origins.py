"""Origin validation for WebSockets: deny by default."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import validate_host

from ..cors import origin_list, origin_listed


def origin_allowed(origin: str | None) -> bool:
    """Whether a WebSocket handshake with this ``Origin`` header may proceed.

    The list is rtdelivery.cors's, the one CORS answers from. With
    ``RTDELIVERY["ALLOWED_ORIGINS"]`` set, the origin must be listed exactly
    (scheme://host[:port]) or the list must contain "*". With django-cors-headers'
    settings instead, an origin they allow may connect, and so may the site's own hosts
    (as below). Without either, its host must pass Django's ``ALLOWED_HOSTS`` (localhost
    variants when DEBUG and ALLOWED_HOSTS is empty). A missing Origin is refused unless
    every origin is allowed: browsers always send one.
    """
    listing = origin_list()
    if listing is not None and listing.allow_all:
        return True
    hostname = _hostname(origin)
    if hostname is None:
        return False
    if listing is not None:
        if origin_listed(listing, origin):
            return True
        if listing.source == "rtdelivery":
            return False
    return _own_host(hostname)


def allowed_hosts() -> list[str]:
    """``ALLOWED_HOSTS`` as Django's ``HttpRequest.get_host()`` applies it (localhost
    variants when DEBUG and the setting is empty)."""
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def _hostname(origin: str | None) -> str | None:
    """The host of an ``http(s)://host[:port]`` Origin, or None when it is not one."""
    if not origin:
        return None
    try:
        parts = urlsplit(origin.strip())
        hostname = parts.hostname
    except ValueError:  # e.g. "http://[::1" (unbalanced brackets)
        return None
    if parts.scheme not in ("http", "https") or not hostname:
        return None
    return hostname


def _own_host(hostname: str) -> bool:
    # urlsplit drops an IPv6 literal's brackets; ALLOWED_HOSTS writes them ("[::1]").
    host = f"[{hostname}]" if ":" in hostname else hostname
    return validate_host(host, allowed_hosts())


def cookies_allowed(origin: str | None) -> bool:
    """Whether a WebSocket from ``origin`` may be identified by what the browser attaches
    by itself (the session cookie), as opposed to a credential the page's code adds.

    Only the site's own hosts (``ALLOWED_HOSTS``) and origins listed with credentials
    allowed may: the rule CORS applies to HTTP. An origin let in by ``"*"`` or listed
    without credentials connects as anonymous unless it presents a token, so another site
    cannot ride on a logged-in user's cookie (cross-site WebSocket hijacking).
    """
    hostname = _hostname(origin)
    if hostname is None:
        return False
    if _own_host(hostname):
        return True
    listing = origin_list()
    return (
        listing is not None
        and listing.credentials
        and not listing.allow_all
        and origin_listed(listing, origin)
    )
