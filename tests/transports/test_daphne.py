"""Daphne's close handshake timeout (rtdelivery.transports.daphne): close, then reset.

autobahn resets a WebSocket whose client did not answer the close frame in time, and the
client's kernel then drops what it had not read (the ``too_slow`` frame and its cursor).
rtdelivery closes it instead and resets it only after ``CLOSE_FLUSH_TIMEOUT``. End to end
under Daphne: ``tests/faults/test_slow_clients.py``; here the timers, on autobahn's own
protocol over Twisted's test transport. And the writer's wait for room in the socket,
which ends when the inbox overflows or closes.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest
import txaio
from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet.testing import StringTransport

from rtdelivery.core.cursors import Position
from rtdelivery.core.events import Event
from rtdelivery.subscriber import Subscriber
from rtdelivery.transports import daphne


class Transport(StringTransport):
    """Twisted's test transport, connected until it is lost, recording an abort."""

    aborted = False
    connected = True
    disconnected = False

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
    protocol.closedByMe = True
    protocol.closeHandshakeTimeoutCall = BatchedCall()
    protocol.application_queue = asyncio.Queue()  # Daphne's, read by the application
    return protocol, transport


class BatchedCall:
    """What autobahn's timers return (txaio's batched call): cancel() and nothing else."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


async def test_a_silent_client_is_closed_then_reset(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(daphne, "CLOSE_FLUSH_TIMEOUT", 0.05)
    protocol, transport = closing_protocol()
    loop = asyncio.get_running_loop()
    reset = loop.create_future()
    transport.abortConnection = functools.partial(reset.set_result, True)  # type: ignore[method-assign]

    with caplog.at_level("INFO", logger="rtdelivery.transports"):
        daphne._close_handshake_timed_out(protocol, loop)  # as its timer calls it

    # Closed, not reset: Twisted writes what it holds, then FIN.
    assert transport.disconnecting
    assert not reset.done()
    assert protocol.state == WebSocketServerProtocol.STATE_CLOSED
    assert protocol.wasCloseHandshakeTimeout
    assert not protocol.wasClean
    assert "did not answer the close frame within 10 s" in caplog.text
    # The application hears of it now, not once the client has read everything.
    assert protocol.application_queue.get_nowait() == {
        "type": "websocket.disconnect",
        "code": 1006,
    }
    # A client that reads nothing for CLOSE_FLUSH_TIMEOUT more is reset after all.
    assert await asyncio.wait_for(reset, 5)


def test_a_socket_gone_meanwhile_is_not_reset() -> None:
    _, transport = closing_protocol()
    transport.connected, transport.disconnected = False, True  # Twisted's connectionLost
    daphne._reset(transport)
    assert not transport.aborted
    transport.connected, transport.disconnected = True, False
    daphne._reset(transport)
    assert transport.aborted


@pytest.mark.parametrize("state", ["closing", "open"])
async def test_an_unanswered_ping_while_closing_closes_without_a_reset(state: str) -> None:
    """Daphne's keepalive ping resets the socket when it goes unanswered (autobahn's
    onAutoPingTimeout); once the close frame is out, the close's timeout runs instead."""
    protocol, transport = closing_protocol()

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError(message)

    daphne.daphne_link(send, Subscriber(1), protocol, "websocket", flow=False)
    if state == "open":
        protocol.state = WebSocketServerProtocol.STATE_OPEN
    close_timer = protocol.closeHandshakeTimeoutCall
    protocol.onAutoPingTimeout()
    assert protocol.state == WebSocketServerProtocol.STATE_CLOSED
    assert close_timer.cancelled is (state == "closing")  # the close's own: due no more
    assert transport.disconnecting
    assert transport.aborted is (state == "open")  # autobahn's own reset while open


async def test_nothing_happens_once_the_connection_is_closed() -> None:
    protocol, transport = closing_protocol()
    protocol.state = WebSocketServerProtocol.STATE_CLOSED
    daphne._close_handshake_timed_out(protocol, asyncio.get_running_loop())
    assert not transport.disconnecting
    assert not transport.aborted


# -- a writer waiting for room -------------------------------------------------------------


def paused_link() -> tuple[daphne.TwistedLink, Subscriber, list[dict[str, Any]]]:
    """Daphne's link of a subscriber on topic "t", its transport over the high-water mark."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    sub = Subscriber(2)
    sub.start_replay("t")
    sub.finish_replay("t", [], Position(7, 0))
    link = daphne.TwistedLink(send, sub, None, None)
    link.pauseProducing()  # what Twisted calls when its buffer is over 64 KiB
    return link, sub, sent


def event(seq: int) -> Event:
    return Event("t", seq, 7, "message", str(seq), 1_000 + seq, key=b"k" * 32)


async def test_a_send_waits_for_room_while_the_inbox_only_fills() -> None:
    link, sub, sent = paused_link()
    writing = asyncio.ensure_future(link.send({"type": "websocket.send", "text": "x"}))
    await asyncio.sleep(0)  # the send is handed over, then waits for room
    assert sent == [{"type": "websocket.send", "text": "x"}]
    sub.offer(event(1))  # queued: no reason to stop waiting
    await asyncio.sleep(0)
    assert not writing.done()
    link.resumeProducing()  # the client read: room again
    await asyncio.wait_for(writing, 5)
    assert sub.on_ready is None  # the hook was the wait's only


@pytest.mark.parametrize("end", ["overflow", "close"])
async def test_a_send_waiting_for_room_returns_when_the_inbox_overflows_or_closes(
    end: str,
) -> None:
    """The writer then has only the goodbye left: it ends now, not when the client
    reads again (its transport stays paused: the client never reads here)."""
    link, sub, _ = paused_link()
    writing = asyncio.ensure_future(link.send({"type": "websocket.send", "text": "x"}))
    await asyncio.sleep(0)
    assert not writing.done()
    if end == "overflow":
        for seq in (1, 2, 3):
            sub.offer(event(seq))
        assert sub.overflowed
    else:
        sub.close()
    await asyncio.wait_for(writing, 5)
    assert sub.on_ready is None
    # The goodbye itself does not wait for room either.
    await asyncio.wait_for(link.send({"type": "websocket.close", "code": 4001}), 5)


async def test_a_send_waits_for_room_when_the_inbox_closes_with_items_left() -> None:
    """access.end() queues its notice, then closes the inbox: what is queued is still
    written, and waits for room like everything before it (a bounded socket buffer)."""
    link, sub, _ = paused_link()
    writing = asyncio.ensure_future(link.send({"type": "websocket.send", "text": "x"}))
    await asyncio.sleep(0)
    sub.offer(event(1))
    sub.close()
    await asyncio.sleep(0)
    assert not writing.done()
    link.resumeProducing()
    await asyncio.wait_for(writing, 5)
    assert sub.on_ready is None
