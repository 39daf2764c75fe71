"""Connection tokens: short-lived signed credentials for clients without the session cookie.

A mobile app, a single-page app on another origin or a service gets a token from a view
of the project (where the user is known)::

    from rtdelivery.tokens import connection_token


    def realtime_token(request):
        return JsonResponse({"token": connection_token(request.user, ttl=300)})

and presents it on every transport: ``Authorization: Bearer <token>`` where it can set
headers, the ``access_token`` query parameter where it cannot (``EventSource``, the
browser's ``WebSocket``). It then counts as that user for the policy, exactly as a
session would (docs/security.md, "Connection tokens").

A token is ``rt1:`` followed by a ``django.core.signing`` signature (HMAC-SHA256 keyed by
``SECRET_KEY``, salted for rtdelivery only, ``SECRET_KEY_FALLBACKS`` honoured) over
``{"u": user pk, "e": expiry in epoch ms, "t": [topic patterns]?}``. No new crypto, no
database row: verifying costs one HMAC, and the user is loaded only when a policy rule
needs to know who the client is.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core import signing

from .core.errors import TokenExpired, TokenInvalid, TokenMalformed

#: Every connection token starts with this; other ``Bearer`` values (a server's publish
#: token, a JWT for another authenticator) are not rtdelivery's to judge.
PREFIX = "rt1:"
#: The salt of rtdelivery's signatures: a signature Django makes for anything else with the
#: same ``SECRET_KEY`` (a session, a password reset link) is not a connection token.
SALT = "rtdelivery.tokens.connection"
#: The query parameter that carries a token where headers cannot be set.
PARAM = "access_token"
#: Longest accepted token (characters); far above what 50 topic patterns need.
MAX_LENGTH = 4096
#: Attribute set on the user a token authenticated: its :class:`TokenClaims`.
CLAIMS_ATTRIBUTE = "rtdelivery_token"

_B64 = "[A-Za-z0-9_-]"
#: ``rt1:<payload>:<signature>``: url-safe base64 parts, a SHA-256 signature's 43 characters.
_SHAPE = re.compile(rf"{_B64}+:{_B64}{{43}}")


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says: whose it is, until when, and for which topics."""

    user_pk: str
    #: Expiry, epoch seconds.
    expires: float
    #: Topic patterns (``fnmatch``, like ``RTDELIVERY["TOPICS"]`` keys), or None: any topic.
    topics: tuple[str, ...] | None = None

    def allows(self, topic: str) -> bool:
        """Whether the token counts on ``topic`` (outside its topics it counts for nothing)."""
        if self.topics is None:
            return True
        return any(fnmatch.fnmatchcase(topic, pattern) for pattern in self.topics)

    def remaining(self, now: float | None = None) -> float:
        """Seconds until expiry (negative once expired)."""
        return self.expires - (_now() if now is None else now)


def _now() -> float:
    return time.time()


def _signer() -> signing.Signer:
    # Signer (not TimestampSigner): the expiry is in the payload, so each token has its own
    # lifetime; the HMAC covers it all. Keys: SECRET_KEY, then SECRET_KEY_FALLBACKS.
    return signing.Signer(salt=SALT, algorithm="sha256")


def _ttl_seconds(ttl: Any) -> float:
    if ttl is None:
        from .conf import get_settings

        return float(get_settings().token_ttl)
    if isinstance(ttl, timedelta):
        ttl = ttl.total_seconds()
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
        raise ValueError(f"Expected ttl to be a number of seconds > 0 or a timedelta, got {ttl!r}.")
    if math.isinf(ttl):
        raise ValueError("Expected a finite ttl; connection tokens always expire.")
    return float(ttl)


def _topic_patterns(topics: Any) -> list[str] | None:
    if topics is None:
        return None
    if isinstance(topics, str) or not isinstance(topics, Iterable):
        raise TypeError(
            "Expected topics to be a list of topic patterns (e.g. ['chat.*']) or None, "
            f"got {type(topics).__name__}."
        )
    patterns = list(topics)
    if not patterns:
        raise ValueError(
            "Expected at least one topic pattern (None: any topic); a token for no topic "
            "would allow nothing."
        )
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise TypeError(f"Expected topic patterns to be non-empty strings, got {pattern!r}.")
    return patterns


def connection_token(user: Any, ttl: float | timedelta | None = None, topics: Any = None) -> str:
    """A token that authenticates as ``user`` on every transport for ``ttl`` seconds
    (default ``RTDELIVERY["TOKEN_TTL"]``), on the ``topics`` patterns only if given.

    Limited to some topics, the token counts for nothing on any other: there the client
    is anonymous (it may still read what anyone may read).
    """
    if not getattr(user, "is_authenticated", False) or getattr(user, "pk", None) is None:
        raise ValueError(
            f"Expected an authenticated user with a primary key, got {type(user).__name__}; "
            "anonymous clients need no token."
        )
    seconds = _ttl_seconds(ttl)
    claims: dict[str, Any] = {"u": str(user.pk), "e": math.ceil((_now() + seconds) * 1000)}
    patterns = _topic_patterns(topics)
    if patterns is not None:
        claims["t"] = patterns
    token = PREFIX + _signer().sign_object(claims)
    if len(token) > MAX_LENGTH:
        raise ValueError(
            f"Expected a token of at most {MAX_LENGTH} characters; these topic patterns make "
            f"it {len(token)}. Use fewer or broader patterns."
        )
    return token


def is_connection_token(value: str) -> bool:
    """Whether ``value`` claims to be a connection token (it may still fail to verify)."""
    return value.startswith(PREFIX)


def read_token(token: Any) -> TokenClaims:
    """Verify ``token`` (signature first, then expiry) without touching the database.

    Raises ``TokenMalformed`` (not a token's shape), ``TokenInvalid`` (a bad signature:
    tampered, or signed with another ``SECRET_KEY``) or ``TokenExpired``. Messages never
    repeat the token: they reach clients and logs.
    """
    if not isinstance(token, str) or not token.startswith(PREFIX):
        raise TokenMalformed(f"Expected a connection token starting with {PREFIX!r}.")
    if len(token) > MAX_LENGTH:
        raise TokenMalformed(f"Expected a connection token of at most {MAX_LENGTH} characters.")
    body = token[len(PREFIX) :]
    if not _SHAPE.fullmatch(body):
        raise TokenMalformed(
            "Expected a connection token as rtdelivery.tokens.connection_token() makes it "
            "(truncated, or altered in transit?)."
        )
    try:
        claims = _signer().unsign_object(body)
    except signing.BadSignature as exc:
        raise TokenInvalid(
            "The connection token's signature does not match (altered, or made by another "
            "deployment or with another SECRET_KEY)."
        ) from exc
    except ValueError as exc:  # pragma: no cover - a genuine signature over bad JSON
        raise TokenInvalid("The connection token's contents are not valid.") from exc
    if not (
        isinstance(claims, dict)
        and isinstance(claims.get("u"), str)
        and isinstance(claims.get("e"), int)
        and (
            "t" not in claims
            or (isinstance(claims["t"], list) and all(isinstance(t, str) for t in claims["t"]))
        )
    ):
        raise TokenInvalid("The connection token's contents are not valid.")
    expires = claims["e"] / 1000
    now = _now()
    if now >= expires:
        raise TokenExpired(
            f"The connection token expired {now - expires:.0f} s ago; fetch a fresh one."
        )
    topics = claims.get("t")
    return TokenClaims(claims["u"], expires, None if topics is None else tuple(topics))


def _load_user(pk: str) -> Any:
    from django.contrib.auth import get_user_model
    from django.core.exceptions import ValidationError

    model = get_user_model()
    try:
        user = model._default_manager.get(pk=pk)
    except (model.DoesNotExist, ValueError, TypeError, ValidationError):
        return None
    # The check ModelBackend makes at login: a deactivated user's tokens stop working.
    if not getattr(user, "is_active", True):
        return None
    return user


async def authenticate_token(token: str) -> Any:
    """The user ``token`` authenticates, loaded off the event loop; its claims are on
    the user as ``rtdelivery_token`` (see :func:`token_claims`)."""
    from channels.db import database_sync_to_async

    claims = read_token(token)
    user = await database_sync_to_async(_load_user)(claims.user_pk)
    if user is None:
        raise TokenInvalid("The connection token's user does not exist or is not active.")
    setattr(user, CLAIMS_ATTRIBUTE, claims)
    return user


def token_claims(user: Any) -> TokenClaims | None:
    """The claims of the token that authenticated ``user``; None for a session or another
    authenticator (e.g. to end a stream when ``claims.remaining()`` reaches 0)."""
    claims = getattr(user, CLAIMS_ATTRIBUTE, None)
    return claims if isinstance(claims, TokenClaims) else None


# -- keeping tokens out of logs ----------------------------------------------------------

_PARAM_VALUE = re.compile(rf"(\b{PARAM}=)[^&\s\"'#]*")
_TOKEN_TEXT = re.compile(rf"\b{re.escape(PREFIX)}[A-Za-z0-9_:%-]+")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with ``access_token=`` values and connection tokens replaced by [redacted]."""
    if PARAM not in text and PREFIX not in text:
        return text
    text = _PARAM_VALUE.sub(rf"\g<1>{REDACTED}", text)
    return _TOKEN_TEXT.sub(PREFIX + REDACTED, text)


class RedactTokens(logging.Filter):
    """A logging filter that redacts tokens from a record's message (and its arguments).

    rtdelivery logs no URL query and no token itself; attach this to the loggers or
    handlers of your server's access log, which print whole URLs::

        LOGGING["filters"] = {"rt_redact": {"()": "rtdelivery.tokens.RedactTokens"}}
        LOGGING["handlers"]["console"]["filters"] = ["rt_redact"]
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # Arguments are redacted one by one rather than merged into the message: some
        # formatters read them (Uvicorn's access log unpacks record.args).
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        elif isinstance(args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in args.items()}
        return True


__all__ = [
    "PARAM",
    "PREFIX",
    "RedactTokens",
    "TokenClaims",
    "authenticate_token",
    "connection_token",
    "read_token",
    "redact",
    "token_claims",
]
