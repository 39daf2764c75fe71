"""rtdelivery under WSGI: a real gunicorn process (1 worker, ``gthread``, 8 threads).

gunicorn serves ``tests.e2e.wsgi_e2e`` (``get_wsgi_application()`` of the e2e settings:
Redis layer and history). A Uvicorn process of the same settings shares its Redis prefix,
so an event published there is "published from another process" for gunicorn's clients:
it reaches them through the Redis history and channel layer only.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.conftest import find_free_port
from tests.e2e.clients import http_client, http_publish
from tests.e2e.conftest import (
    ROOT,
    Server,
    Servers,
    running_servers,
    stop_server,
    wait_ready,
)

#: Upper bound for one wait (seconds); a healthy run needs far less.
WAIT = 10.0
#: How long a request must stay unanswered to count as held (a negative check: bounded).
HELD = 0.5
THREADS = 8


def gunicorn_command(port: int) -> list[str]:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    return [
        str(gunicorn), "tests.e2e.wsgi_e2e:application",
        "--worker-class", "gthread", "--threads", str(THREADS), "--workers", "1",
        "--bind", f"127.0.0.1:{port}",
        # Open streams end at shutdown; don't wait gunicorn's default 30 s for them.
        "--graceful-timeout", "3",
        # Several gunicorns may run at once: no shared control socket in ~/.gunicorn.
        "--no-control-socket",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def asgi_peer(redis_url: str, e2e_log_dir: Path) -> Iterator[Servers]:
    """One Uvicorn process of the e2e settings, on a fresh Redis prefix."""
    with running_servers("uvicorn", redis_url, e2e_log_dir, count=1) as group:
        yield group


@pytest.fixture(scope="module")
def wsgi(asgi_peer: Servers, e2e_log_dir: Path) -> Iterator[Server]:
    """gunicorn on a free loopback port, sharing ``asgi_peer``'s Redis prefix and token."""
    env = asgi_peer.a.env
    port = find_free_port()
    log_path = e2e_log_dir / f"gunicorn-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            gunicorn_command(port),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server("gunicorn", port, process, log_path, env["RTD_PREFIX"], env)
    try:
        wait_ready(server)
        yield server
    finally:
        status = stop_server(server)
        print(f"--- gunicorn pid {server.pid} port {server.port} exit {status}")
        print(server.log_tail())


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with http_client() as client:
        yield client


def url(server: Server, endpoint: str, **params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{server.base_url}/rt/{endpoint}" + (f"?{query}" if query else "")


async def get_json(http: httpx.AsyncClient, address: str, status: int = 200) -> Any:
    response = await http.get(address)
    assert response.status_code == status, (address, response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    return response.json()


def assert_json_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    payload = response.json()
    assert set(payload) == {"error"}, payload
    assert payload["error"]["code"] == code, payload
    assert payload["error"]["message"], payload


def wire(event: dict[str, Any]) -> tuple[Any, ...]:
    return (event["id"], event["topic"], event["seq"], event["type"], event["data"])


# -- short polling, publishing, history ------------------------------------------------


async def test_poll_then_publish_on_gunicorn_then_poll_again(
    wsgi: Server, asgi_peer: Servers, http: httpx.AsyncClient, topic: str
) -> None:
    first = await get_json(http, url(wsgi, "poll", topic=topic))
    assert (first["events"], first["recovered"]) == ([], True), first
    ack = await http_publish(http, wsgi.base_url, asgi_peer.token, topic, {"n": 1})
    assert (ack["topic"], ack["seq"]) == (topic, 1), ack
    second = await get_json(http, url(wsgi, "poll", topic=topic, cursor=first["cursor"]))
    assert [wire(e) for e in second["events"]] == [(ack["id"], topic, 1, "message", {"n": 1})]
    # Nothing new since: the cursor moved past the event.
    third = await get_json(http, url(wsgi, "poll", topic=topic, cursor=second["cursor"]))
    assert third["events"] == [], third


async def test_poll_on_gunicorn_sees_an_event_published_by_the_asgi_process(
    wsgi: Server, asgi_peer: Servers, http: httpx.AsyncClient, topic: str
) -> None:
    first = await get_json(http, url(wsgi, "poll", topic=topic))
    ack = await http_publish(http, asgi_peer.a.base_url, asgi_peer.token, topic, "from uvicorn")
    second = await get_json(http, url(wsgi, "poll", topic=topic, cursor=first["cursor"]))
    assert [wire(e) for e in second["events"]] == [(ack["id"], topic, 1, "message", "from uvicorn")]


async def test_history_on_gunicorn(
    wsgi: Server, asgi_peer: Servers, http: httpx.AsyncClient, topic: str
) -> None:
    acks = []
    for i, base in enumerate([wsgi.base_url, asgi_peer.a.base_url, wsgi.base_url]):
        acks.append(await http_publish(http, base, asgi_peer.token, topic, {"i": i}))
    assert [a["seq"] for a in acks] == [1, 2, 3]
    latest = await get_json(http, url(wsgi, "history", topic=topic, limit=2))
    assert [e["id"] for e in latest["events"]] == [acks[1]["id"], acks[2]["id"]], latest
    assert (latest["recovered"], latest["lost"]) == (True, []), latest
    # The history cursor resumes a poll after the newest event.
    after = await get_json(http, url(wsgi, "poll", topic=topic, cursor=latest["cursor"]))
    assert after["events"] == [], after
    everything = await get_json(http, url(wsgi, "history", topic=topic))
    assert [e["data"] for e in everything["events"]] == [{"i": 0}, {"i": 1}, {"i": 2}]


# -- held requests ---------------------------------------------------------------------


async def test_long_poll_is_held_then_answered_by_a_publish_from_another_process(
    wsgi: Server, asgi_peer: Servers, http: httpx.AsyncClient, topic: str
) -> None:
    start = await get_json(http, url(wsgi, "poll", topic=topic))
    held = asyncio.ensure_future(
        http.get(url(wsgi, "longpoll", topic=topic, cursor=start["cursor"], timeout=WAIT))
    )
    try:
        done, _ = await asyncio.wait({held}, timeout=HELD)
        assert not done, f"long poll answered with no event: {held.result().text}"
        # The held request holds one thread; the others still answer.
        other = await get_json(http, url(wsgi, "poll", topic=topic, cursor=start["cursor"]))
        assert other["events"] == [], other
        began = time.monotonic()
        ack = await http_publish(http, asgi_peer.a.base_url, asgi_peer.token, topic, "wake")
        response = await asyncio.wait_for(held, WAIT)
    finally:
        held.cancel()
    assert response.status_code == 200, response.text
    body = response.json()
    assert [wire(e) for e in body["events"]] == [(ack["id"], topic, 1, "message", "wake")]
    assert time.monotonic() - began < WAIT / 2, "answered by its timeout, not by the event"


class SSEStream:
    """An httpx streaming response read as SSE frames (comments skipped)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()

    async def frame(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        data: list[str] = []
        while True:
            line = await asyncio.wait_for(anext(self.lines), WAIT)
            if line == "":
                if fields or data:
                    if data:
                        fields["data"] = json.loads("\n".join(data))
                    return fields
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name:  # "" is a comment (heartbeat)
                fields[name] = value


async def open_stream(
    http: httpx.AsyncClient, address: str
) -> tuple[Any, SSEStream, dict[str, Any]]:
    """Open an SSE stream; its context manager, reader and ``rt.open`` frame's data."""
    context = http.stream("GET", address)
    response = await asyncio.wait_for(context.__aenter__(), WAIT)
    try:
        assert response.status_code == 200, (response.status_code, await response.aread())
        assert response.headers["content-type"].startswith("text/event-stream"), response.headers
        stream = SSEStream(response)
        opened = await stream.frame()
        while opened.get("event") != "rt.open":  # a leading bare "retry:" frame
            assert "data" not in opened, opened
            opened = await stream.frame()
    except BaseException:
        await context.__aexit__(None, None, None)
        raise
    return context, stream, opened["data"]


async def test_sse_streams_under_wsgi(
    wsgi: Server, asgi_peer: Servers, http: httpx.AsyncClient, topic: str
) -> None:
    context, stream, opened = await open_stream(http, url(wsgi, "sse", topic=topic))
    try:
        assert (opened["recovered"], opened["lost"]) == (True, []), opened
        ack = await http_publish(http, asgi_peer.a.base_url, asgi_peer.token, topic, {"s": 1})
        frame = await stream.frame()
        assert frame.get("id") == ack["id"], frame
        assert wire(frame["data"]) == (ack["id"], topic, 1, "message", {"s": 1})
        ack2 = await http_publish(http, wsgi.base_url, asgi_peer.token, topic, {"s": 2})
        frame = await stream.frame()
        assert frame["data"]["id"] == ack2["id"], frame
    finally:
        await context.__aexit__(None, None, None)


async def test_closed_sse_streams_give_their_threads_back(
    wsgi: Server, http: httpx.AsyncClient, topic: str
) -> None:
    """More streams than threads, one after the other: each closed stream's thread is
    freed (at the latest when the next heartbeat finds the client gone), or the later
    ones would wait forever for a thread."""
    for _ in range(THREADS + 4):
        context, _stream, opened = await open_stream(http, url(wsgi, "sse", topic=topic))
        await context.__aexit__(None, None, None)
        assert opened["recovered"] is True
    await get_json(http, url(wsgi, "poll", topic=topic))


# -- errors ----------------------------------------------------------------------------


async def test_errors_are_json_under_wsgi(
    wsgi: Server, http: httpx.AsyncClient, topic: str
) -> None:
    assert_json_error(await http.get(url(wsgi, "poll", topic="bad topic!")), 400, "invalid_topic")
    assert_json_error(await http.get(url(wsgi, "sse", topic="bad topic!")), 400, "invalid_topic")
    assert_json_error(
        await http.get(url(wsgi, "longpoll", topic=topic, cursor="garbage")), 400, "invalid_cursor"
    )
    assert_json_error(await http.get(url(wsgi, "poll")), 400, "invalid_topic")
    assert_json_error(await http.get(f"{wsgi.base_url}/rt/nope"), 404, "not_found")
    wrong_method = await http.post(url(wsgi, "poll", topic=topic))
    assert_json_error(wrong_method, 405, "method_not_allowed")
    assert wrong_method.headers["allow"] == "GET"
    body = {"topic": topic, "data": 1}
    bad_token = await http.post(
        url(wsgi, "publish"), json=body, headers={"authorization": "Bearer nope"}
    )
    assert_json_error(bad_token, 403, "bad_token")
    # No token, no session, no CSRF token: Django's CSRF check refuses it, as JSON.
    assert_json_error(await http.post(url(wsgi, "publish"), json=body), 403, "csrf_failed")
    denied = await http.get(url(wsgi, "poll", topic="e2edeny.x"))
    assert_json_error(denied, 403, "forbidden")
    plain = await http.get(url(wsgi, "ws"))
    assert_json_error(plain, 426, "upgrade_required")
