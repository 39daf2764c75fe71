"""Cross-origin clients: one origin list for CORS on every HTTP endpoint and for the
WebSocket ``Origin`` check.

The list is ``RTDELIVERY["ALLOWED_ORIGINS"]`` when set; otherwise, with
django-cors-headers installed, its settings (``CORS_ALLOWED_ORIGINS``,
``CORS_ALLOWED_ORIGIN_REGEXES``, ``CORS_ALLOW_ALL_ORIGINS``, ``CORS_ALLOW_CREDENTIALS``,
``CORS_ALLOW_HEADERS``, ``CORS_ALLOW_METHODS``, ``CORS_EXPOSE_HEADERS``,
``CORS_PREFLIGHT_MAX_AGE``, ``CORS_URLS_REGEX`` and its ``check_request_enabled``
signal), matched by its own middleware's code. Otherwise there is none: same-origin
clients only.

rtdelivery answers CORS itself (rather than leaving it to the project's middleware)
because ``longpoll`` and ``sse`` on the fast path skip Django's middleware; answering it
in the handler layer gives the same headers however an endpoint is reached. With
``CorsMiddleware`` also installed the headers are the same, set twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from re import Pattern
from typing import Any
from urllib.parse import urlsplit

from django.apps import apps
from django.http import HttpRequest

from .conf import get_settings

#: Request headers a preflight may ask for without django-cors-headers' settings.
DEFAULT_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "last-event-id",
    "x-csrftoken",
    "x-requested-with",
)
DEFAULT_ALLOW_METHODS = ("GET", "POST", "OPTIONS")
#: Exposed to scripts always: a 429/503's Retry-After says when to come back.
ALWAYS_EXPOSED = ("retry-after",)
DEFAULT_MAX_AGE = 86400

Header = tuple[bytes, bytes]


@dataclass(frozen=True)
class OriginList:
    """Who may call cross-origin, and what a preflight answers."""

    #: "rtdelivery" (ALLOWED_ORIGINS) or "corsheaders".
    source: str
    allow_all: bool
    origins: tuple[str, ...]
    regexes: tuple[str | Pattern[str], ...]
    credentials: bool
    allow_headers: tuple[str, ...]
    allow_methods: tuple[str, ...]
    expose_headers: tuple[str, ...]
    max_age: int | None
    urls_regex: str | Pattern[str] | None


def origin_list() -> OriginList | None:
    """The configured list (see the module docstring), or None: no cross-origin access."""
    conf = get_settings()
    allowed = conf.allowed_origins
    if allowed is not None:
        return OriginList(
            source="rtdelivery",
            allow_all="*" in allowed,
            origins=tuple(a for a in allowed if a != "*"),
            regexes=(),
            credentials=conf.cors_allow_credentials,
            allow_headers=DEFAULT_ALLOW_HEADERS,
            allow_methods=DEFAULT_ALLOW_METHODS,
            expose_headers=ALWAYS_EXPOSED,
            max_age=DEFAULT_MAX_AGE,
            urls_regex=None,
        )
    if not apps.is_installed("corsheaders"):
        return None
    from corsheaders.conf import conf as cors

    return OriginList(
        source="corsheaders",
        allow_all=bool(cors.CORS_ALLOW_ALL_ORIGINS),
        origins=tuple(cors.CORS_ALLOWED_ORIGINS),
        regexes=tuple(cors.CORS_ALLOWED_ORIGIN_REGEXES),
        credentials=bool(cors.CORS_ALLOW_CREDENTIALS),
        allow_headers=tuple(cors.CORS_ALLOW_HEADERS),
        allow_methods=tuple(cors.CORS_ALLOW_METHODS),
        expose_headers=tuple(dict.fromkeys([*cors.CORS_EXPOSE_HEADERS, *ALWAYS_EXPOSED])),
        max_age=cors.CORS_PREFLIGHT_MAX_AGE or None,
        urls_regex=cors.CORS_URLS_REGEX,
    )


def _normalized(origin: str) -> str | None:
    try:
        parts = urlsplit(origin.strip())
    except ValueError:  # e.g. "http://[::1" (unbalanced brackets)
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def _listed(origins: Sequence[str], regexes: Sequence[str | Pattern[str]], origin: str) -> bool:
    normalized = _normalized(origin)
    if origin == "null":
        return "null" in origins
    if normalized is None:
        return False
    if normalized in {o.rstrip("/").lower() for o in origins}:
        return True
    return any(re.match(pattern, origin) for pattern in regexes)


def origin_listed(listing: OriginList, origin: str | None) -> bool:
    """Whether ``origin`` is on the list (a missing one only when all are allowed)."""
    if listing.allow_all:
        return True
    if not origin:
        return False
    return _listed(listing.origins, listing.regexes, origin)


def _signal_allows(request: Callable[[], HttpRequest] | None) -> bool:
    """django-cors-headers' ``check_request_enabled`` signal, when anyone listens."""
    if request is None:
        return False
    from corsheaders.signals import check_request_enabled

    if not check_request_enabled.has_listeners():
        return False
    answers = check_request_enabled.send(sender=None, request=request())
    return any(answer for _receiver, answer in answers)


def response_headers(
    origin: str | None,
    method: str,
    path: str,
    *,
    request: Callable[[], HttpRequest] | None = None,
) -> list[Header] | None:
    """CORS headers for an answer to a request from ``origin`` (``Vary: Origin`` at least),
    or None when cross-origin access is not configured for ``path``. ``request`` builds
    the Django request django-cors-headers' signal receivers expect (only if any)."""
    listing = origin_list()
    if listing is None:
        return None
    signal_checked: bool | None = None
    if listing.urls_regex is not None and not re.match(listing.urls_regex, path):
        signal_checked = _signal_allows(request) if listing.source == "corsheaders" else False
        if not signal_checked:
            return None
    headers: list[Header] = [(b"vary", b"origin")]
    if not origin:
        return headers
    allowed = origin_listed(listing, origin)
    if not allowed and listing.source == "corsheaders" and signal_checked is None:
        allowed = _signal_allows(request)
    if not allowed:
        return headers
    # Every origin is never given credentials, whatever the settings say (conf.validate
    # refuses the combination; django-cors-headers' CORS_ALLOW_ALL_ORIGINS may carry it).
    credentials = listing.credentials and not listing.allow_all
    value = "*" if listing.allow_all else origin
    headers.append((b"access-control-allow-origin", value.encode("latin-1")))
    if credentials:
        headers.append((b"access-control-allow-credentials", b"true"))
    if listing.expose_headers:
        headers.append(
            (b"access-control-expose-headers", ", ".join(listing.expose_headers).encode())
        )
    if method == "OPTIONS":
        headers.append((b"access-control-allow-headers", ", ".join(listing.allow_headers).encode()))
        headers.append((b"access-control-allow-methods", ", ".join(listing.allow_methods).encode()))
        if listing.max_age:
            headers.append((b"access-control-max-age", str(listing.max_age).encode()))
    return headers


def is_preflight(method: str, headers: Any) -> bool:
    """An ``OPTIONS`` request with ``Access-Control-Request-Method`` (``headers``: the
    request's lowercase byte-string header mapping)."""
    return method == "OPTIONS" and b"access-control-request-method" in headers
