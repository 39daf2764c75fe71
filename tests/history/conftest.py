"""Fixtures for the history tests: both backends, and a private redis-server to abuse.

Every test here ends by closing the loop's Redis client and forgetting the history
instance, so no connection outlives the test's event loop.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from rtdelivery.core.cursors import Position
from rtdelivery.core.events import Event
from rtdelivery.history import History, ReadResult, get_history, reset_history
from rtdelivery.testing import areset
from tests.conftest import find_free_port, sync_redis

HISTORY_BACKENDS = ("memory", "redis")

#: Upper bound for any single wait on a redis-server (seconds); healthy runs need far less.
WAIT = 10.0

Configure = Callable[..., History]


#: The topic most tests use.
TOPIC = "chat.lobby"
OLD = 10 * 60 * 1000  # ten minutes, in ms: far beyond a 60 s max age


def now_ms() -> int:
    return int(time.time() * 1000)


async def append_n(
    history: History, n: int, topic: str = TOPIC, at: int | None = None
) -> list[Event]:
    """Append ``n`` events one after the other (data = their index from 1)."""
    events = []
    for i in range(n):
        when = now_ms() if at is None else at
        events.append(await history.append(topic, "message", json.dumps({"i": i + 1}), when))
    return events


def seqs(result: ReadResult | list[Event]) -> list[int]:
    events = result.events if isinstance(result, ReadResult) else result
    return [e.seq for e in events]


def same_event(a: Event, b: Event) -> bool:
    """Same event, field by field (Event has no __eq__)."""
    return (a.topic, a.seq, a.epoch, a.type, a.data_json, a.time, a.id) == (
        b.topic,
        b.seq,
        b.epoch,
        b.type,
        b.data_json,
        b.time,
        b.id,
    )


def assert_lost(result: ReadResult, head: Position) -> None:
    """Not recoverable, older than what is retained: no backlog, positioned at the live end."""
    assert result.recovered is False
    assert result.events == []
    assert result.position == head
    assert result.more is False


def assert_reset(result: ReadResult, epoch: int, expected: list[int], more: bool = False) -> None:
    """Not recoverable, another epoch: the current ``epoch`` from its oldest retained event
    (``expected`` seqs), positioned after the last one returned."""
    assert result.recovered is False
    assert seqs(result) == expected
    assert {e.epoch for e in result.events} <= {epoch}
    if expected:
        assert result.position == Position(epoch, expected[-1])
    else:
        assert result.position == Position(epoch, result.first_seq - 1)
    assert result.more is more


def stale(epoch: int) -> int:
    """An epoch that is not ``epoch``."""
    return epoch + 2  # still odd like every real epoch, but not this one


@pytest.fixture(autouse=True)
async def _close_per_loop_resources(settings: Any) -> AsyncIterator[None]:
    # Depending on `settings` makes this teardown run before the settings are restored:
    # the client is closed while it is still the one cached for this loop (restoring
    # the settings makes rtdelivery forget, not close, its clients).
    yield
    await areset()


@pytest.fixture(params=HISTORY_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The history backend under test: "memory", or "redis" on the shared test Redis."""
    return str(request.param)


@pytest.fixture
def configure(settings: Any, request: pytest.FixtureRequest, backend: str) -> Configure:
    """configure(**extra) -> History: RTDELIVERY for ``backend`` plus ``extra``.

    Call it before the test's first history operation (changing settings afterwards
    would drop the loop's Redis client unclosed).
    """
    if backend == "memory":
        base: dict[str, Any] = {"HISTORY_BACKEND": "memory"}
    else:
        base = dict(request.getfixturevalue("redis_settings"))

    def configure_(**extra: Any) -> History:
        settings.RTDELIVERY = {**base, **extra}
        reset_history()
        history = get_history()
        assert type(history).__name__ == f"{backend.capitalize()}History"
        return history

    return configure_


@pytest.fixture
def history(configure: Configure) -> History:
    """The backend with default settings."""
    return configure()


class RedisServer:
    """A private redis-server on a loopback port: stop, start, restart it at will.

    Only the process this object started is ever signalled (by its PID).
    """

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        path = self.workdir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"

    def client(self) -> redis.Redis:
        return sync_redis(self.url)

    def start(self) -> None:
        assert self.process is None, "already running"
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail(
                "redis-server is not installed; these tests start a private one "
                "(Debian/Ubuntu: apt-get install redis-server).",
                pytrace=False,
            )
        # No automatic snapshots and no AOF: it starts empty unless the test wrote
        # workdir/dump.rdb itself (``save()``), which it then loads.
        self.process = subprocess.Popen(
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.workdir),
                "--logfile",
                str(self.workdir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + WAIT
        with sync_redis(self.url) as client:
            while True:
                if self.process.poll() is not None:
                    pytest.fail(f"redis-server exited early; its log:\n{self.log}", pytrace=False)
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not answer PING within {WAIT}s:\n{self.log}")
                time.sleep(0.01)  # polling interval, bounded by the deadline

    def run_id(self) -> str:
        """The running server's ``run_id`` (a new one at every start)."""
        with self.client() as client:
            return str(client.info("server")["run_id"])

    def save(self) -> None:
        """Write the RDB snapshot (``SAVE``) that the next start loads: ``dump.rdb`` in
        ``workdir``. Automatic snapshots stay off, so the file is exactly this moment."""
        with self.client() as client:
            assert client.save() is True

    def kill(self) -> None:
        """SIGKILL the server by its PID: a crash, nothing written on the way out."""
        process, self.process = self.process, None
        assert process is not None, "not running"
        process.kill()
        process.wait(timeout=WAIT)

    def stop(self) -> None:
        """Stop the server (SIGTERM to its PID, SIGKILL if it lingers)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=WAIT)

    def restart(self) -> None:
        """Stop it and start it again on the same port: empty, unless ``save()`` wrote a
        snapshot (SIGTERM writes none: automatic snapshots are off)."""
        self.stop()
        self.start()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running private redis-server (never the shared one: tests flush and kill it)."""
    server = RedisServer(find_free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_settings(settings: Any, redis_server: RedisServer) -> dict[str, Any]:
    """RTDELIVERY on Redis history in the private server."""
    config = {
        "HISTORY_BACKEND": "redis",
        "REDIS_URL": redis_server.url,
        "KEY_PREFIX": "rtdtest:private:",
    }
    settings.RTDELIVERY = config
    return config
