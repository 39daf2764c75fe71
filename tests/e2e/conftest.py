"""Real servers for the end-to-end tests: Daphne or Uvicorn processes on loopback ports.

Every group of servers shares the real Redis (``REDIS_URL`` or redis://127.0.0.1:6379/0)
under a key prefix of its own (channel layer and history), deleted at teardown. Servers
are stopped by PID (terminate, wait, kill if needed); their output goes to a log file
whose tail is printed at teardown (shown by pytest when a test fails).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from tests.conftest import delete_prefixed_keys, find_free_port

ROOT = Path(__file__).resolve().parents[2]
SERVER_KINDS = ("daphne", "uvicorn")
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
#: Bearer token the servers accept for POST /rt/publish.
TOKEN = "e2e-publish-token-" + uuid4().hex


@dataclass
class Server:
    kind: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    prefix: str
    env: dict[str, str] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


@dataclass
class Servers:
    """Servers sharing one Redis prefix: a publish on any reaches subscribers on all."""

    kind: str
    prefix: str
    token: str
    items: list[Server]

    @property
    def a(self) -> Server:
        return self.items[0]

    @property
    def b(self) -> Server:
        return self.items[-1]


def server_command(kind: str, port: int) -> list[str]:
    if kind == "daphne":
        daphne = Path(sys.executable).with_name("daphne")
        return [str(daphne), "-b", "127.0.0.1", "-p", str(port), "demo_site.asgi:application"]
    if kind == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", "demo_site.asgi:application",
            "--host", "127.0.0.1", "--port", str(port), "--lifespan", "off",
        ]  # fmt: skip
    raise ValueError(f"unknown server kind {kind!r}; expected one of {SERVER_KINDS}")


def start_server(kind: str, env: dict[str, str], log_dir: Path) -> Server:
    port = find_free_port()
    log_path = log_dir / f"{kind}-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            server_command(kind, port),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Server(kind, port, process, log_path, env["RTD_PREFIX"], env)


def wait_ready(server: Server, timeout: float = READY_TIMEOUT) -> None:
    """Poll ``GET /rt/poll?topic=e2e.ready`` until it answers 200 (or fail with the log)."""
    deadline = time.monotonic() + timeout
    url = f"{server.base_url}/rt/poll?topic=e2e.ready"
    last = "no answer"
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                pytest.fail(
                    f"{server.kind} on port {server.port} exited with {server.process.returncode}"
                    f":\n{server.log_tail()}",
                    pytrace=False,
                )
            try:
                response = client.get(url)
            except httpx.TransportError as exc:
                last = repr(exc)
            else:
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            time.sleep(0.1)  # polling a condition, bounded by the deadline
    pytest.fail(
        f"{server.kind} on port {server.port} not ready after {timeout}s ({last}):\n"
        f"{server.log_tail()}",
        pytrace=False,
    )


def stop_server(server: Server) -> int | None:
    """Terminate by PID, wait, kill if it does not exit. Returns the exit status."""
    process = server.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
    return process.returncode


def server_env(redis_url: str, prefix: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}  # loopback only
    env.update(
        DJANGO_SETTINGS_MODULE="tests.e2e.settings_e2e",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        REDIS_URL=redis_url,
        RTD_PREFIX=prefix,
        RTD_PUBLISH_TOKENS=TOKEN,
    )
    env.update(extra or {})
    return env


@contextlib.contextmanager
def running_servers(
    kind: str,
    redis_url: str,
    log_dir: Path,
    *,
    count: int = 2,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Servers]:
    """``count`` servers of ``kind`` on one fresh Redis prefix; all stopped and cleaned after."""
    prefix = f"rtde2e:{uuid4().hex[:12]}:"
    env = server_env(redis_url, prefix, extra_env)
    started: list[Server] = []
    try:
        for _ in range(count):
            started.append(start_server(kind, env, log_dir))
        for server in started:
            wait_ready(server)
        yield Servers(kind, prefix, TOKEN, started)
    finally:
        for server in started:
            status = stop_server(server)
            print(f"--- {server.kind} pid {server.pid} port {server.port} exit {status}")
            print(server.log_tail())
        delete_prefixed_keys(redis_url, prefix)


@pytest.fixture(scope="module")
def e2e_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-logs")


@pytest.fixture(scope="module", params=SERVER_KINDS)
def servers(request: pytest.FixtureRequest, redis_url: str, e2e_log_dir: Path) -> Iterator[Servers]:
    """Two servers (A and B) of one kind sharing Redis; once per kind for the module."""
    with running_servers(request.param, redis_url, e2e_log_dir) as group:
        yield group


@pytest.fixture
def topic() -> str:
    """A topic no other test uses (servers are shared by a module's tests)."""
    return f"e2e.t{uuid4().hex[:12]}"
