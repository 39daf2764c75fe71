"""rtdelivery.shutdown's signal hook in this process: what it chains onto, and the order.

The end-to-end behaviour under Daphne and Uvicorn is in test_shutdown.py; here a recording
handler stands in for the server's, and fake connections for rtdelivery's.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from rtdelivery import shutdown

WAIT = 5.0


class FakeConnection:
    """A tracked connection: ``go_away`` ends it on the next loop turn, unless stuck."""

    def __init__(self, *, stuck: bool = False) -> None:
        self.stuck = stuck
        self.task: asyncio.Task[Any] | None = None
        self.told: list[str] = []
        self.going = asyncio.Event()

    def go_away(self) -> None:
        self.told.append("go_away")
        self.going.set()
        if not self.stuck:
            asyncio.get_running_loop().call_soon(shutdown.untrack, self)

    def pending(self) -> int:
        return 0

    def abort(self) -> None:
        self.told.append("abort")
        shutdown.untrack(self)


class ServerHandler:
    """Stands in for the server's own SIGTERM handler; records what it saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []  # (signum, connections still open)
        self.called = asyncio.Event()

    def __call__(self, signum: int, frame: Any) -> None:
        self.calls.append((signum, len(shutdown._state.live)))
        self.called.set()


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[Any]:
    """A fresh hook state; the process's signal handlers restored afterwards."""
    saved = {signum: signal.getsignal(signum) for signum in shutdown.SIGNALS}
    monkeypatch.setattr(shutdown, "_state", shutdown._State())
    settings.RTDELIVERY = {**settings.RTDELIVERY, "SHUTDOWN_TIMEOUT": 0.5}
    yield settings
    for signum, handler in saved.items():
        signal.signal(signum, handler)


async def test_not_chained_over_the_default_actions(hook: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    shutdown.install()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    shutdown.track(FakeConnection())
    assert not shutdown._state.live


async def test_none_leaves_the_signals_to_the_server(hook: Any) -> None:
    server = ServerHandler()
    signal.signal(signal.SIGTERM, server)
    hook.RTDELIVERY = {**hook.RTDELIVERY, "SHUTDOWN_TIMEOUT": None}
    shutdown.install()
    assert signal.getsignal(signal.SIGTERM) is server


async def test_connections_say_goodbye_before_the_servers_handler(hook: Any) -> None:
    server = ServerHandler()
    signal.signal(signal.SIGTERM, server)
    shutdown.install()
    conns = [FakeConnection(), FakeConnection()]
    for conn in conns:
        shutdown.track(conn)

    signal.raise_signal(signal.SIGTERM)
    await asyncio.wait_for(server.called.wait(), WAIT)

    assert server.calls == [(signal.SIGTERM, 0)]  # once, after every connection ended
    assert [conn.told for conn in conns] == [["go_away"], ["go_away"]]
    late = FakeConnection(stuck=True)
    shutdown.track(late)  # opened during the shutdown: told at once
    assert late.told == ["go_away"]


async def test_a_stuck_connection_is_aborted_at_the_deadline(hook: Any) -> None:
    server = ServerHandler()
    signal.signal(signal.SIGTERM, server)
    shutdown.install()
    stuck = FakeConnection(stuck=True)
    shutdown.track(stuck)
    loop = asyncio.get_running_loop()
    started = loop.time()

    signal.raise_signal(signal.SIGTERM)
    await asyncio.wait_for(server.called.wait(), WAIT)

    assert stuck.told == ["go_away", "abort"]
    assert server.calls == [(signal.SIGTERM, 0)]
    assert 0.5 <= loop.time() - started < 0.5 + shutdown.ABORT_GRACE + 1.0


async def test_a_second_signal_goes_straight_to_the_server(hook: Any) -> None:
    hook.RTDELIVERY = {**hook.RTDELIVERY, "SHUTDOWN_TIMEOUT": WAIT}
    server = ServerHandler()
    signal.signal(signal.SIGINT, server)
    shutdown.install()
    stuck = FakeConnection(stuck=True)
    shutdown.track(stuck)

    signal.raise_signal(signal.SIGINT)
    assert shutdown.closing()
    assert not server.called.is_set()
    signal.raise_signal(signal.SIGINT)  # e.g. a second Ctrl+C: the server forces its exit
    await asyncio.wait_for(server.called.wait(), WAIT)
    assert server.calls == [(signal.SIGINT, 1)]  # while the stuck one was still open

    server.called.clear()
    await asyncio.wait_for(stuck.going.wait(), WAIT)  # the first signal's goodbye
    assert stuck.told == ["go_away"]
    shutdown.untrack(stuck)
    await asyncio.wait_for(server.called.wait(), WAIT)  # the first signal, passed on last
    assert server.calls == [(signal.SIGINT, 1), (signal.SIGINT, 0)]
