"""The small HTTP endpoints: ``history``, ``publish`` and ``presence``."""

from __future__ import annotations

import hmac
import json
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest
from django.middleware.csrf import CsrfViewMiddleware

from ..conf import get_settings
from ..core.cursors import Cursor
from ..core.errors import Forbidden, InvalidEvent
from ..core.params import parse_int
from ..core.topics import validate_topic
from ..history import get_history
from ..policy import SUBSCRIBE, authorize, authorize_client_publish
from ..publishing import apublish, apublish_as, publisher_namespace, validate_key
from ..tokens import is_connection_token
from . import limits
from .common import authorize_all
from .http import BadRequest, Request, Send, events_body, respond


def _limit(request: Request, maximum: int) -> int:
    raw = request.param("limit")
    if raw is None:
        return maximum
    return parse_int("limit", raw, 1, maximum)


async def history(request: Request, send: Send) -> None:
    """``GET history?topic=T[&limit=N][&cursor=C]``: the latest N events, or those after C."""
    conf = get_settings()
    topics = request.topics()
    if len(topics) != 1:
        raise BadRequest(f"Expected exactly one 'topic' for history, got {len(topics)}.")
    topic = topics[0]
    limit = _limit(request, conf.history_limit)
    cursor = request.cursor()
    await authorize_all(request, topics)
    since = cursor.get(topic)
    store = get_history()
    if since is None:
        result = await store.latest(topic, limit)
    else:
        result = await store.read(topic, since, limit)
    cursor_text = Cursor({topic: result.position}).encode(conf.cursor_key)
    lost = [] if result.recovered else [topic]
    await respond(send, 200, events_body(result.events, cursor_text, result.recovered, lost))


class _CsrfCheck(CsrfViewMiddleware):
    """Django's own CSRF check, run the way Django REST framework runs it for
    session-authenticated API views: the failure reason comes back instead of the
    project's HTML failure page, so the answer stays JSON."""

    def _reject(self, request: Any, reason: str) -> Any:
        return reason


def _csrf_failure(request: HttpRequest) -> str | None:
    """Why Django's CSRF protection refuses ``request``, or None when it passes."""
    check = _CsrfCheck(_no_response)
    check.process_request(request)
    reason: Any = check.process_view(request, _no_response, (), {})
    return reason if isinstance(reason, str) else None


def _no_response(request: Any) -> Any:  # the CSRF check never calls on
    return None


def _bearer(request: Request) -> str | None:
    """A server's publish token (``Authorization: Bearer``), or None. A connection token
    (``rt1:…``, rtdelivery.tokens) is not one: it makes the client a user, and the policy
    applies as to any client."""
    value = request.header("authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        # e.g. "Basic", which browsers send by themselves to sites behind HTTP auth:
        # not ours; the session + CSRF rules apply.
        return None
    if not token.strip():
        raise Forbidden("Expected 'Authorization: Bearer <token>'.", code="bad_token")
    if is_connection_token(token.strip()):
        return None
    return token.strip()


async def _explicitly_authenticated(request: Request) -> bool:
    """Whether a credential the client presents itself (a connection token, a DRF token)
    says who it is: such a request cannot be forged cross-site, so no CSRF check. Cookie
    (and HTTP Basic) identities are checked, and so are anonymous clients."""
    return (await request.identity()).explicit


async def publish(request: Request, send: Send) -> None:
    """``POST publish`` with ``{"topic", "type", "data"}``: 201 ``{"topic", "seq", "id"}``."""
    conf = get_settings()
    content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
    token = _bearer(request)
    body = await request.body(conf.max_request_bytes)
    if token is not None:
        # Bytes: compare_digest() raises TypeError on non-ASCII str (a header may hold any).
        given = token.encode("latin-1")
        if not any(hmac.compare_digest(given, t.encode()) for t in conf.publish_tokens):
            raise Forbidden("The publish token is not valid.", code="bad_token")
    elif not await _explicitly_authenticated(request):
        # Session (cookie) authentication: Django's CSRF rules apply. (Views only: the
        # fast path serves held GETs, never a publish.)
        django_request = request.django
        if django_request is None:  # pragma: no cover - routed as a view
            raise Forbidden("Publishing needs the publish view.", code="csrf_failed")
        if settings.CSRF_USE_SESSIONS:
            reason = await sync_to_async(_csrf_failure)(django_request)
        else:
            reason = _csrf_failure(django_request)
        if reason:
            raise Forbidden(f"CSRF check failed: {reason}", code="csrf_failed")
    if content_type != "application/json":
        raise BadRequest(
            f"Expected Content-Type application/json, got {content_type or 'none'!r}.",
            code="invalid_json",
        )
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"Expected a JSON body: {exc}.", code="invalid_json") from exc
    if not isinstance(payload, dict):
        raise BadRequest(
            f"Expected a JSON object body, got {type(payload).__name__}.", code="invalid_json"
        )
    unknown = sorted(set(payload) - {"topic", "type", "data", "key"})
    if unknown:
        raise InvalidEvent(f"Expected only topic, type, data and key; got also {unknown}.")
    if "data" not in payload:
        raise InvalidEvent("Expected 'data' in the body.")
    topic = validate_topic(payload.get("topic"))
    key = validate_key(payload["key"]) if "key" in payload else None
    event_type = payload.get("type", "message")
    if token is None:
        await authorize_client_publish(request.user, topic)
        # Clients only: a server's publish token is not rate limited.
        user_pk = await limits.request_user_key(request)
        ip = limits.request_ip(request)
        limits.take_publish(user_pk, ip)
        # A client's key is its own: another publisher on the topic cannot take it first.
        session = request.session() if key is not None and user_pk is None else None
        namespace = publisher_namespace(user_pk, getattr(session, "session_key", None), ip)
        event = await apublish_as(namespace, topic, payload["data"], type=event_type, key=key)
    else:
        event = await apublish(topic, payload["data"], type=event_type, key=key)
    answer: dict[str, Any] = {"topic": event.topic, "seq": event.seq, "id": event.id}
    if event.duplicate:  # the first publish with this key: 200, nothing new was created
        answer["duplicate"] = True
    await respond(send, 200 if event.duplicate else 201, json.dumps(answer).encode())


async def presence(request: Request, send: Send) -> None:
    """``GET presence?topic=T``: who is subscribed to T right now."""
    from ..presence import get_presence, presence_enabled

    topics = request.topics()
    if len(topics) != 1:
        raise BadRequest(f"Expected exactly one 'topic' for presence, got {len(topics)}.")
    topic = topics[0]
    await authorize(request.user, topic, SUBSCRIBE)
    presence_enabled(topic)
    snapshot = await get_presence().snapshot(topic)
    await respond(send, 200, json.dumps({"topic": topic, **snapshot}).encode())
