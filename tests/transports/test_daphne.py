"""Daphne's close handshake timeout (rtdelivery.transports.daphne): close, then reset.

autobahn resets a WebSocket whose client did not answer the close frame in time, and the
client's kernel then drops what it had not read (the ``too_slow`` frame and its cursor).
rtdelivery closes it instead and resets it only after ``CLOSE_FLUSH_TIMEOUT``. End to end
under Daphne: ``tests/faults/test_slow_clients.py``; here the timers, on autobahn's own
protocol over Twisted's test transport.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest
import txaio
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet.testing import StringTransport

from rtdelivery.transports import daphne


class Transport(StringTransport):
    """Twisted's test transport, recording an abort."""

    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()


def closing_protocol() -> tuple[Any, Transport]:
    """An autobahn protocol that sent its close frame and waits for the answer."""
    protocol: Any = WebSocketServerProtocol()
    transport = Transport()
    protocol.transport = transport
    # As under Daphne: the upgraded request's HTTPChannel stays the transport's producer.
    transport.registerProducer(object(), True)
    protocol.peer = "tcp:127.0.0.1:9"
    protocol.is_closed = txaio.create_future()  # type: ignore[attr-defined]
    protocol.state = WebSocketServerProtocol.STATE_CLOSING
    protocol.closeHandshakeTimeout = daphne.CLOSE_HANDSHAKE_TIMEOUT
    return protocol, transport


async def test_a_silent_client_is_closed_then_reset(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(daphne, "CLOSE_FLUSH_TIMEOUT", 0.05)
    protocol, transport = closing_protocol()
    loop = asyncio.get_running_loop()
    reset = loop.create_future()
    transport.abortConnection = functools.partial(reset.set_result, True)  # type: ignore[method-assign]

    with caplog.at_level("INFO", logger="rtdelivery.transports"):
        daphne._close_handshake_timed_out(protocol, loop)

    # Closed, not reset: Twisted writes what it holds, then FIN.
    assert transport.disconnecting
    assert not reset.done()
    assert protocol.state == WebSocketServerProtocol.STATE_CLOSED
    assert protocol.wasCloseHandshakeTimeout
    assert not protocol.wasClean
    assert "did not answer the close frame within 10 s" in caplog.text
    # A client that reads nothing for CLOSE_FLUSH_TIMEOUT more is reset after all.
    assert await asyncio.wait_for(reset, 5)


async def test_nothing_happens_once_the_connection_is_closed() -> None:
    protocol, transport = closing_protocol()
    protocol.state = WebSocketServerProtocol.STATE_CLOSED
    daphne._close_handshake_timed_out(protocol, asyncio.get_running_loop())
    assert not transport.disconnecting
    assert not transport.aborted
