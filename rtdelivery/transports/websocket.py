"""WebSocket transport: one full-duplex connection for subscribe, publish and presence.

:func:`serve_websocket` runs one connection; :class:`rtdelivery.consumers.RealtimeConsumer`
is its Channels consumer. Events reach the socket straight from the hub's inbox (one
task per connection writes them), so no consumer handler, no layer message and no
``aclose_old_connections()`` thread hop happen per delivered event. ``scope["user"]`` comes
from Channels' ``AuthMiddlewareStack`` (absent: anonymous).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any

from .. import access, metrics
from ..conf import get_settings
from ..core.cursors import Cursor, Position
from ..core.errors import RTDeliveryError, Unavailable
from ..core.errors import WebSocketClose as _Close
from ..core.topics import validate_topic
from ..hub import Subscription, get_hub
from ..policy import SUBSCRIBE, authorize, authorize_client_publish, effective_user
from ..presence import connection_id
from ..publishing import apublish_as, publisher_namespace, validate_key
from ..subscriber import Notice, Subscriber
from . import flow, limits
from .http import Receive, Scope, Send
from .origins import origin_allowed
from .websocket_writer import (
    CLOSE_ACCESS_ENDED,
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_TOO_BIG,
    CLOSE_TOO_MANY_CONNECTIONS,
    CLOSE_TOO_SLOW,
    CLOSE_TRY_AGAIN,
    CLOSE_UNSUPPORTED,
    WRITE_CHUNK,
    Writer,
    fallback_close_code,
    send_close,
)

logger = logging.getLogger("rtdelivery.websocket")


def _frame(payload: dict[str, Any]) -> Notice:
    return Notice("frame", text=json.dumps(payload, separators=(",", ":")))


def _error(code: str, message: str, ref: Any = None, **extra: Any) -> Notice:
    payload: dict[str, Any] = {"op": "error", "code": code, "message": message, **extra}
    if ref is not None:
        payload["ref"] = ref
    return _frame(payload)


class Connection(Writer):
    """State of one WebSocket connection."""

    __slots__ = (
        "_last",
        "_tokens",
        "access",
        "conf",
        "hub",
        "id",
        "ip",
        "key_namespace",
        "link",
        "presence_topics",
        "send",
        "sent",
        "sub",
        "user",
    )

    def __init__(self, user: Any, ip: str | None, send: Send) -> None:
        conf = get_settings()
        self.conf = conf
        # Not the handshake's scope: it would keep its headers (and the server's parsed
        # copies of them) alive for the life of the socket (docs/performance.md).
        self.user = user
        self.ip = ip
        #: Where this client's idempotency keys live (serve_websocket adds the session).
        self.key_namespace = publisher_namespace(limits.user_key(user), None, ip)
        self.id = connection_id()  # "<pid>.<n>", shared with SSE streams
        self.sub = Subscriber(conf.queue_size)
        # Writes wait for room under every server (Daphne's own send never does), and a
        # shutdown closes the socket with 1001 (rtdelivery.shutdown).
        self.link = flow.connect(send, self.sub, scope_type="websocket")
        self.send = self.link.send
        self.hub = get_hub()
        #: Position of the last event sent per topic: the cursor to resume from.
        self.sent: dict[str, Position] = {}
        self.presence_topics: set[str] = set()
        #: Its registration (rtdelivery.access), for an authenticated user only.
        self.access: access.Registration | None = None
        self._tokens = float(conf.ws_burst)
        self._last = time.monotonic()
        self._init_writer()

    # -- rate limiting --------------------------------------------------------------
    def _take_token(self) -> bool:
        now = time.monotonic()
        self._tokens = min(
            float(self.conf.ws_burst), self._tokens + (now - self._last) * self.conf.ws_rate
        )
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    # -- reading ---------------------------------------------------------------------
    async def on_text(self, text: str) -> None:
        if len(text.encode("utf-8")) > self.conf.ws_max_message_bytes:
            raise _Close(CLOSE_TOO_BIG, "frame too big")
        if not self._take_token():
            metrics.refused("ws", 429, "too_many_frames")
            raise _Close(CLOSE_POLICY, "too many frames")
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):
            self.sub.push_notice(_error("invalid_json", "Expected a JSON object frame."))
            return
        if not isinstance(frame, dict):
            self.sub.push_notice(
                _error("invalid_frame", f"Expected a JSON object, got {type(frame).__name__}.")
            )
            return
        ref = frame.get("ref")
        if ref is not None and not isinstance(ref, str | int):
            ref = None
        op = frame.get("op")
        handler = self.OPS.get(op) if isinstance(op, str) else None
        if handler is None:
            self.sub.push_notice(
                _error(
                    "unknown_op",
                    f"Expected op to be one of {', '.join(sorted(self.OPS))}, got {op!r}.",
                    ref,
                )
            )
            return
        try:
            await handler(self, frame, ref)
        except Unavailable as exc:
            error = _error(exc.code, exc.message, ref, retry_after=exc.retry_after)
            self.sub.push_notice(error)
            if op == "subscribe":
                # The topic is not live: close (after the error frame) so that the client
                # reconnects with backoff and resumes every topic from its cursor.
                self.sub.push_notice(Notice("close", data=(CLOSE_TRY_AGAIN, "unavailable")))
        except RTDeliveryError as exc:
            metrics.refused("ws", exc.status, exc.code)
            # An error about one topic names it ("topic"), so a client can tell which.
            extra = {} if exc.topic is None else {"topic": exc.topic}
            self.sub.push_notice(_error(exc.code, exc.message, ref, **extra))

    async def op_subscribe(self, frame: dict[str, Any], ref: Any) -> None:
        topic = validate_topic(frame.get("topic"))
        if topic in self.sub.topics:
            raise RTDeliveryError(
                f"Already subscribed to {topic!r}.", code="already_subscribed", topic=topic
            )
        if len(self.sub.topics) >= self.conf.max_topics:
            # Refused by name, as over HTTP: the socket and its other topics go on.
            raise RTDeliveryError(
                f"Expected at most {self.conf.max_topics} topics per connection "
                f"(MAX_TOPICS); not subscribed to {topic!r}.",
                code="too_many_topics",
                topic=topic,
            )
        since_text = frame.get("since")
        since: Position | None = None
        if since_text is not None:
            try:
                since = Cursor.decode(since_text, self.conf.cursor_key).get(topic)
            except RTDeliveryError as exc:
                exc.topic = topic  # the subscription it refuses
                raise
            if since is None and since_text:
                # A cursor for other topics: this one starts at the live end.
                since = None
        await authorize(self.user, topic, SUBSCRIBE)
        key = self.conf.cursor_key

        def announce(subscription: Subscription) -> Notice:
            payload: dict[str, Any] = {
                "op": "subscribed",
                "topic": topic,
                "recovered": subscription.recovered,
                "cursor": Cursor(
                    {topic: since if since and subscription.recovered else subscription.position}
                ).encode(key),
            }
            if ref is not None:
                payload["ref"] = ref
            text = json.dumps(payload, separators=(",", ":"))
            if since is not None and not subscription.recovered:
                # The connection's cursor moves past the lost events only once the client
                # has been told: a too_slow cursor taken before that keeps `since`, so the
                # next resume is told too (never a silent gap).
                return Notice("frame", text=text, data=(topic, subscription.position))
            return Notice("frame", text=text)

        if since is not None:
            # Covered by a too_slow cursor even if the inbox overflows during the replay.
            self.sent[topic] = since
        try:
            subscription = await self.hub.subscribe(self.sub, topic, since, announce=announce)
        except BaseException:
            self.sent.pop(topic, None)
            raise
        if since is None:
            self.sent[topic] = subscription.position
        # else: `since` until the replay or the `subscribed` frame is written (see announce).
        if self.conf.topic_options(topic).presence:
            from ..presence import get_presence

            # Recorded first: a join that fails half-way is still left on close.
            self.presence_topics.add(topic)
            await get_presence().join(topic, self.id, effective_user(self.user, topic))

    async def op_unsubscribe(self, frame: dict[str, Any], ref: Any) -> None:
        topic = validate_topic(frame.get("topic"))
        if topic not in self.sub.topics:
            raise RTDeliveryError(
                f"Not subscribed to {topic!r}.", code="not_subscribed", topic=topic
            )
        await self.hub.unsubscribe(self.sub, topic)
        self.sent.pop(topic, None)
        await self._leave_presence(topic)
        payload: dict[str, Any] = {"op": "unsubscribed", "topic": topic}
        if ref is not None:
            payload["ref"] = ref
        self.sub.push_notice(_frame(payload))

    async def op_publish(self, frame: dict[str, Any], ref: Any) -> None:
        topic = validate_topic(frame.get("topic"))
        await authorize_client_publish(self.user, topic)
        try:
            limits.take_publish(limits.user_key(self.user), self.ip)
        except limits.PublishRateLimited as exc:
            metrics.refused("ws", exc.status, exc.code)
            self.sub.push_notice(_error(exc.code, exc.message, ref, retry_after=exc.retry_after))
            return
        event_type = frame.get("type", "message")
        if "data" not in frame:
            raise RTDeliveryError("Expected 'data' in a publish frame.", code="invalid_event")
        key = validate_key(frame["key"]) if "key" in frame else None
        # A client's key is its own: another publisher on the topic cannot take it first.
        event = await apublish_as(
            self.key_namespace, topic, frame["data"], type=event_type, key=key
        )
        payload: dict[str, Any] = {"op": "ack", "topic": topic, "seq": event.seq, "id": event.id}
        if event.duplicate:
            payload["duplicate"] = True
        if ref is not None:
            payload["ref"] = ref
        self.sub.push_notice(_frame(payload))

    async def op_presence(self, frame: dict[str, Any], ref: Any) -> None:
        topic = validate_topic(frame.get("topic"))
        await authorize(self.user, topic, SUBSCRIBE)
        from ..presence import get_presence, presence_enabled

        presence_enabled(topic)
        snapshot = await get_presence().snapshot(topic)
        payload: dict[str, Any] = {"op": "presence", "topic": topic, **snapshot}
        if ref is not None:
            payload["ref"] = ref
        self.sub.push_notice(_frame(payload))

    async def op_ping(self, frame: dict[str, Any], ref: Any) -> None:
        payload: dict[str, Any] = {"op": "pong"}
        if ref is not None:
            payload["ref"] = ref
        self.sub.push_notice(_frame(payload))

    OPS = {
        "subscribe": op_subscribe,
        "unsubscribe": op_unsubscribe,
        "publish": op_publish,
        "presence": op_presence,
        "ping": op_ping,
    }

    async def _leave_presence(self, topic: str) -> None:
        if topic in self.presence_topics:
            self.presence_topics.discard(topic)
            from ..presence import get_presence

            with contextlib.suppress(Exception):
                await get_presence().leave(topic, self.id)

    async def close(self) -> None:
        if self.access is not None:
            self.access.close()
        await self.hub.unsubscribe_all(self.sub)
        for topic in list(self.presence_topics):
            await self._leave_presence(topic)


async def serve_websocket(
    scope: Scope, receive: Receive, send: Send, *, identify: bool = False
) -> None:
    """Run one WebSocket connection of the ``ws`` route (Origin check, then the protocol).

    ``identify``: settle ``scope["user"]`` with the authenticators first (what
    :class:`~rtdelivery.authentication.IdentityMiddleware` does, without a middleware
    frame kept for the life of the socket).

    One coroutine reads for the whole connection and one task writes. Nothing of the
    handshake (scope, headers, the authenticators' request) is kept once it is
    accepted: only the user, the client's address and the session key.
    """
    if scope["type"] != "websocket":  # pragma: no cover - routed by protocol
        raise ValueError(f"Expected a websocket scope, got {scope['type']!r}.")
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if not origin_allowed(_origin(scope)):
        metrics.refused("ws", 403, "origin")
        await send({"type": "websocket.close", "code": CLOSE_POLICY})
        return
    if identify:
        from ..authentication import identify as identify_scope

        scope = await identify_scope(scope, receive)
    user = scope.get("user")
    ip = limits.scope_ip(scope)
    session_key = _session_key(scope)
    del scope, message  # see the docstring
    user_key = limits.user_key(user)
    try:
        limits.check_connection(user_key, ip)
    except limits.TooManyConnections as exc:
        metrics.refused("ws", exc.status, exc.code)
        # Accepted first, so that the client reads the code and why (a refused handshake
        # is a bare 403 to a browser); an error frame too, since Daphne drops close reasons.
        await send({"type": "websocket.accept"})
        error = {
            "op": "error",
            "code": exc.code,
            "message": exc.message,
            "retry_after": exc.retry_after,
        }
        await send({"type": "websocket.send", "text": json.dumps(error)})
        await send_close(send, _Close(CLOSE_TOO_MANY_CONNECTIONS, "too_many_connections"))
        return
    with limits.connection(user_key, ip):
        conn = Connection(user, ip, send)
        conn.key_namespace = publisher_namespace(user_key, session_key, ip)
        metrics.CONNECTIONS["ws"].inc()
        try:
            await send({"type": "websocket.accept"})
            metrics.OPENED["ws"].inc()
            conn.access = await access.register(conn.sub, user, session_key, conn.id, "ws")
            # Two coroutines per connection: this one reads, one task writes. (No third
            # task to supervise them, no nested frames: memory per idle connection is a
            # published figure.)
            conn.start_writer()
            close: _Close | None = None
            try:
                while True:  # reading, inline: a coroutine frame less per connection
                    message = await receive()
                    kind = message["type"]
                    if kind == "websocket.disconnect":
                        break
                    if kind != "websocket.receive" or conn.close_sent:
                        continue
                    if conn.access is not None and conn.access.ended is not None:
                        continue  # access ended: the close is on its way; act for nobody
                    text = message.get("text")
                    if text is None:
                        if len(message.get("bytes") or b"") > conn.conf.ws_max_message_bytes:
                            raise _Close(CLOSE_TOO_BIG, "frame too big")
                        if not conn._take_token():  # binary frames count against the rate too
                            metrics.refused("ws", 429, "too_many_frames")
                            raise _Close(CLOSE_POLICY, "too many frames")
                        conn.sub.push_notice(
                            _error("invalid_frame", "Expected JSON text frames, got binary.")
                        )
                        continue
                    del message
                    await conn.on_text(text)
                    del text
            except _Close as exc:
                close = exc
            except Exception:
                logger.exception("WebSocket connection failed")
                close = _Close(1011, "internal error")
            finally:
                await conn.stop_writer()
                await conn.close()
            if close is not None and not conn.close_sent:
                await send_close(send, close)
        finally:
            metrics.CONNECTIONS["ws"].dec()
            conn.link.release()


def _origin(scope: Scope) -> str | None:
    """The handshake's ``Origin`` header (ASGI header names are lowercase), or None."""
    for name, value in scope.get("headers", ()):
        if name == b"origin":
            return str(value.decode("latin-1"))
    return None


def _session_key(scope: Scope) -> str | None:
    """The key of the handshake's session (None without one); not loaded from the store."""
    session = scope.get("session")
    try:
        key = getattr(session, "session_key", None)
    except Exception:  # a lazy session that cannot be read
        return None
    return key if isinstance(key, str) else None


__all__ = [
    "CLOSE_ACCESS_ENDED",
    "CLOSE_GOING_AWAY",
    "CLOSE_POLICY",
    "CLOSE_TOKEN_EXPIRED",
    "CLOSE_TOO_BIG",
    "CLOSE_TOO_MANY_CONNECTIONS",
    "CLOSE_TOO_SLOW",
    "CLOSE_TRY_AGAIN",
    "CLOSE_UNSUPPORTED",
    "WRITE_CHUNK",
    "fallback_close_code",
    "serve_websocket",
]
