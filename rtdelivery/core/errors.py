"""Errors with a stable machine-readable ``code``, mapped to HTTP statuses and error frames."""

from __future__ import annotations


class RTDeliveryError(Exception):
    """Base class: ``code`` goes on the wire, ``status`` is the HTTP status to answer with."""

    code = "error"
    status = 400
    #: The one topic an error is about (a refusal, an invalid or unknown topic), or None;
    #: on the wire as ``"topic"`` so a client can drop that topic and go on with the rest.
    topic: str | None = None

    def __init__(self, message: str, *, code: str | None = None, topic: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if topic is not None:
            self.topic = topic

    def as_dict(self) -> dict[str, str]:
        """The error object on the wire: ``code``, ``message`` and, when the error is
        about one topic, ``topic``."""
        payload = {"code": self.code, "message": self.message}
        if self.topic is not None:
            payload["topic"] = self.topic
        return payload


class InvalidTopic(RTDeliveryError):
    code = "invalid_topic"


class InvalidCursor(RTDeliveryError):
    code = "invalid_cursor"


class InvalidEvent(RTDeliveryError):
    """Bad event type or data (not JSON-serializable, wrong shape)."""

    code = "invalid_event"


class BadRequest(RTDeliveryError):
    code = "bad_request"


class TooLarge(RTDeliveryError):
    """A request, frame or event beyond its size limit."""

    code = "too_large"
    status = 413


class EventTooLarge(TooLarge):
    """Event data beyond ``MAX_EVENT_BYTES``."""


class NotFound(RTDeliveryError):
    code = "not_found"
    status = 404


class MethodNotAllowed(RTDeliveryError):
    code = "method_not_allowed"
    status = 405


class TooMany(RTDeliveryError):
    code = "rate_limited"
    status = 429


class InternalError(RTDeliveryError):
    code = "internal"
    status = 500


class Forbidden(RTDeliveryError):
    code = "forbidden"
    status = 403


class PresenceDisabled(RTDeliveryError):
    """Presence was asked for on a topic without ``"presence": True``."""

    code = "presence_disabled"


class Unavailable(RTDeliveryError):
    """A backend rtdelivery needs (Redis: history, presence, the channel layer) cannot
    be reached. The one error for every such failure, whichever the operation.

    The message never names the backend or its address (``rtdelivery.outage`` logs the
    detail server-side). Transports answer 503 with ``Retry-After: retry_after``.
    """

    code = "unavailable"
    status = 503
    MESSAGE = "The realtime backend is unavailable; retry later."
    #: Seconds a client should wait before retrying (the ``Retry-After`` header).
    RETRY_AFTER = 2

    def __init__(self, message: str = MESSAGE, *, retry_after: int = RETRY_AFTER) -> None:
        super().__init__(message)
        self.retry_after = retry_after


#: Former names of :class:`Unavailable`, kept importable.
HistoryUnavailable = Unavailable
PresenceUnavailable = Unavailable


class SlowConsumer(Exception):
    """The connection did not keep up: its buffer overflowed and was dropped.

    The client resumes from the cursor of the last event it actually received.
    """


class SubscriberClosed(Exception):
    """The subscriber was closed (server shutting down or the hub stopped)."""


class UpgradeRequired(RTDeliveryError):
    """A plain HTTP request to the WebSocket route."""

    code = "upgrade_required"
    status = 426


class ClientGone(Exception):
    """The client disconnected before the answer was ready (not an error to report)."""


class WebSocketClose(Exception):
    """Ends a WebSocket connection with a close ``code`` (docs/protocol.md) and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Unauthorized(RTDeliveryError):
    """Credentials were presented and refused (401): the client is not who it claims.

    Distinct from :class:`Forbidden` (403), which refuses a known client (anonymous
    included) by policy. The subclasses' codes are documented in docs/protocol.md.
    """

    code = "unauthorized"
    status = 401
    #: The ``WWW-Authenticate`` header of the 401 (RFC 9110 requires one).
    www_authenticate = 'Bearer realm="rtdelivery", error="invalid_token"'


class TokenExpired(Unauthorized):
    """A genuine connection token past its expiry: fetch a fresh one and resume."""

    code = "token_expired"


class TokenInvalid(Unauthorized):
    """A well-formed connection token that fails: tampered, signed by another deployment
    (``SECRET_KEY``), or whose user no longer exists or is inactive."""

    code = "token_invalid"


class TokenMalformed(Unauthorized):
    """Not a connection token at all (truncated, wrong shape, bad encoding)."""

    code = "token_malformed"


class AuthenticationFailed(Unauthorized):
    """A custom authenticator (e.g. Django REST framework's) refused the credentials."""

    code = "authentication_failed"
    www_authenticate = 'Bearer realm="rtdelivery"'
