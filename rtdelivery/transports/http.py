"""Plain ASGI HTTP plumbing shared by the HTTP transports (no Django request cycle).

rtdelivery's HTTP endpoints are ASGI callables rather than Django views: Django's
ASGIHandler runs every request in its own ThreadSensitiveContext and its sync
``request_started`` receivers then pin one OS thread per open request, which a held
long poll or an SSE stream would keep for minutes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from importlib import import_module
from typing import Any
from urllib.parse import parse_qs

from channels.auth import get_user
from django.conf import settings
from django.http.cookie import parse_cookie

from ..conf import get_settings
from ..core.cursors import Cursor
from ..core.errors import (
    BadRequest,
    InvalidCursor,
    InvalidTopic,
    MethodNotAllowed,
    NotFound,
    RTDeliveryError,
    TooLarge,
    TooMany,
)
from ..core.topics import validate_topic

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_QUERY_STRING = 16 * 1024


class Request:
    """The parts of an ASGI HTTP scope the endpoints need, validated on access."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        raw_qs: bytes = scope.get("query_string", b"")
        if len(raw_qs) > MAX_QUERY_STRING:
            raise TooLarge(f"Expected a query string of at most {MAX_QUERY_STRING} bytes.")
        try:
            self.query = parse_qs(raw_qs.decode("ascii"), keep_blank_values=True)
        except UnicodeDecodeError as exc:
            raise BadRequest("Expected an ASCII (percent-encoded) query string.") from exc
        self.headers: dict[bytes, bytes] = {}
        for name, value in scope.get("headers", ()):
            self.headers[name.lower()] = value
        self._user: Any = None
        self._session: Any = None

    def header(self, name: str) -> str | None:
        value = self.headers.get(name.encode("latin-1"))
        return None if value is None else value.decode("latin-1")

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise BadRequest(f"Expected at most one {name!r} parameter, got {len(values)}.")
        return values[0]

    def topics(self) -> list[str]:
        """The ``topic`` parameters: at least one, valid, deduplicated, within the limit."""
        values = self.query.get("topic", [])
        if not values:
            raise InvalidTopic("Expected at least one 'topic' parameter, got none.")
        limit = get_settings().max_topics
        topics = list(dict.fromkeys(validate_topic(v) for v in values))
        if len(topics) > limit:
            raise BadRequest(
                f"Expected at most {limit} topics per request, got {len(topics)}.",
                code="too_many_topics",
            )
        return topics

    def cursor(self, *, last_event_id: bool = False) -> Cursor:
        """The ``cursor`` parameter (or, for SSE, ``Last-Event-ID``, which wins)."""
        text = self.header("last-event-id") if last_event_id else None
        if not text:
            text = self.param("cursor")
        if not text:
            return Cursor()
        return Cursor.decode(text, get_settings().cursor_key)

    def session(self) -> Any:
        """The Django session named by the request's session cookie, or None.

        Built here on demand rather than by Channels' SessionMiddleware, which creates a
        session store through the thread pool for every request, and keeps it for the
        life of every stream, whether a policy needs the user or not.
        """
        if self._session is None:
            cookies = parse_cookie(self.header("cookie") or "")
            key = cookies.get(settings.SESSION_COOKIE_NAME)
            if not key:
                return None
            engine = import_module(settings.SESSION_ENGINE)
            self._session = engine.SessionStore(key)
        return self._session

    async def user(self) -> Any:
        """The session user, loaded on first use only (policies like "anyone" skip it)."""
        if self._user is None:
            session = self.session()
            if session is not None:
                self._user = await get_user({"session": session})
            else:
                from django.contrib.auth.models import AnonymousUser

                self._user = AnonymousUser()
        return self._user

    async def body(self, max_bytes: int) -> bytes:
        length = self.header("content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise TooLarge(f"Expected a request body of at most {max_bytes} bytes, got {length}.")
        chunks = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge(f"Expected a request body of at most {max_bytes} bytes.")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


def error_payload(exc: RTDeliveryError) -> bytes:
    return json.dumps({"error": exc.as_dict()}).encode()


async def respond(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
    *,
    content_type: bytes = b"application/json",
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def respond_error(send: Send, exc: RTDeliveryError, headers: Iterable[Any] = ()) -> None:
    await respond(send, exc.status, error_payload(exc), headers)


def events_body(events: Iterable[Any], cursor: str, recovered: bool, lost: list[str]) -> bytes:
    """``{"events": [...], "cursor", "recovered", "lost"}`` from pre-encoded events."""
    raw = ",".join(e.raw for e in events)
    lost_json = json.dumps(lost)
    return (
        f'{{"events":[{raw}],"cursor":"{cursor}","recovered":{"true" if recovered else "false"},'
        f'"lost":{lost_json}}}'
    ).encode()


__all__ = [
    "BadRequest",
    "ClientGone",
    "InvalidCursor",
    "MethodNotAllowed",
    "NotFound",
    "Request",
    "TooLarge",
    "TooMany",
    "events_body",
    "respond",
    "respond_error",
]
