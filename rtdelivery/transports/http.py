"""Plain ASGI HTTP plumbing shared by the HTTP transports (no Django request cycle).

rtdelivery's HTTP endpoints are ASGI callables rather than Django views: Django's
ASGIHandler runs every request in its own ThreadSensitiveContext and its sync
``request_started`` receivers then pin one OS thread per open request, which a held
long poll or an SSE stream would keep for minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from importlib import import_module
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from django.apps import apps
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, QueryDict
from django.http.cookie import parse_cookie

from ..conf import get_settings
from ..core.cursors import Cursor, merge_cursors
from ..core.errors import (
    BadRequest,
    ClientGone,
    InvalidCursor,
    InvalidTopic,
    MethodNotAllowed,
    NotFound,
    RTDeliveryError,
    TokenMalformed,
    TooLarge,
    TooMany,
    Unauthorized,
)
from ..core.params import parse_client_id, parse_length
from ..core.topics import validate_topic

if TYPE_CHECKING:
    from ..authentication import Identity

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_QUERY_STRING = 16 * 1024


class Request:
    """The parts of an ASGI HTTP scope (or a WebSocket handshake's, for the
    authenticators) the endpoints need, validated on access."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        # A WebSocket handshake is a GET (its scope has no method).
        self.method: str = scope.get("method", "GET")
        self.query = _parse_query(scope.get("query_string", b""))
        self.headers: dict[bytes, bytes] = {}
        for name, value in scope.get("headers", ()):
            self.headers[name.lower()] = value
        self._identity: Any = None
        self._session: Any = None
        self._django: Any = None

    @classmethod
    def from_django(cls, request: HttpRequest) -> Request:
        """The same view of a Django ``HttpRequest`` (WSGI or ASGI), for the views.

        Identity comes from the project's middleware (``request.auser``) when it ran.
        The client's departure is not seen here: Django cancels the view instead.
        """
        headers = []
        for key, value in request.META.items():
            if key.startswith("HTTP_"):
                name = key[5:]
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                name = key
            else:
                continue
            if isinstance(value, str):
                headers.append(
                    (
                        name.replace("_", "-").lower().encode("latin-1"),
                        value.encode("latin-1", "replace"),
                    )
                )
        query_text = request.META.get("QUERY_STRING", "") or ""
        try:
            query = query_text.encode("latin-1")
        except UnicodeEncodeError as exc:  # ASGI: Django decoded it as UTF-8
            raise BadRequest("Expected an ASCII (percent-encoded) query string.") from exc
        scope = {
            "method": request.method,
            "path": request.path,
            "query_string": query,
            "headers": headers,
        }
        self = cls(scope, _never_disconnect)
        self._django = request
        return self

    @property
    def django(self) -> HttpRequest | None:
        """The Django request when a view serves this one (None on the fast path)."""
        return self._django  # type: ignore[no-any-return]

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

    def client_id(self) -> str | None:
        """The ``client`` parameter (a polling client's own id, for presence), or None."""
        raw = self.param("client")
        return None if raw is None else parse_client_id("client", raw)

    def cursor(self, *, last_event_id: bool = False) -> Cursor:
        """The ``cursor`` parameters, merged (or, for SSE, ``Last-Event-ID``, which wins).

        ``cursor=`` may be repeated (one per topic, say): at most ``MAX_TOPICS`` of them,
        each topic in at most one (:func:`~rtdelivery.core.cursors.merge_cursors`).
        Empty values are no cursor, as a single empty ``cursor=`` always was."""
        conf = get_settings()
        text = self.header("last-event-id") if last_event_id else None
        if text:
            return Cursor.decode(text, conf.cursor_key)
        values = self.query.get("cursor", [])
        if len(values) > conf.max_topics:
            raise BadRequest(
                f"Expected at most {conf.max_topics} 'cursor' parameters (MAX_TOPICS), "
                f"got {len(values)}."
            )
        texts = [value for value in values if value]
        if not texts:
            return Cursor()
        return merge_cursors(texts, conf.cursor_key)

    def session(self) -> Any:
        """The Django session named by the request's session cookie, or None.

        Built here on demand rather than by Channels' SessionMiddleware, which creates a
        session store through the thread pool for every request, and keeps it for the
        life of every stream, whether a policy needs the user or not.
        """
        if self._session is None:
            session = getattr(self._django, "session", None)
            if session is not None:
                self._session = session
                return session
            if not apps.is_installed("django.contrib.sessions"):
                return None
            cookies = parse_cookie(self.header("cookie") or "")
            key = cookies.get(settings.SESSION_COOKIE_NAME)
            if not key:
                return None
            engine = import_module(settings.SESSION_ENGINE)
            self._session = engine.SessionStore(key)
        return self._session

    def bearer(self) -> str | None:
        """The credential of ``Authorization: Bearer <credential>``, or None (no header,
        another scheme). An empty one is a 401 ``token_malformed``."""
        value = self.header("authorization")
        if value is None:
            return None
        scheme, _, credential = value.strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        credential = credential.strip()
        if not credential:
            raise TokenMalformed("Expected 'Authorization: Bearer <token>', got no token.")
        return credential

    async def identity(self) -> Identity:
        """Who the client is, by ``RTDELIVERY["AUTHENTICATORS"]`` in order (first call
        only; a refusal is remembered and raised again)."""
        identity = self._identity
        if identity is None:
            from ..authentication import authenticate

            try:
                identity = self._identity = await authenticate(self)
            except Unauthorized as exc:
                self._identity = exc
                raise
        if isinstance(identity, Unauthorized):
            raise identity
        return identity  # type: ignore[no-any-return]

    async def user(self) -> Any:
        """The user, loaded on first use only (policies like "anyone" skip it): see
        :meth:`identity`. Anonymous is ``AnonymousUser`` (None without ``django.contrib.auth``).

        Refused credentials give a :class:`~rtdelivery.authentication.RefusedIdentity`:
        anonymous to what only looks (presence), and raising the refusal (401:
        ``token_expired``, …) wherever a policy rule needs the user, as on a WebSocket.
        """
        try:
            return (await self.identity()).user
        except Unauthorized as exc:
            from ..authentication import RefusedIdentity

            return RefusedIdentity(exc)

    async def load_identity(self) -> None:
        """Resolve the identity now (WSGI: on the request's own thread, where its
        database connection is); a refusal is kept for later calls."""
        with contextlib.suppress(Unauthorized):
            await self.identity()

    def as_django(self) -> HttpRequest:
        """A minimal Django ``HttpRequest`` with this request's method, path, query and
        headers (``META``), for authenticators written for Django (DRF's) on the fast
        path and on WebSockets, where Django made none."""
        request = HttpRequest()
        request.method = self.method
        request.path = request.path_info = self.scope.get("path", "/")
        query = self.scope.get("query_string", b"").decode("latin-1")
        request.GET = QueryDict(query)
        meta: dict[str, Any] = {
            "REQUEST_METHOD": self.method,
            "PATH_INFO": request.path,
            "QUERY_STRING": query,
        }
        client = self.scope.get("client")
        if client:
            meta["REMOTE_ADDR"] = client[0]
        for name, value in self.headers.items():
            key = name.decode("latin-1").upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            meta[key] = value.decode("latin-1")
        request.META = meta
        return request

    async def body(self, max_bytes: int) -> bytes:
        length = self.header("content-length")
        declared = None if length is None else parse_length(length)
        if declared is not None and declared > max_bytes:
            raise TooLarge(f"Expected a request body of at most {max_bytes} bytes, got {length}.")
        if self._django is not None:
            try:
                body: bytes = self._django.body
            except RequestDataTooBig as exc:
                raise TooLarge(f"Expected a request body of at most {max_bytes} bytes.") from exc
            except ValueError as exc:  # Django's int() of a malformed Content-Length
                raise BadRequest(f"Expected a numeric Content-Length, got {length!r}.") from exc
            if len(body) > max_bytes:
                raise TooLarge(f"Expected a request body of at most {max_bytes} bytes.")
            return body
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


async def _never_disconnect() -> dict[str, Any]:
    # Views are cancelled by Django when the client leaves; nothing to report here.
    await asyncio.Event().wait()
    raise AssertionError("unreachable")  # pragma: no cover


def _parse_query(raw_qs: bytes) -> dict[str, list[str]]:
    if len(raw_qs) > MAX_QUERY_STRING:
        raise TooLarge(f"Expected a query string of at most {MAX_QUERY_STRING} bytes.")
    try:
        return parse_qs(raw_qs.decode("ascii"), keep_blank_values=True)
    except UnicodeDecodeError as exc:
        raise BadRequest("Expected an ASCII (percent-encoded) query string.") from exc


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
