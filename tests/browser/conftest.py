"""Fixtures for the browser tests of rtdelivery.js: Chromium, a Daphne server, pages.

The server is a real Daphne subprocess (Uvicorn's for ``uvicorn_browser_server``) on a free
loopback port, on the real Redis (channel layer and history) under a key prefix of its own,
with the settings of tests/browser/settings_browser.py. Chromium is Debian's
(`apt-get install chromium`), driven by Playwright's sync API; Playwright's own browser
downloads are not used.

Screenshots of every test's page, and the server's log, go to test-artifacts/ at the repo root.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from uuid import uuid4

import httpx
import pytest

from tests.conftest import delete_prefixed_keys, find_free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
TOKEN = "browser-tests-token"
#: Upper bound for the server to start or stop (seconds); it needs ~1 s.
SERVER_WAIT = 30.0
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


class DaphneServer:
    """A Daphne process serving demo_site.asgi with the browser settings, restartable on its port."""

    #: The server's name in failure messages.
    name = "Daphne"
    #: The log line's text once its port accepts connections.
    ready_marker = b"Listening on TCP address"

    def __init__(self, port: int, env: dict[str, str], log_path: Path) -> None:
        self.port = port
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            str(Path(sys.executable).with_name("daphne")),
            "-b",
            "127.0.0.1",
            "-p",
            str(self.port),
            "demo_site.asgi:application",
        ]

    def start(self) -> None:
        assert self.process is None, "the server is already running"
        listening = threading.Event()
        self.process = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"---- start #{self.starts} pid {self.process.pid}\n".encode())
        self._reader = threading.Thread(
            target=_pump_log,
            args=(self.process.stdout, log, listening, self.ready_marker),
            daemon=True,
        )
        self._reader.start()
        # The server logs its ready_marker once its port accepts connections.
        if not listening.wait(SERVER_WAIT) or self.process.poll() is not None:
            self.stop()
            pytest.fail(
                f"{self.name} did not start on port {self.port}; see {self.log_path}",
                pytrace=False,
            )

    def kill(self) -> None:
        """Ends the process abruptly (SIGKILL), as a crash would."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """Ends the process gracefully (SIGTERM), SIGKILL if it lingers."""
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            os.kill(process.pid, sig)  # by PID: only the process this fixture started
            try:
                process.wait(SERVER_WAIT)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(SERVER_WAIT)
        if self._reader is not None:
            self._reader.join(SERVER_WAIT)
            self._reader = None

    def publish(self, topic: str, data: Any, event_type: str = "message") -> dict[str, Any]:
        """POST publish with the server token; returns ``{"topic", "seq", "id"}``."""
        response = httpx.post(
            f"{self.base_url}/rt/publish",
            json={"topic": topic, "type": event_type, "data": data},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result


class UvicornServer(DaphneServer):
    """The same, under Uvicorn with its defaults (the websockets-sansio WebSocket protocol,
    permessage-deflate offered): the WebSocket's direct write path (transports/flow.py)."""

    name = "Uvicorn"
    # Logged at INFO (Uvicorn's default level) once it listens.
    ready_marker = b"Uvicorn running on http://"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "demo_site.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--lifespan",
            "off",
        ]


def _pump_log(
    stream: IO[bytes] | None, log: IO[bytes], listening: threading.Event, marker: bytes
) -> None:
    assert stream is not None
    with stream, log:
        for line in stream:
            log.write(line)
            log.flush()
            if marker in line:
                listening.set()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium; fails (never skips) with how to install it when it is missing."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or DEFAULT_CHROMIUM
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"Chromium not found (looked for $CHROMIUM, `chromium` on PATH, {DEFAULT_CHROMIUM}). "
            "The browser tests need it: `apt-get install -y chromium` (Debian/Ubuntu), or set "
            "CHROMIUM to a Chromium/Chrome executable. Playwright's browser download is not used.",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def server_env(redis_url: str, port: int, prefix: str, **extra: str) -> dict[str, str]:
    """The environment of a browser-test server process (and of its manage.py commands)."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.browser.settings_browser",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            "REDIS_URL": redis_url,
            "RTD_BROWSER_PREFIX": prefix,
            "RTD_BROWSER_TOKEN": TOKEN,
            # WebSockets only from this origin: a page loaded from http://localhost:PORT has
            # its WebSocket refused (the fallback test) while its HTTP requests work.
            "RTD_BROWSER_ALLOWED_ORIGINS": f"http://127.0.0.1:{port}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    """Runs ``manage.py ARGS`` with a server's environment (its settings, DB and Redis)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SERVER_WAIT * 2,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"manage.py {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}",
            pytrace=False,
        )
    return result.stdout


@contextlib.contextmanager
def _running(
    cls: type[DaphneServer], redis_url: str, artifacts: Path, log_name: str
) -> Iterator[DaphneServer]:
    """A ``cls`` server on a free loopback port, on Redis under a prefix of its own
    (its keys deleted after), logging to ``artifacts / log_name``."""
    port = find_free_port()
    prefix = f"rtdbrowser:{uuid4().hex[:12]}:"
    log_path = artifacts / log_name
    log_path.write_bytes(b"")
    server = cls(port, server_env(redis_url, port, prefix), log_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        delete_prefixed_keys(redis_url, prefix)


@pytest.fixture(scope="module")
def browser_server(redis_url: str, artifacts: Path) -> Iterator[DaphneServer]:
    """A Daphne server on a free loopback port, on Redis under a prefix of its own.

    Module scope: it runs only while the browser tests do (its keys are deleted after).
    """
    with _running(DaphneServer, redis_url, artifacts, "daphne.log") as server:
        yield server


@pytest.fixture(scope="module")
def uvicorn_browser_server(redis_url: str, artifacts: Path) -> Iterator[DaphneServer]:
    """Like ``browser_server``, under Uvicorn (log: test-artifacts/uvicorn.log)."""
    with _running(UvicornServer, redis_url, artifacts, "uvicorn.log") as server:
        yield server


#: The superuser of the demo server (created with ``createsuperuser --noinput``).
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "browser-tests-admin-password"


@pytest.fixture(scope="module")
def demo_server(redis_url: str, artifacts: Path) -> Iterator[DaphneServer]:
    """Like ``browser_server``, for the demo site's pages: a migrated SQLite file database
    (shared with ``manage.py`` commands run with ``server.env``), a superuser
    ``ADMIN_USERNAME`` / ``ADMIN_PASSWORD``, and the dashboard simulator on.
    """
    port = find_free_port()
    prefix = f"rtdbrowser:{uuid4().hex[:12]}:"
    with tempfile.TemporaryDirectory(prefix="rtd-demo-db-") as tmp:
        env = server_env(
            redis_url,
            port,
            prefix,
            RTD_BROWSER_DB=str(Path(tmp) / "demo.sqlite3"),
            DEMO_SIMULATOR="1",
            DJANGO_SUPERUSER_USERNAME=ADMIN_USERNAME,
            DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD,
            DJANGO_SUPERUSER_EMAIL="admin@example.com",
        )
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "createsuperuser", "--noinput")
        log_path = artifacts / "daphne-demo.log"
        log_path.write_bytes(b"")
        server = DaphneServer(port, env, log_path)
        server.start()
        try:
            yield server
        finally:
            server.stop()
            delete_prefixed_keys(redis_url, prefix)


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    """Chromium driven by Playwright's sync API, for the tests of one module.

    Module scope, not session: while sync Playwright runs, its event loop counts as the
    thread's running loop (its greenlets share the thread), so pytest-asyncio tests of later
    modules would fail with "Cannot run the event loop while another loop is running".
    The browser tests themselves are plain (sync) functions.
    """
    from playwright.sync_api import sync_playwright

    # launch() gives the browser a fresh temporary profile (user-data-dir) of its own.
    with (
        tempfile.TemporaryDirectory(prefix="rtd-chromium-") as downloads,
        sync_playwright() as playwright,
    ):
        instance = playwright.chromium.launch(
            executable_path=chromium_path,
            headless=True,
            args=CHROMIUM_ARGS,
            downloads_path=downloads,
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(
    browser: Any, browser_server: DaphneServer, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """A page in a fresh context (own cookies and cache); screenshot saved after the test."""
    context = browser.new_context()
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        try:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        finally:
            context.close()
