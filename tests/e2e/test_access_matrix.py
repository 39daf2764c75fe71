"""The access matrix over real servers: transport x identity x topic, every cell asserted.

Transports: poll, long poll, SSE, WebSocket subscribe, history, presence, HTTP publish and
WebSocket publish. Identities: anonymous; the sessions of ``other``, ``owner`` and
``staff``; a connection token of ``owner``, an expired one, one of ``other``; and a Django
REST framework token of ``owner`` (``Authorization: Token``). Topics: public (anyone),
staff-only and ``owner``'s private topic (owner or staff).

Connection tokens travel as a browser would send them: ``Authorization: Bearer`` on the
short requests, ``access_token=`` on SSE and the WebSocket (``EventSource`` and the
browser's ``WebSocket`` cannot set headers); the other way round is checked too.

The servers (Uvicorn and Daphne, one at a time) share a migrated SQLite file with the
setup (tests/e2e/access_setup.py), which made the users, sessions and tokens.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from django.http import HttpRequest
from django.middleware.csrf import get_token

from tests.e2e.clients import SSEParser, http_client, ws_connect
from tests.e2e.conftest import ROOT, SERVER_KINDS, Server, running_servers, server_env

TRANSPORTS = ("poll", "longpoll", "sse", "ws", "history", "presence", "publish-http", "publish-ws")
IDENTITIES = (
    "anonymous",
    "other",
    "owner",
    "staff",
    "token",
    "expired_token",
    "other_token",
    "drf_token",
)
KINDS = ("public", "staff", "private")
#: Who may subscribe to and publish on each kind of topic (tests/e2e/settings_e2e.py).
ALLOWED = {
    "public": set(IDENTITIES),
    "staff": {"staff"},
    "private": {"owner", "staff", "token", "drf_token"},
}
UNAUTHORIZED = ("token_expired", "token_invalid", "token_malformed", "authentication_failed")
#: Upper bound for one cell (seconds); a healthy server answers in milliseconds.
WAIT = 10.0
SETUP_TIMEOUT = 120.0


def expected(transport: str, identity: str, kind: str) -> str:
    """ "ok", or the error code the cell must be refused with."""
    if identity == "expired_token":
        # Refused wherever a rule needs to know the client; an HTTP publish always checks
        # its credentials (they stand in for the CSRF check). Elsewhere on a public topic
        # the client is just anonymous.
        if kind != "public" or transport == "publish-http":
            return "token_expired"
        return "ok"
    return "ok" if identity in ALLOWED[kind] else "forbidden"


# -- servers and identities -------------------------------------------------------------


@pytest.fixture(scope="module")
def access_db(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> tuple[Path, dict[str, Any]]:
    """The shared SQLite file, migrated, with users, sessions and tokens (see module doc)."""
    path = tmp_path_factory.mktemp("access-db") / "access.sqlite3"
    env = server_env(redis_url, "rtde2e:access-setup:", {"RTD_E2E_DB": str(path)})
    result = subprocess.run(
        [sys.executable, "-m", "tests.e2e.access_setup"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SETUP_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"access setup failed:\n{result.stdout}\n{result.stderr}", pytrace=False)
    return path, json.loads(result.stdout.strip().splitlines()[-1])


@dataclass
class Who:
    """What one identity presents: cookies, fixed headers, a connection token."""

    name: str
    cookies: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    csrf_token: str | None = None

    def credentials(self, carrier: str) -> tuple[dict[str, str], dict[str, str]]:
        """(headers, query parameters); the token as a Bearer ``header`` or a ``param``."""
        headers = dict(self.headers)
        params: dict[str, str] = {}
        if self.cookies:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if self.token is not None:
            if carrier == "header":
                headers["authorization"] = f"Bearer {self.token}"
            else:
                params["access_token"] = self.token
        return headers, params


def identities(data: dict[str, Any]) -> dict[str, Who]:
    request = HttpRequest()
    csrf_token = get_token(request)  # CSRF secrets are not signed: any process may make one
    csrf_cookie = {"csrftoken": request.META["CSRF_COOKIE"]}
    session = data["session_cookie_name"]

    def with_session(name: str) -> Who:
        cookies = {**csrf_cookie, session: data["session"][name]}
        return Who(name, cookies=cookies, csrf_token=csrf_token)

    return {
        # A browser without a session still has Django's CSRF cookie (from any page).
        "anonymous": Who("anonymous", cookies=csrf_cookie, csrf_token=csrf_token),
        "other": with_session("other"),
        "owner": with_session("owner"),
        "staff": with_session("staff"),
        "token": Who("token", token=data["token"]["owner"]),
        "expired_token": Who("expired_token", token=data["expired"]),
        "other_token": Who("other_token", token=data["token"]["other"]),
        "drf_token": Who("drf_token", headers={"authorization": f"Token {data['drf']['owner']}"}),
    }


@dataclass
class Access:
    server: Server
    data: dict[str, Any]
    who: dict[str, Who]

    def topic(self, kind: str) -> str:
        if kind == "private":
            return f"acl.user.{self.data['pk']['owner']}"
        return f"acl.{kind}.room"


@pytest.fixture(scope="module", params=SERVER_KINDS)
def access(
    request: pytest.FixtureRequest,
    redis_url: str,
    e2e_log_dir: Path,
    access_db: tuple[Path, dict[str, Any]],
) -> Iterator[Access]:
    """One server of each kind on the shared database."""
    path, data = access_db
    with running_servers(
        request.param, redis_url, e2e_log_dir, count=1, extra_env={"RTD_E2E_DB": str(path)}
    ) as group:
        yield Access(group.a, data, identities(data))


# -- one cell -------------------------------------------------------------------------


def _status_for(code: str) -> int:
    return 401 if code in UNAUTHORIZED else 403


def _refusal(response: httpx.Response) -> str:
    assert response.headers.get("content-type", "").startswith("application/json"), response
    error = response.json()["error"]
    code = str(error["code"])
    assert error["message"], error
    assert response.status_code == _status_for(code), (response.status_code, error)
    challenge = response.headers.get("www-authenticate")
    assert (challenge is not None) == (response.status_code == 401), (code, challenge)
    return code


async def http_cell(
    http: httpx.AsyncClient, base: str, transport: str, topic: str, who: Who, carrier: str
) -> str:
    headers, params = who.credentials(carrier)
    if transport == "publish-http":
        if who.csrf_token is not None:
            headers["x-csrftoken"] = who.csrf_token
        query = f"?{urlencode(params)}" if params else ""
        body = {"topic": topic, "type": "note", "data": {"who": who.name}}
        response = await http.post(f"{base}/rt/publish{query}", json=body, headers=headers)
        if response.status_code == 201:
            assert response.json()["topic"] == topic
            return "ok"
        return _refusal(response)
    query_params: dict[str, str] = {"topic": topic, **params}
    if transport == "longpoll":
        query_params["timeout"] = "0"
    url = f"{base}/rt/{transport}?{urlencode(query_params)}"
    if transport == "sse":
        async with http.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                await response.aread()
                return _refusal(response)
            parser = SSEParser()
            async with asyncio.timeout(WAIT):
                async for chunk in response.aiter_raw():
                    for message in parser.feed(chunk):
                        assert message["event"] == "rt.open", message
                        return "ok"
            raise AssertionError("SSE stream ended before rt.open")
    response = await http.get(url, headers=headers)
    if response.status_code == 200:
        body = response.json()
        assert (body.get("topic") == topic) if transport == "presence" else ("cursor" in body)
        return "ok"
    return _refusal(response)


async def ws_cell(base: str, transport: str, topic: str, who: Who, carrier: str) -> str:
    headers, params = who.credentials(carrier)
    path = "/rt/ws" + (f"?{urlencode(params)}" if params else "")
    ws = await ws_connect(base, path=path, additional_headers=headers)
    try:
        if transport == "ws":
            frame: dict[str, Any] = {"op": "subscribe", "topic": topic, "ref": "cell"}
            ok = "subscribed"
        else:
            frame = {"op": "publish", "topic": topic, "type": "note", "data": 1, "ref": "cell"}
            ok = "ack"
        await ws.send(json.dumps(frame))
        async with asyncio.timeout(WAIT):
            while True:  # presence and event frames may come first
                reply = json.loads(await ws.recv())
                if reply.get("ref") == "cell":
                    break
        if reply["op"] == ok:
            assert reply["topic"] == topic, reply
            return "ok"
        assert reply["op"] == "error", reply
        assert reply["message"], reply
        return str(reply["code"])
    finally:
        await ws.close()


async def cell(
    http: httpx.AsyncClient,
    access: Access,
    transport: str,
    identity: str,
    kind: str,
    carrier: str | None = None,
) -> str:
    """One attempt; the token goes where a browser would put it unless ``carrier`` says."""
    if carrier is None:
        carrier = "param" if transport in ("sse", "ws", "publish-ws") else "header"
    who = access.who[identity]
    topic = access.topic(kind)
    base = access.server.base_url
    if transport in ("ws", "publish-ws"):
        return await ws_cell(base, transport, topic, who, carrier)
    return await http_cell(http, base, transport, topic, who, carrier)


# -- the matrix -----------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_access_matrix(access: Access, transport: str) -> None:
    """Every identity on every kind of topic: allowed, forbidden or refused as the rules say."""
    observed: dict[tuple[str, str], str] = {}
    async with http_client() as http:
        for identity in IDENTITIES:
            for kind in KINDS:
                observed[identity, kind] = await cell(http, access, transport, identity, kind)
    assert len(observed) == len(IDENTITIES) * len(KINDS)
    wrong = [
        f"  {identity} on {kind}: expected {expected(transport, identity, kind)}, got {got}"
        for (identity, kind), got in observed.items()
        if got != expected(transport, identity, kind)
    ]
    assert not wrong, f"{access.server.kind} {transport}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tokens_by_the_other_carrier(access: Access, transport: str) -> None:
    """A token works in the header on SSE and WebSockets (non-browser clients) and in
    ``access_token=`` on the short requests too, with the same answers."""
    carrier = "header" if transport in ("sse", "ws", "publish-ws") else "param"
    async with http_client() as http:
        for identity, kind in (
            ("token", "private"),
            ("other_token", "private"),
            ("token", "staff"),
            ("expired_token", "private"),
            ("expired_token", "public"),
        ):
            got = await cell(http, access, transport, identity, kind, carrier)
            assert got == expected(transport, identity, kind), (identity, kind, got)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_bad_tokens_have_distinct_codes(access: Access, transport: str) -> None:
    """Tampered and malformed tokens, and a DRF token that does not exist, each refused
    with their own code wherever the identity matters."""
    good = access.data["token"]["owner"]
    prefix, payload, signature = good.split(":")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    bad = {
        "token_invalid": f"{prefix}:{payload}:{flipped}",
        "token_malformed": good[:-4],
    }
    async with http_client() as http:
        for code, token in bad.items():
            access.who[code] = Who(code, token=token)
            assert await cell(http, access, transport, code, "private") == code
        access.who["bad_drf"] = Who("bad_drf", headers={"authorization": "Token " + "0" * 40})
        assert await cell(http, access, transport, "bad_drf", "private") == "authentication_failed"
