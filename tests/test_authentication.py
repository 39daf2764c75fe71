"""Who a client is, on every transport: connection tokens, ``RTDELIVERY["AUTHENTICATORS"]``
(custom ones, Django REST framework's ``TokenAuthentication``) and the session cookie.

In process: through the ASGI application (fast path, views, the WebSocket route) and
through Django's test ``Client`` (WSGI views). The access matrix over real servers is
tests/e2e/test_access_matrix.py.
"""

# ruff: noqa: F811  (the fixtures imported from tests/transports/conftest.py are used by name)
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from rtdelivery import tokens
from rtdelivery.authentication import drf
from rtdelivery.conf import validate
from rtdelivery.core.errors import Unauthorized
from rtdelivery.hub import get_hub
from rtdelivery.tokens import connection_token
from rtdelivery.transports.http import Request
from tests.transports.conftest import (  # noqa: F401  (fixtures used by name)
    ORIGIN,
    PREFIX,
    WAIT,
    Headers,
    Identity,
    Response,
    _close_hub_after_test,
    application,
    open_sse,
    people,
    request,
    rt,
    wait_until,
    ws_close,
    ws_recv,
)

TOPICS = {
    "user.*": {"subscribe": ["owner", "staff"], "publish": ["owner", "staff"], "presence": True},
    "staff.*": {"subscribe": "staff", "publish": "staff", "presence": True},
    "public.*": {"subscribe": "anyone", "publish": "anyone", "presence": True},
    "open.*": {"subscribe": "anyone", "publish": "anyone"},
}
PUBLISH_TOKEN = "server-publish-token-0123456789"

#: The explicit wrapper a project writes (its dotted path goes in AUTHENTICATORS).
drf_token_auth = drf(TokenAuthentication)

TRANSPORTS = ("poll", "longpoll", "sse", "history", "presence", "publish", "ws", "ws-publish")
HTTP_TRANSPORTS = TRANSPORTS[:6]


# -- one attempt on one transport ------------------------------------------------------


def _query(params: dict[str, Any]) -> str:
    return urlencode(params)


async def attempt(
    app: Any,
    transport: str,
    topic: str,
    *,
    headers: Headers = (),  # type: ignore[assignment]
    params: dict[str, str] | None = None,
    who: Identity | None = None,
) -> str:
    """ "ok", or the error code the transport answered with (its status checked)."""
    params = dict(params or {})
    # A session's publish sends the CSRF token too, as a page would.
    base: Headers = who.headers(csrf=transport == "publish") if who else [(b"host", b"testserver")]
    base += list(headers)
    if transport.startswith("ws"):
        return await _ws_attempt(app, transport, topic, base, params)
    if transport == "sse":
        stream = await open_sse(app, {"topic": topic, **params}, who, list(headers))
        if stream.status == 200:
            await stream.close()
            return "ok"
        return _error(Response(stream.status, stream.headers, stream.body, []))
    if transport == "publish":
        body = json.dumps({"topic": topic, "type": "note", "data": 1}).encode()
        base.append((b"content-type", b"application/json"))
        path = f"{PREFIX}publish" + (f"?{_query(params)}" if params else "")
        response = await request(app, "POST", path, body=body, headers=base)
        return "ok" if response.status == 201 else _error(response)
    query = {"topic": topic, **params}
    if transport == "longpoll":
        query["timeout"] = "0"
    response = await request(app, "GET", f"{PREFIX}{transport}?{_query(query)}", headers=base)
    return "ok" if response.status == 200 else _error(response)


def _error(response: Response) -> str:
    code = response.error_code()
    unauthorized = ("token_expired", "token_invalid", "token_malformed", "authentication_failed")
    expected = 401 if code in (*unauthorized, "bad_api_user") else 403
    assert response.status == expected, (response.status, code)
    # A 401 names the scheme to authenticate with (RFC 9110); a 403 has nothing to add.
    challenge = response.header("www-authenticate")
    assert (challenge is not None) == (expected == 401), (code, challenge)
    if challenge is not None:
        assert challenge.startswith('Bearer realm="rtdelivery"'), challenge
    return code


async def _ws_attempt(
    app: Any, transport: str, topic: str, headers: Headers, params: dict[str, str]
) -> str:
    if not any(name == b"origin" for name, _ in headers):
        headers = [*headers, (b"origin", ORIGIN.encode())]
    path = f"{PREFIX}ws" + (f"?{_query(params)}" if params else "")
    comm = WebsocketCommunicator(app, path, headers=headers)
    connected, code = await comm.connect(WAIT)
    assert connected, f"WebSocket refused with {code}"
    try:
        if transport == "ws":
            frame: dict[str, Any] = {"op": "subscribe", "topic": topic, "ref": "r"}
            ok = "subscribed"
        else:
            frame = {"op": "publish", "topic": topic, "data": 1, "ref": "r"}
            ok = "ack"
        await comm.send_json_to(frame)
        reply = await ws_recv(comm)
        assert reply.get("ref") == "r", reply
        return "ok" if reply["op"] == ok else str(reply["code"])
    finally:
        await ws_close(comm)


def bearer(token: str) -> Headers:
    return [(b"authorization", f"Bearer {token}".encode())]


@pytest.fixture
def configured(rt: Callable[..., Any]) -> Callable[..., Any]:
    rt(TOPICS=TOPICS, PUBLISH_TOKENS=[PUBLISH_TOKEN])
    return rt


async def released(topic: str) -> None:
    hub = get_hub()
    await wait_until(lambda: hub.local_subscribers(topic) == 0, what="subscriptions released")


# -- connection tokens on every transport --------------------------------------------


@pytest.mark.parametrize("carrier", ["header", "param"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_token_is_its_user_on_every_transport(
    configured: Any, application: Any, people: dict[str, Identity], transport: str, carrier: str
) -> None:
    owner, other = people["owner"].user, people["other"].user
    mine, theirs = f"user.{owner.pk}", f"user.{other.pk}"

    def carry(token: str) -> dict[str, Any]:
        if carrier == "header":
            return {"headers": bearer(token)}
        return {"params": {"access_token": token}}

    token = connection_token(owner)
    assert await attempt(application, transport, mine, **carry(token)) == "ok"
    assert await attempt(application, transport, theirs, **carry(token)) == "forbidden"
    assert await attempt(application, transport, "staff.room", **carry(token)) == "forbidden"
    assert await attempt(application, transport, "public.room", **carry(token)) == "ok"
    # Staff by token, like staff by session.
    staff_token = connection_token(people["staff"].user)
    assert await attempt(application, transport, "staff.room", **carry(staff_token)) == "ok"
    await released(mine)


def _expired(user: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    with monkeypatch.context() as m:
        m.setattr(tokens, "_now", lambda: 1_000_000.0)
        return connection_token(user, ttl=60)


def _bad_tokens(user: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    good = connection_token(user)
    payload, signature = good[len(tokens.PREFIX) :].split(":")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return {
        "token_expired": _expired(user, monkeypatch),
        "token_invalid": f"{tokens.PREFIX}{payload}:{flipped}",
        "token_malformed": good[:-5],
    }


@pytest.mark.parametrize("code", ["token_expired", "token_invalid", "token_malformed"])
@pytest.mark.parametrize("carrier", ["header", "param"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_refused_tokens_have_distinct_codes(
    configured: Any,
    application: Any,
    people: dict[str, Identity],
    monkeypatch: pytest.MonkeyPatch,
    transport: str,
    carrier: str,
    code: str,
) -> None:
    owner = people["owner"].user
    token = _bad_tokens(owner, monkeypatch)[code]
    carry: dict[str, Any] = (
        {"headers": bearer(token)} if carrier == "header" else {"params": {"access_token": token}}
    )
    assert await attempt(application, transport, f"user.{owner.pk}", **carry) == code
    assert await attempt(application, transport, "staff.room", **carry) == code
    public = "public.room" if transport == "presence" else "open.room"
    if transport == "publish":
        # Publishing with a token is always checked: the token stands in for CSRF.
        assert await attempt(application, transport, public, **carry) == code
    else:
        # Identity is only looked at where a rule needs it: a public topic is public ...
        assert await attempt(application, transport, public, **carry) == "ok"
    if transport in ("sse", "ws"):
        # ... and on a topic with presence the client is anonymous there.
        assert await attempt(application, transport, "public.room", **carry) == "ok"


async def test_a_session_with_a_bad_token_is_refused_not_downgraded(
    configured: Any, application: Any, people: dict[str, Identity], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials presented and refused are a 401, even when the session would do."""
    owner = people["owner"]
    topic = f"user.{owner.pk}"
    expired = _expired(owner.user, monkeypatch)
    assert await attempt(application, "poll", topic, who=owner) == "ok"
    result = await attempt(application, "poll", topic, who=owner, headers=bearer(expired))
    assert result == "token_expired"


async def test_the_token_wins_over_the_session(
    configured: Any, application: Any, people: dict[str, Identity]
) -> None:
    owner, other = people["owner"], people["other"]
    token = connection_token(owner.user)
    for transport in ("poll", "ws"):
        got = await attempt(
            application, transport, f"user.{owner.pk}", who=other, headers=bearer(token)
        )
        assert got == "ok"
        got = await attempt(
            application, transport, f"user.{other.pk}", who=other, headers=bearer(token)
        )
        assert got == "forbidden"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_topic_limited_token_allows_nothing_else(
    configured: Any, application: Any, people: dict[str, Identity], transport: str
) -> None:
    staff = people["staff"].user
    token = connection_token(staff, topics=["staff.room"])
    carry = {"params": {"access_token": token}}
    assert await attempt(application, transport, "staff.room", **carry) == "ok"
    # Staff may read every user topic, but not with this token; nor other staff topics.
    owner_topic = f"user.{people['owner'].pk}"
    assert await attempt(application, transport, owner_topic, **carry) == "token_topics"
    assert await attempt(application, transport, "staff.other", **carry) == "token_topics"
    # Outside its topics the token counts for nothing: the client is anonymous there, and
    # anyone may read a public topic.
    assert await attempt(application, transport, "public.room", **carry) == "ok"


async def test_a_websocket_reads_its_token_once_at_the_handshake(
    configured: Any, application: Any, people: dict[str, Identity]
) -> None:
    owner = people["owner"].user
    token = connection_token(owner)
    comm = WebsocketCommunicator(
        application,
        f"{PREFIX}ws?access_token={token}",
        headers=[(b"host", b"testserver"), (b"origin", ORIGIN.encode())],
    )
    assert (await comm.connect(WAIT))[0]
    try:
        topic = f"user.{owner.pk}"
        for op in ("subscribe", "presence"):
            await comm.send_json_to({"op": op, "topic": topic, "ref": op})
            reply = await ws_recv(comm)
            while reply.get("ref") != op:  # a presence join frame may come first
                reply = await ws_recv(comm)
            assert reply["op"] in ("subscribed", "presence"), reply
        assert reply["users"] == [{"id": str(owner.pk), "name": "owner", "connections": 1}]
    finally:
        await ws_close(comm)
    await released(f"user.{owner.pk}")


async def test_a_refused_websocket_is_anonymous_to_presence(
    configured: Any, application: Any, people: dict[str, Identity], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket opens (so the client can read why); where identity matters it gets
    the refusal's code, elsewhere it is anonymous (presence counts it as such)."""
    expired = _expired(people["owner"].user, monkeypatch)
    comm = WebsocketCommunicator(
        application,
        f"{PREFIX}ws?access_token={expired}",
        headers=[(b"host", b"testserver"), (b"origin", ORIGIN.encode())],
    )
    assert (await comm.connect(WAIT))[0]
    try:
        await comm.send_json_to({"op": "subscribe", "topic": "public.room", "ref": "a"})
        assert (await ws_recv(comm))["op"] == "subscribed"
        await comm.send_json_to({"op": "presence", "topic": "public.room", "ref": "b"})
        reply = await ws_recv(comm)
        while reply.get("ref") != "b":
            reply = await ws_recv(comm)
        assert (reply["anonymous"], reply["users"]) == (1, [])
        await comm.send_json_to({"op": "publish", "topic": "staff.room", "data": 1, "ref": "c"})
        refused = await ws_recv(comm)
        assert (refused["op"], refused["code"], refused["ref"]) == ("error", "token_expired", "c")
        assert expired[len(tokens.PREFIX) :] not in refused["message"]
    finally:
        await ws_close(comm)
    await released("public.room")


async def test_a_topic_limited_token_is_anonymous_to_presence_elsewhere(
    configured: Any, application: Any, people: dict[str, Identity]
) -> None:
    """A token for other topics names nobody in this topic's presence (the policy treats
    it as anonymous there, so presence must too)."""
    token = connection_token(people["owner"].user, topics=["staff.*"])
    comm = WebsocketCommunicator(
        application,
        f"{PREFIX}ws?access_token={token}",
        headers=[(b"host", b"testserver"), (b"origin", ORIGIN.encode())],
    )
    assert (await comm.connect(WAIT))[0]
    try:
        await comm.send_json_to({"op": "subscribe", "topic": "public.room", "ref": "a"})
        assert (await ws_recv(comm))["op"] == "subscribed"
        await comm.send_json_to({"op": "presence", "topic": "public.room", "ref": "b"})
        reply = await ws_recv(comm)
        while reply.get("ref") != "b":
            reply = await ws_recv(comm)
        assert (reply["anonymous"], reply["users"]) == (1, [])
    finally:
        await ws_close(comm)
    await released("public.room")


# -- publishing ------------------------------------------------------------------------


async def test_publish_tokens_keep_their_meaning(
    configured: Any, application: Any, people: dict[str, Identity]
) -> None:
    """A configured server token publishes anywhere (no policy, no CSRF); any other Bearer
    value that is not a connection token is a wrong publish token, as before."""
    assert (
        await attempt(application, "publish", "staff.room", headers=bearer(PUBLISH_TOKEN)) == "ok"
    )
    wrong = bearer("wrong-token-0123456789abcdef")
    assert await attempt(application, "publish", "public.room", headers=wrong) == "bad_token"
    # A publish token means nothing to the subscribing transports.
    assert (
        await attempt(application, "poll", "staff.room", headers=bearer(PUBLISH_TOKEN))
        == "forbidden"
    )


async def test_a_session_publish_still_needs_csrf(
    configured: Any, application: Any, people: dict[str, Identity]
) -> None:
    owner = people["owner"]
    topic = f"user.{owner.pk}"
    body = json.dumps({"topic": topic, "data": 1}).encode()
    headers = [*owner.headers(), (b"content-type", b"application/json")]
    no_csrf = await request(application, "POST", f"{PREFIX}publish", body=body, headers=headers)
    assert (no_csrf.status, no_csrf.error_code()) == (403, "csrf_failed")
    # A DRF-style "Token" header that no authenticator knows: still the session, still CSRF.
    odd = [*headers, (b"authorization", b"Token unknown")]
    refused = await request(application, "POST", f"{PREFIX}publish", body=body, headers=odd)
    assert (refused.status, refused.error_code()) == (403, "csrf_failed")
    # With a connection token the page's code sent itself: no CSRF needed.
    with_token = [*headers, *bearer(connection_token(owner.user))]
    ok = await request(application, "POST", f"{PREFIX}publish", body=body, headers=with_token)
    assert ok.status == 201, ok.body


# -- Django's test Client (WSGI views) ---------------------------------------------------


def test_tokens_through_the_django_test_client(
    configured: Any, people: dict[str, Identity], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rtdelivery.testing import reset

    owner = people["owner"].user
    topic = f"user.{owner.pk}"
    token = connection_token(owner)
    client = Client(enforce_csrf_checks=True)
    try:
        assert (
            client.get(f"/rt/poll?topic={topic}", HTTP_AUTHORIZATION=f"Bearer {token}").status_code
            == 200
        )
        assert client.get(f"/rt/history?topic={topic}&access_token={token}").status_code == 200
        assert client.get(f"/rt/poll?topic={topic}").status_code == 403
        published = client.post(
            "/rt/publish",
            json.dumps({"topic": topic, "data": 1}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        assert published.status_code == 201, published.content
        for code, bad in _bad_tokens(owner, monkeypatch).items():
            answer = client.get(f"/rt/poll?topic={topic}", HTTP_AUTHORIZATION=f"Bearer {bad}")
            assert answer.status_code == 401
            assert answer["WWW-Authenticate"] == 'Bearer realm="rtdelivery", error="invalid_token"'
            assert answer.json()["error"]["code"] == code
            assert answer["Content-Type"] == "application/json"
    finally:
        reset()


# -- custom authenticators -----------------------------------------------------------------

CALLS: list[str] = []


def header_user(request: Request) -> Any:
    """A sync authenticator: ``X-User: <username>``. It uses the ORM, which Django refuses
    on an event loop (SynchronousOnlyOperation): rtdelivery runs it in a thread."""
    from django.contrib.auth import get_user_model

    CALLS.append("header_user")
    name = request.header("x-user")
    if name is None:
        return None
    if name == "refuse":
        raise Unauthorized("No such API user.", code="bad_api_user")
    return get_user_model().objects.get(username=name)


header_user.explicit_credentials = True  # type: ignore[attr-defined]


async def nobody(request: Request) -> Any:
    """An async authenticator that never knows anyone."""
    CALLS.append("nobody")
    return None


AUTH = "tests.test_authentication"


@pytest.fixture
def custom(configured: Callable[..., Any]) -> None:
    CALLS.clear()
    configured(
        TOPICS=TOPICS,
        AUTHENTICATORS=[f"{AUTH}.nobody", f"{AUTH}.header_user", *_defaults()],
    )


def _defaults() -> list[str]:
    return [
        "rtdelivery.authentication.token_authenticator",
        "rtdelivery.authentication.session_authenticator",
    ]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_custom_authenticator_on_every_transport(
    custom: None, application: Any, people: dict[str, Identity], transport: str
) -> None:
    owner = people["owner"]
    topic = f"user.{owner.pk}"
    as_owner = [(b"x-user", b"owner")]
    assert await attempt(application, transport, topic, headers=as_owner) == "ok"
    assert (
        await attempt(application, transport, topic, headers=[(b"x-user", b"other")]) == "forbidden"
    )
    assert (
        await attempt(application, transport, topic, headers=[(b"x-user", b"refuse")])
        == "bad_api_user"
    )
    # Nobody claimed the request: the next authenticators (token, session) still apply.
    assert await attempt(application, transport, topic, who=owner) == "ok"
    token = connection_token(owner.user)
    assert await attempt(application, transport, topic, params={"access_token": token}) == "ok"
    await released(topic)


async def test_identity_is_loaded_only_when_a_rule_needs_it(
    custom: None, application: Any, people: dict[str, Identity]
) -> None:
    headers = [(b"x-user", b"owner")]
    assert await attempt(application, "poll", "public.room", headers=headers) == "ok"
    assert CALLS == []  # "anyone": no authenticator ran
    owner = people["owner"]
    CALLS.clear()
    params = {"topic": ["public.a", f"user.{owner.pk}", "staff.x"]}
    response = await request(
        application,
        "GET",
        f"{PREFIX}poll?{urlencode(params, doseq=True)}",
        headers=[(b"host", b"testserver"), *headers],
    )
    assert response.error_code() == "forbidden"  # staff.x
    assert CALLS == ["nobody", "header_user"]  # once per request, in order, first user wins


async def test_no_authenticators_means_everyone_is_anonymous(
    configured: Callable[..., Any], application: Any, people: dict[str, Identity]
) -> None:
    configured(TOPICS=TOPICS, AUTHENTICATORS=[])
    owner = people["owner"]
    topic = f"user.{owner.pk}"
    assert await attempt(application, "poll", topic, who=owner) == "forbidden"
    assert await attempt(application, "ws", topic, who=owner) == "forbidden"
    assert await attempt(application, "poll", "public.x", who=owner) == "ok"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("rtdelivery.authentication.token_authenticator", "got str"),
        (["nodots"], "got 'nodots' at index 0"),
        ([5], "got 5 at index 0"),
        (
            ["tests.test_authentication.missing"],
            "cannot import 'tests.test_authentication.missing'",
        ),
        (
            ["tests.test_authentication.AUTH"],
            "'tests.test_authentication.AUTH': Expected a callable",
        ),
    ],
)
def test_authenticators_setting_validated(value: Any, expected: str) -> None:
    problems = validate({"AUTHENTICATORS": value})
    assert [p.check_id for p in problems] == ["rtdelivery.E002"]
    assert problems[0].message.startswith(
        "RTDELIVERY['AUTHENTICATORS'] must be a list of dotted paths"
    )
    assert expected in problems[0].message


# -- Django REST framework ------------------------------------------------------------------


@pytest.fixture
def drf_tokens(people: dict[str, Identity]) -> dict[str, str]:
    return {name: Token.objects.create(user=people[name].user).key for name in ("owner", "staff")}


@pytest.mark.parametrize(
    "path", ["rest_framework.authentication.TokenAuthentication", f"{AUTH}.drf_token_auth"]
)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_drf_token_authentication_on_every_transport(
    configured: Callable[..., Any],
    application: Any,
    people: dict[str, Identity],
    drf_tokens: dict[str, str],
    transport: str,
    path: str,
) -> None:
    configured(TOPICS=TOPICS, AUTHENTICATORS=[path, *_defaults()])
    topic = f"user.{people['owner'].pk}"

    def drf_header(key: str) -> Headers:
        return [(b"authorization", f"Token {key}".encode())]

    assert (
        await attempt(application, transport, topic, headers=drf_header(drf_tokens["owner"]))
        == "ok"
    )
    assert (
        await attempt(application, transport, "staff.room", headers=drf_header(drf_tokens["owner"]))
        == "forbidden"
    )
    assert (
        await attempt(application, transport, "staff.room", headers=drf_header(drf_tokens["staff"]))
        == "ok"
    )
    refused = await attempt(application, transport, topic, headers=drf_header("0" * 40))
    assert refused == "authentication_failed"
    # Beside it, connection tokens and sessions still work.
    token = connection_token(people["owner"].user)
    assert await attempt(application, transport, topic, headers=bearer(token)) == "ok"
    await released(topic)


def test_drf_wrapper_refuses_what_is_not_an_authentication_class() -> None:
    with pytest.raises(TypeError, match="Django REST framework authentication class"):
        drf(len)  # type: ignore[arg-type]
    assert drf_token_auth.explicit_credentials is True  # type: ignore[attr-defined]
    session = drf("rest_framework.authentication.SessionAuthentication")
    assert session.explicit_credentials is False  # type: ignore[attr-defined]


async def test_drf_tokens_need_no_csrf_to_publish(
    configured: Callable[..., Any],
    application: Any,
    people: dict[str, Identity],
    drf_tokens: dict[str, str],
) -> None:
    configured(
        TOPICS=TOPICS,
        AUTHENTICATORS=["rest_framework.authentication.TokenAuthentication", *_defaults()],
    )
    owner = people["owner"]
    topic = f"user.{owner.pk}"
    body = json.dumps({"topic": topic, "data": 1}).encode()
    headers = [
        *owner.headers(),  # the session cookie too, but no CSRF token
        (b"content-type", b"application/json"),
        (b"authorization", f"Token {drf_tokens['owner']}".encode()),
    ]
    response = await request(application, "POST", f"{PREFIX}publish", body=body, headers=headers)
    assert response.status == 201, response.body


async def test_wrong_drf_token_refused_by_the_django_view_too(
    configured: Callable[..., Any], people: dict[str, Identity], drf_tokens: dict[str, str]
) -> None:
    configured(
        TOPICS=TOPICS,
        AUTHENTICATORS=["rest_framework.authentication.TokenAuthentication", *_defaults()],
    )
    from django.test import AsyncClient

    topic = f"user.{people['owner'].pk}"
    client = AsyncClient()
    ok = await client.get(
        f"/rt/poll?topic={topic}", headers={"Authorization": f"Token {drf_tokens['owner']}"}
    )
    assert ok.status_code == 200
    bad = await client.get(f"/rt/poll?topic={topic}", headers={"Authorization": "Token nope"})
    assert bad.status_code == 401
    assert bad.json()["error"] == {"code": "authentication_failed", "message": "Invalid token."}


async def test_refused_tokens_stay_out_of_rtdelivery_logs(
    configured: Any,
    application: Any,
    people: dict[str, Identity],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whatever is logged about a refusal (rtdelivery's loggers, Django's request log), the
    token itself is not."""
    owner = people["owner"].user
    topic = f"user.{owner.pk}"
    bad = _bad_tokens(owner, monkeypatch)
    with caplog.at_level(logging.DEBUG):
        for code, token in bad.items():
            for transport in TRANSPORTS:
                carry = {"params": {"access_token": token}}
                assert await attempt(application, transport, topic, **carry) == code
    assert caplog.records  # Django logs each 401 ("Unauthorized: /rt/poll")
    for token in bad.values():
        secret = token[len(tokens.PREFIX) :][:20]
        assert secret not in caplog.text
