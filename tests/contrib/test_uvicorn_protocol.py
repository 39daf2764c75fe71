"""rtdelivery.contrib.uvicorn: Uvicorn's WebSocket behaviour, kept with a lighter protocol.

Uvicorn processes run with ``--ws rtdelivery.contrib.uvicorn:WebSocketProtocol`` (one with
a max size between rtdelivery's frame limit and what the tests send, one with a short
keepalive) and the flow-control settings of the slow-client fault; real sockets, real Redis. The last test
runs Uvicorn in this process to look at the protocol object itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import delete_prefixed_keys, find_free_port
from tests.e2e.clients import WSClient, http_client, http_publish, ws_connect
from tests.e2e.conftest import (
    ROOT,
    TOKEN,
    Server,
    Servers,
    server_command,
    server_env,
    stop_server,
    wait_ready,
)
from tests.faults.rawclients import RawWS

PROTOCOL = "rtdelivery.contrib.uvicorn:WebSocketProtocol"
PING = 0.5  # --ws-ping-interval and --ws-ping-timeout (seconds)
MAX_SIZE = 256 * 1024  # --ws-max-size: above rtdelivery's 128 KiB frame limit
APP_LIMIT = 128 * 1024  # RTDELIVERY["WS_MAX_MESSAGE_BYTES"] (the default)
QUEUE_SIZE = 300
SLOW_EVENTS = 5000  # 10 MB: more than loopback socket buffers hold
WAIT = 20.0

pytestmark = pytest.mark.timeout(180)


@contextlib.contextmanager
def lean_server(redis_url: str, log_dir: Path, *args: str) -> Iterator[Servers]:
    """One Uvicorn process with the protocol (and a fresh Redis prefix)."""
    prefix = f"rtde2e:{uuid4().hex[:12]}:"
    env = server_env(
        redis_url,
        prefix,
        {
            "DJANGO_SETTINGS_MODULE": "tests.faults.settings_flow",
            "RTD_HISTORY_SIZE": str(SLOW_EVENTS + 1000),
            "RTD_QUEUE_SIZE": str(QUEUE_SIZE),
            "RTD_WS_RATE": "100000",
            "RTD_WS_BURST": "100000",
        },
    )
    port = find_free_port()
    log_path = log_dir / f"uvicorn-{port}.log"
    cmd = [*server_command("uvicorn", port), "--ws", PROTOCOL, *args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    server = Server("uvicorn", port, process, log_path, prefix, env)
    try:
        wait_ready(server)
        yield Servers("uvicorn", prefix, TOKEN, [server])
    finally:
        status = stop_server(server)
        print(f"--- uvicorn (lean ws) pid {server.pid} port {port} exit {status}")
        print(server.log_tail())
        delete_prefixed_keys(redis_url, prefix)


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lean-uvicorn")


@pytest.fixture(scope="module")
def lean(redis_url: str, log_dir: Path) -> Iterator[Servers]:
    """Uvicorn's default keepalive (a stalled reader must not die of it first)."""
    with lean_server(redis_url, log_dir, "--ws-max-size", str(MAX_SIZE)) as servers:
        yield servers


@pytest.fixture(scope="module")
def lean_ping(redis_url: str, log_dir: Path) -> Iterator[Servers]:
    """A short keepalive: a ping every PING seconds, PING seconds to answer."""
    ping = ["--ws-ping-interval", str(PING), "--ws-ping-timeout", str(PING)]
    with lean_server(redis_url, log_dir, *ping) as servers:
        yield servers


def new_topic() -> str:
    return f"e2e.lean{uuid4().hex[:10]}"


async def test_every_event_once_in_order_and_resume(lean: Servers) -> None:
    topic = new_topic()
    base = lean.a.base_url
    async with http_client() as http:
        sub = WSClient(base, [topic])
        await sub.connect()
        try:
            for i in range(30):
                await http_publish(http, base, lean.token, topic, {"i": i})
            await sub.wait_total(30, WAIT)
            await sub.drop()
            for i in range(30, 50):
                await http_publish(http, base, lean.token, topic, {"i": i})
            await sub.connect()  # from the last event's id
            await sub.wait_total(50, WAIT)
        finally:
            await sub.close()
    assert [e["seq"] for e in sub.events] == list(range(1, 51))
    assert [e["data"]["i"] for e in sub.events] == list(range(50))
    assert "Traceback" not in lean.a.log(), lean.a.log_tail(80)


class _PingWatch(RawWS):
    """A raw WebSocket that records the server's pings and answers them while told to."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.pings: list[bytes] = []
        self.answer = True

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode == 0x9:
            self.pings.append(payload)
            if not self.answer:
                return
        super()._frame(fin, opcode, payload)

    async def read_until(self, done: Any, timeout: float) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while not done() and not self.ended:
            chunk = await self._read_some(deadline)
            if not chunk:
                self.ended = True
            self._feed(chunk)


async def test_keepalive_pings_and_timeout(lean_ping: Servers) -> None:
    ws = _PingWatch(lean_ping.a.port)
    await ws.connect(new_topic())
    try:
        # Answered pings keep coming (the pong chains the next ping) and the socket stays.
        await ws.read_until(lambda: len(ws.pings) >= 3, WAIT)
        assert not ws.ended, (ws.close_code, ws.frames)
        assert len(set(ws.pings)) == len(ws.pings), "each ping has its own payload"
        # Unanswered: the server gives up after the ping timeout with 1011.
        ws.answer = False
        started = time.monotonic()
        await ws.read_until_end(WAIT)
        elapsed = time.monotonic() - started
    finally:
        ws.abort()
    assert ws.close_code == 1011, ws.close_code
    assert elapsed < PING * 2 + 5, elapsed


async def test_close_codes(lean: Servers) -> None:
    base = lean.a.base_url
    # Client-initiated: the server echoes the code, the handshake completes.
    ws = await ws_connect(base)
    await ws.close(code=4321, reason="bye")
    sent, rcvd = ws.protocol.close_sent, ws.protocol.close_rcvd
    assert sent is not None
    assert rcvd is not None
    assert (sent.code, rcvd.code, rcvd.reason) == (4321, 4321, "bye")
    # Server-initiated by the app (a frame over rtdelivery's limit): 1009 and its reason.
    ws = await ws_connect(base, max_size=None)
    await ws.send(json.dumps({"op": "ping", "pad": "x" * (APP_LIMIT + 10)}))
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), WAIT)
    rcvd = ws.protocol.close_rcvd
    assert rcvd is not None
    assert (rcvd.code, rcvd.reason) == (1009, "frame too big")


async def test_message_over_max_size_closed_1009(lean: Servers) -> None:
    ws = await ws_connect(lean.a.base_url, max_size=None)
    await ws.send("x" * (MAX_SIZE + 10))  # refused by the protocol: the app never sees it
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), WAIT)
    rcvd = ws.protocol.close_rcvd
    assert rcvd is not None
    assert rcvd.code == 1009, rcvd
    assert rcvd.reason != "frame too big", "expected the protocol's 1009, not the app's"


async def test_denied_handshakes(lean: Servers) -> None:
    # Refused by the app (Origin): its websocket.close before accept is a 403.
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(lean.a.base_url, origin="http://evil.example")
    assert refused.value.response.status_code == 403
    # Refused by websockets itself (an unsupported version): 400, then closed.
    reader, writer = await asyncio.open_connection("127.0.0.1", lean.a.port)
    try:
        writer.write(
            f"GET /rt/ws HTTP/1.1\r\nHost: 127.0.0.1:{lean.a.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 8\r\n\r\n".encode()
        )
        answer = await asyncio.wait_for(reader.read(), WAIT)  # up to EOF
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]


async def test_permessage_deflate(lean: Servers) -> None:
    topic = new_topic()
    base = lean.a.base_url
    ws = await ws_connect(base)  # websockets offers permessage-deflate by default
    try:
        assert [e.name for e in ws.protocol.extensions] == ["permessage-deflate"]
        await ws.send(json.dumps({"op": "subscribe", "topic": topic, "ref": "s"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), WAIT))["op"] == "subscribed"
        pad = "compressible " * 500
        async with http_client() as http:
            for i in range(3):
                await http_publish(http, base, lean.token, topic, {"i": i, "pad": pad})
        got = [json.loads(await asyncio.wait_for(ws.recv(), WAIT)) for _ in range(3)]
    finally:
        await ws.close()
    assert [(e["seq"], e["data"]["i"], e["data"]["pad"]) for e in got] == [
        (i + 1, i, pad) for i in range(3)
    ]
    plain = await ws_connect(base, compression=None)
    try:
        assert plain.protocol.extensions == []
    finally:
        await plain.close()


async def test_stalled_reader_too_slow_with_cursor(lean: Servers) -> None:
    topic = new_topic()
    base = lean.a.base_url
    raw = RawWS(lean.a.port)
    await raw.connect(topic)
    publisher = WSClient(base, [new_topic()])
    await publisher.connect()
    pad = "x" * 2000
    try:
        for start in range(0, SLOW_EVENTS, 100):  # one socket's publishes are acked in turn
            await asyncio.gather(
                *(publisher.publish(topic, {"i": i, "pad": pad}) for i in range(start, start + 100))
            )
        await raw.read_until_end()  # what was in flight, then too_slow and the close
    finally:
        await publisher.close()
        raw.abort()
    assert raw.closing is not None, (raw.close_code, raw.error, len(raw.events))
    assert raw.closing[0] == "too_slow", raw.closing
    assert raw.closing[1], "too_slow without a cursor"
    assert raw.close_code == 4001, raw.close_code
    got = len(raw.events)
    assert got < SLOW_EVENTS, "the reader was never too slow"
    async with WSClient(base, [topic], raw.closing[1]) as fresh:
        await fresh.wait_total(SLOW_EVENTS - got, WAIT * 2)
        seqs = [e["seq"] for e in raw.events] + [e["seq"] for e in fresh.events]
    assert seqs == list(range(1, SLOW_EVENTS + 1))


# -- the protocol object, in this process ----------------------------------------------


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept and echo on /echo; a denial response with a body on /deny."""
    assert scope["type"] == "websocket"
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] == "/deny":
        await send({"type": "websocket.http.response.start", "status": 401, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"no entry"})
        return
    await send({"type": "websocket.accept", "headers": [(b"x-seen", scope["path"].encode())]})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message["text"]})


@contextlib.asynccontextmanager
async def _in_process() -> Any:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(_app, ws=PROTOCOL, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        deadline = time.monotonic() + WAIT
        while not server.started:
            assert not serving.done(), serving
            assert time.monotonic() < deadline, "in-process Uvicorn did not start"
            await asyncio.sleep(0.01)  # polling Uvicorn's flag, bounded
        yield server, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, WAIT)
        sock.close()


async def test_protocol_drops_the_handshake_after_accept() -> None:
    from rtdelivery.contrib.uvicorn import WebSocketProtocol
    from rtdelivery.transports.flow import _uvicorn_ws_protocol

    async with _in_process() as (server, base):
        ws = await ws_connect(base, path="/echo", origin=None)
        try:
            assert ws.response is not None
            assert ws.response.headers["x-seen"] == "/echo"
            await ws.send("hello")
            assert await asyncio.wait_for(ws.recv(), WAIT) == "hello"
            (protocol,) = server.server_state.connections
            assert type(protocol) is WebSocketProtocol
            # rtdelivery's one-write path (flow) recognises it as Uvicorn's own.
            assert _uvicorn_ws_protocol(protocol) is protocol
            assert protocol.handshake_complete
            assert protocol.request is None
            assert protocol.response is None
            assert len(protocol.scope["headers"]) > 0  # the app's scope is untouched
            assert protocol.queue.empty()
            assert protocol.writable.is_set()
        finally:
            await ws.close()
        with pytest.raises(InvalidStatus) as denied:
            await ws_connect(base, path="/deny", origin=None)
        assert denied.value.response.status_code == 401
        assert denied.value.response.body == b"no entry"


def test_import_fails_loudly_on_another_parent(tmp_path: Path) -> None:
    """A parent that no longer matches (here: a name its __init__ sets) stops the import."""
    script = tmp_path / "drifted.py"  # a file: the check reads the parent's source
    script.write_text(
        "import uvicorn.protocols.websockets.websockets_sansio_impl as impl\n"
        "src = impl.WebSocketsSansIOProtocol.__init__\n"
        "def __init__(self, *a, **k):\n"
        "    src(self, *a, **k)\n"
        "    self.something_new = 1\n"
        "impl.WebSocketsSansIOProtocol.__init__ = __init__\n"
        "import rtdelivery.contrib.uvicorn\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(ROOT))},
    )
    assert result.returncode != 0
    assert "ImportError" in result.stderr, result.stderr
    assert "something_new" in result.stderr, result.stderr


def test_per_server_values_follow_uvicorn_and_go_with_the_server() -> None:
    """The shared per-server object reads Uvicorn's default headers (replaced every
    second with a new Date) at each accept, and does not keep the server alive."""
    import gc
    import weakref

    import uvicorn
    from uvicorn.server import ServerState

    from rtdelivery.contrib import uvicorn as lean

    config = uvicorn.Config("tests.asgi_that_fails:application", interface="asgi3")
    config.loaded_app = object()
    state = ServerState()
    state.default_headers = [(b"date", b"one")]
    loop = asyncio.new_event_loop()
    try:
        app_state: dict[str, Any] = {}
        shared = lean._server(config, state, app_state, loop)
        assert shared.default_headers == [(b"date", b"one")]
        state.default_headers = [(b"date", b"two")]  # Uvicorn's tick
        assert lean._server(config, state, app_state, loop) is shared
        assert shared.default_headers == [(b"date", b"two")]
        gone = weakref.ref(state)
        del state
        gc.collect()
        assert gone() is None
        assert shared.default_headers == []
    finally:
        loop.close()
