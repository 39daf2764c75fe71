"""Errors with a stable machine-readable ``code``, mapped to HTTP statuses and error frames."""

from __future__ import annotations


class RTDeliveryError(Exception):
    """Base class: ``code`` goes on the wire, ``status`` is the HTTP status to answer with."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


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


class HistoryUnavailable(RTDeliveryError):
    """The history backend could not be reached."""

    code = "unavailable"
    status = 503
