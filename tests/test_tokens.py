"""Connection tokens (rtdelivery.tokens): minting, verification and its distinct refusals.

Each refusal has its own code: ``token_malformed`` (not a token's shape), ``token_invalid``
(a bad signature: tampered, another ``SECRET_KEY`` or salt; or a user gone), ``token_expired``.
All are 401s, and no message repeats the token.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core import signing

from rtdelivery import tokens
from rtdelivery.conf import validate
from rtdelivery.core.errors import TokenExpired, TokenInvalid, TokenMalformed, Unauthorized
from rtdelivery.tokens import (
    PREFIX,
    RedactTokens,
    TokenClaims,
    authenticate_token,
    connection_token,
    read_token,
    redact,
    token_claims,
)
from rtdelivery.transports.http import Request


class FakeUser:
    is_authenticated = True

    def __init__(self, pk: Any) -> None:
        self.pk = pk


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The tokens' clock, set by the test: ``clock[0] = t``."""
    now = [1_700_000_000.0]
    monkeypatch.setattr(tokens, "_now", lambda: now[0])
    return now


def refusal(token: Any, error: type[Unauthorized]) -> Unauthorized:
    with pytest.raises(error) as info:
        read_token(token)
    exc = info.value
    assert exc.status == 401
    assert exc.code == error.code
    if isinstance(token, str) and len(token) > len(PREFIX):
        assert token[len(PREFIX) :] not in exc.message  # never echoed
    return exc


# -- minting and reading -----------------------------------------------------------------


def test_round_trip_with_the_default_ttl(settings: Any, clock: list[float]) -> None:
    settings.RTDELIVERY = {"TOKEN_TTL": 120}
    token = connection_token(FakeUser(42))
    assert token.startswith("rt1:")
    claims = read_token(token)
    assert claims == TokenClaims("42", clock[0] + 120, None)
    assert claims.remaining() == 120
    assert claims.allows("anything.at.all")


def test_default_ttl_is_five_minutes(clock: list[float]) -> None:
    assert read_token(connection_token(FakeUser(1))).expires == clock[0] + 300


@pytest.mark.parametrize("ttl", [30, 30.0, timedelta(seconds=30)])
def test_ttl_as_seconds_or_timedelta(clock: list[float], ttl: Any) -> None:
    assert read_token(connection_token(FakeUser(1), ttl=ttl)).expires == clock[0] + 30


@pytest.mark.parametrize("ttl", [0, -5, float("inf"), float("nan"), "60", True, timedelta(0)])
def test_bad_ttl_refused(ttl: Any) -> None:
    with pytest.raises(ValueError, match="ttl"):
        connection_token(FakeUser(1), ttl=ttl)


@pytest.mark.parametrize("user", [AnonymousUser(), None, FakeUser(None)])
def test_only_authenticated_users_get_tokens(user: Any) -> None:
    with pytest.raises(ValueError, match="authenticated user"):
        connection_token(user)


def test_string_primary_keys(clock: list[float]) -> None:
    pk = "5d1c6c5e-1b5a-4c8e-8c1e-7d7b3f0a9f10"
    assert read_token(connection_token(FakeUser(pk))).user_pk == pk


def test_topic_limited_token() -> None:
    claims = read_token(connection_token(FakeUser(7), topics=["chat.*", "user.7"]))
    assert claims.topics == ("chat.*", "user.7")
    assert claims.allows("chat.lobby")
    assert claims.allows("user.7")
    assert not claims.allows("user.8")
    assert not claims.allows("staff.room")
    # Patterns match the whole name, case-sensitively, like RTDELIVERY["TOPICS"] keys.
    assert not claims.allows("Chat.lobby")
    assert not claims.allows("user.70")


@pytest.mark.parametrize(
    ("topics", "error"),
    [("chat.*", TypeError), ([], ValueError), ([""], TypeError), ([3], TypeError), (5, TypeError)],
)
def test_bad_topic_limits_refused(topics: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="topic pattern"):
        connection_token(FakeUser(1), topics=topics)


def test_too_many_topics_for_a_token_refused() -> None:
    with pytest.raises(ValueError, match="at most 4096 characters"):
        connection_token(FakeUser(1), topics=[f"topic.{i}.*" * 4 for i in range(200)])


# -- refusals ----------------------------------------------------------------------------


def test_expired(clock: list[float]) -> None:
    token = connection_token(FakeUser(1), ttl=10)
    clock[0] += 9.9
    assert read_token(token).remaining() == pytest.approx(0.1)
    clock[0] += 0.1
    exc = refusal(token, TokenExpired)
    assert "expired 0 s ago" in exc.message
    clock[0] += 3600
    assert "expired 3600 s ago" in refusal(token, TokenExpired).message


def _parts(token: str) -> tuple[str, str]:
    payload, signature = token[len(PREFIX) :].split(":")
    return payload, signature


def test_tampered_payload_is_invalid(clock: list[float]) -> None:
    token = connection_token(FakeUser(1), topics=["user.1"])
    payload, signature = _parts(token)
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for forged in ({**claims, "u": "2"}, {**claims, "t": ["*"]}, {"u": "1", "e": claims["e"]}):
        raw = base64.urlsafe_b64encode(json.dumps(forged, separators=(",", ":")).encode())
        forged_payload = raw.decode().rstrip("=")
        refusal(f"{PREFIX}{forged_payload}:{signature}", TokenInvalid)


def test_tampered_signature_is_invalid() -> None:
    payload, signature = _parts(connection_token(FakeUser(1)))
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    refusal(f"{PREFIX}{payload}:{flipped}", TokenInvalid)


def test_an_expired_forgery_is_invalid_not_expired(clock: list[float]) -> None:
    """The signature is checked first: a forger learns nothing from the expiry."""
    payload, signature = _parts(connection_token(FakeUser(1), ttl=1))
    clock[0] += 60
    refusal(
        f"{PREFIX}{payload}:{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}", TokenInvalid
    )


def test_other_secret_key_is_invalid(settings: Any) -> None:
    """A token from another deployment (another SECRET_KEY) is refused ..."""
    settings.SECRET_KEY = "another-deployment-secret-key-0123456789"
    foreign = connection_token(FakeUser(1))
    settings.SECRET_KEY = "this-deployment-secret-key-0123456789"
    refusal(foreign, TokenInvalid)
    # ... unless that key is one of this deployment's SECRET_KEY_FALLBACKS (key rotation).
    settings.SECRET_KEY_FALLBACKS = ["another-deployment-secret-key-0123456789"]
    assert read_token(foreign).user_pk == "1"


def test_other_salt_is_invalid(clock: list[float]) -> None:
    """Django signatures made for anything else with the same SECRET_KEY are no tokens."""
    claims = {"u": "1", "e": int((clock[0] + 60) * 1000)}
    for salt in ("", "django.core.signing", "rtdelivery.cursor", "other.app"):
        signed = signing.Signer(salt=salt, algorithm="sha256").sign_object(claims)
        refusal(PREFIX + signed, TokenInvalid)
    # signing.dumps() (a TimestampSigner: three parts) is not even a token's shape.
    refusal(PREFIX + signing.dumps(claims, salt=tokens.SALT), TokenMalformed)
    # The right salt: accepted (the test's construction is the real one).
    signed = signing.Signer(salt=tokens.SALT, algorithm="sha256").sign_object(claims)
    assert read_token(PREFIX + signed).user_pk == "1"


@pytest.mark.parametrize(
    "make",
    [
        lambda t: "",
        lambda t: "rt1:",
        lambda t: "Bearer " + t,
        lambda t: t[len(PREFIX) :],  # the prefix missing
        lambda t: "rt2:" + t[len(PREFIX) :],
        lambda t: t[:-1],  # truncated signature
        lambda t: t[:20],
        lambda t: t + "x",
        lambda t: t + ":" + "A" * 43,
        lambda t: t.replace(":", ".", 2),
        lambda t: t[:10] + "é" + t[11:],
        lambda t: t[:10] + "+" + t[11:],
        lambda t: t + " ",
        lambda t: "rt1:" + "A" * 5000,
        lambda t: None,
        lambda t: 42,
        lambda t: t.encode(),
    ],
)
def test_malformed(make: Any) -> None:
    refusal(make(connection_token(FakeUser(1))), TokenMalformed)


def test_a_valid_signature_over_the_wrong_shape_is_invalid(clock: list[float]) -> None:
    signer = signing.Signer(salt=tokens.SALT, algorithm="sha256")
    for claims in (
        [1, 2],
        {"u": 1, "e": 1},
        {"u": "1"},
        {"u": "1", "e": 1.5},
        {"u": "1", "e": 2**40, "t": "x"},
    ):
        refusal(PREFIX + signer.sign_object(claims), TokenInvalid)


# -- loading the user --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_authenticate_token_loads_the_user_with_its_claims() -> None:
    from asgiref.sync import sync_to_async

    User = get_user_model()
    alice = await sync_to_async(User.objects.create_user)("alice", password="x")
    token = connection_token(alice, topics=["chat.*"])
    user = await authenticate_token(token)
    assert user.pk == alice.pk
    claims = token_claims(user)
    assert claims is not None
    assert claims.topics == ("chat.*",)
    assert token_claims(alice) is None  # a user not from a token

    alice.is_active = False
    await sync_to_async(alice.save)()
    with pytest.raises(TokenInvalid, match="not active"):
        await authenticate_token(token)
    await sync_to_async(alice.delete)()
    with pytest.raises(TokenInvalid, match="does not exist"):
        await authenticate_token(token)


@pytest.mark.django_db(transaction=True)
async def test_a_token_for_a_primary_key_of_the_wrong_type_is_invalid() -> None:
    with pytest.raises(TokenInvalid):
        await authenticate_token(connection_token(FakeUser("not-an-integer")))


# -- where the token is found ------------------------------------------------------------


def request_with(headers: list[tuple[bytes, bytes]] = (), query: bytes = b"") -> Request:  # type: ignore[assignment]
    scope = {"type": "http", "method": "GET", "path": "/rt/poll", "query_string": query}
    scope["headers"] = list(headers)
    return Request(scope, None)  # type: ignore[arg-type]


def test_bearer_header() -> None:
    assert request_with([(b"authorization", b"Bearer rt1:abc")]).bearer() == "rt1:abc"
    assert request_with([(b"authorization", b"bearer  rt1:abc ")]).bearer() == "rt1:abc"
    assert request_with([(b"authorization", b"Basic dXNlcjpwYXNz")]).bearer() is None
    assert request_with([(b"authorization", b"Token abc")]).bearer() is None
    assert request_with().bearer() is None
    for empty in (b"Bearer", b"Bearer   "):
        with pytest.raises(TokenMalformed):
            request_with([(b"authorization", empty)]).bearer()


def test_as_django_request_for_authenticators() -> None:
    request = request_with(
        [(b"authorization", b"Token k"), (b"content-type", b"text/plain"), (b"x-a", b"1")],
        b"topic=a&b=2",
    ).as_django()
    assert request.META["HTTP_AUTHORIZATION"] == "Token k"
    assert request.META["CONTENT_TYPE"] == "text/plain"
    assert request.META["HTTP_X_A"] == "1"
    assert request.GET["b"] == "2"
    assert (request.method, request.path) == ("GET", "/rt/poll")


# -- keeping tokens out of logs ----------------------------------------------------------


def test_redact() -> None:
    token = connection_token(FakeUser(1))
    quoted = token.replace(":", "%3A")
    assert redact(f"GET /rt/sse?topic=a&access_token={quoted}&cursor=c") == (
        "GET /rt/sse?topic=a&access_token=[redacted]&cursor=c"
    )
    assert redact(f'"GET /rt/ws?access_token={token} HTTP/1.1" 101') == (
        '"GET /rt/ws?access_token=[redacted] HTTP/1.1" 101'
    )
    assert redact(f"Authorization: Bearer {token}") == "Authorization: Bearer rt1:[redacted]"
    assert redact("nothing to see ?topic=a") == "nothing to see ?topic=a"


def test_redact_tokens_filter_keeps_the_record_shape(caplog: pytest.LogCaptureFixture) -> None:
    token = connection_token(FakeUser(1))
    logger = logging.getLogger("tests.access")
    logger.addFilter(RedactTokens())
    try:
        with caplog.at_level(logging.INFO, logger="tests.access"):
            # Uvicorn's access log: the formatter unpacks these five arguments.
            logger.info(
                '%s - "%s %s HTTP/%s" %d',
                "127.0.0.1:5",
                "GET",
                f"/rt/sse?access_token={token}",
                "1.1",
                200,
            )
            logger.info("token %(t)s", {"t": token})
            logger.info(f"inline {token}")
    finally:
        logger.filters.clear()
    record = caplog.records[0]
    assert record.args == ("127.0.0.1:5", "GET", "/rt/sse?access_token=[redacted]", "1.1", 200)
    assert all(token not in r.getMessage() for r in caplog.records)
    assert token[len(PREFIX) :] not in caplog.text


# -- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize("ttl", [0, -1, "300", None, True])
def test_token_ttl_validated(ttl: Any) -> None:
    problems = validate({"TOKEN_TTL": ttl})
    assert [p.check_id for p in problems] == ["rtdelivery.E002"]
    assert "RTDELIVERY['TOKEN_TTL'] must be a number > 0 (seconds)" in problems[0].message
