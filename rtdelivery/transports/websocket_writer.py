"""Writing to one WebSocket: events and replies in queue order, and how they get there.

Every item of a connection's inbox (:class:`~rtdelivery.subscriber.Subscriber`) reaches
the socket in queue order, by one of two ways:

- **A writer task** takes what is queued and sends it through the ASGI ``send`` (which
  waits for room). Under servers without a direct write (Daphne, Uvicorn's wsproto and
  legacy websockets protocols) it lives as long as the connection and waits in
  :meth:`Subscriber.get`.
- **Under Uvicorn's websockets-sansio protocol** (:attr:`flow.Link.direct`) there is no
  writer task while nothing is queued. Events that arrive are written by the process's
  write round (:class:`flow.WriteRound`): one callback per loop step writes the step's
  events to every such socket, as a raw broadcast loop does, instead of waking a task per
  connection. Anything else (a reply, a control item, a socket over its high-water mark,
  the end of the connection) starts a writer task, which sends everything queued in
  order and ends once the inbox is empty. The round writes only while no writer task
  runs, so nothing overtakes what a writer has in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from .. import access, metrics
from ..conf import Settings
from ..core.cursors import Cursor, Position
from ..core.errors import WebSocketClose as _Close
from ..core.events import Event
from ..subscriber import Item, Notice, Reset, SlowConsumer, Subscriber, SubscriberClosed
from . import flow
from .http import Send

logger = logging.getLogger("rtdelivery.websocket")

#: Close codes (documented in docs/protocol.md).
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013
CLOSE_TOO_SLOW = 4001
#: Too many open connections for this user or address (like HTTP 429); docs/protocol.md.
CLOSE_TOO_MANY_CONNECTIONS = 4029
#: The connection token expired: fetch a fresh one, resume from the error frame's cursor.
CLOSE_TOKEN_EXPIRED = 4003
#: Access ended on the server (rtdelivery.disconnect(), logout): don't reconnect as before.
CLOSE_ACCESS_ENDED = 4004

#: Events handed to the socket in one write at most (flow.Link.write_texts).
WRITE_CHUNK = 64


class Writer:
    """The writing half of a WebSocket connection (mixed into ``Connection``)."""

    __slots__ = ("_flush_due", "_round", "_started", "_writer", "close_sent")

    conf: Settings
    sub: Subscriber
    link: flow.Link
    send: Send
    sent: dict[str, Position]
    id: str
    user: Any

    def _init_writer(self) -> None:
        self.close_sent = False
        self._flush_due = False
        self._writer: asyncio.Task[None] | None = None
        self._started = False
        self._round: flow.WriteRound | None = None
        if self.link.direct:
            self._round = flow.write_round()
            self.sub.on_ready = self._ready

    def start_writer(self) -> None:
        """Start writing (once the socket is accepted)."""
        self._started = True
        if self._round is None:
            self._writer = asyncio.ensure_future(self.run_writer())
        else:
            self._ready()  # anything queued before the accept

    async def stop_writer(self) -> None:
        """The connection is over: stop the writer task, if one runs."""
        self._started = False
        self.sub.on_ready = None  # no reference cycle left: freed without the collector
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    async def _leave_presence(self, topic: str) -> None:
        raise NotImplementedError  # the connection's

    # -- the write round (direct links) --------------------------------------------------
    def _ready(self) -> None:
        """The inbox got something (or overflowed, or closed) and no writer waits for it."""
        if self._writer is not None or not self._started or self.close_sent:
            return  # a writer task runs: it sends everything queued before it ends
        sub = self.sub
        items = sub.queued()
        if sub.overflowed or sub.closed or (items and not isinstance(items[-1], Event)):
            self._spawn()  # a reply, a control item or the end: the writer's job, at once
        elif items and not self._flush_due:
            self._flush_due = True
            self._round.add(self)  # type: ignore[union-attr]

    def flush_round(self) -> int:
        """From the write round: write what is queued if it is only events and the socket
        takes them now (returns how many); else start the writer task, which sends it
        through ``send`` (waiting for room). The usual case (one event) allocates nothing:
        at a thousand sockets per event that would be a thousand objects for the garbage
        collector, whose pauses are what a steady stream's worst latencies are made of."""
        self._flush_due = False
        if self._writer is not None or not self._started or self.close_sent:
            return 0
        sub = self.sub
        items = sub.queued()
        n = len(items)
        if sub.overflowed or sub.closed:
            self._spawn()
            return 0
        if n == 1:
            item = items[0]
            if isinstance(item, Event) and self.link.write_text(item.ws_frame):
                self.sent[item.topic] = item.position
                sub.clear_queued()
                return 1
        elif 0 < n <= WRITE_CHUNK and all(isinstance(item, Event) for item in items):
            if self.link.write_texts([item.ws_frame for item in items]):  # type: ignore[union-attr]
                sent = self.sent
                for item in items:
                    sent[item.topic] = item.position  # type: ignore[union-attr]
                sub.clear_queued()
                return n
        elif n == 0:
            return 0
        self._spawn()
        return 0

    def _spawn(self) -> None:
        writer = asyncio.ensure_future(self.run_writer(until_empty=True))
        # An eager task factory (Python 3.12+) may have run it to its end already, empty
        # inbox and all: a finished writer must not count as running.
        if not writer.done():
            self._writer = writer

    # -- the writer task -------------------------------------------------------------------
    async def run_writer(self, *, until_empty: bool = False) -> None:
        """Send what is queued, in order: events and replies.

        ``until_empty``: end once nothing is queued (the write round's links); else wait
        for more for the life of the connection. When it ends the connection, it closes
        the socket; the server then delivers ``websocket.disconnect``, which ends the
        reading side. (One coroutine, no nested ones: a frame less per connection.)
        """
        try:
            sub = self.sub
            while True:
                try:
                    if until_empty:
                        if not (sub.queued() or sub.overflowed or sub.closed):
                            # Checked and given up in one step: whatever comes next finds
                            # no writer and goes to the write round or a new writer.
                            if self._writer is asyncio.current_task():
                                self._writer = None
                            return
                        items = sub.get_nowait()
                    else:
                        items = await sub.get()
                except SlowConsumer:
                    metrics.slow_consumer_ended("ws", self.id, self.user, self.sent)
                    await self._send_json(
                        {
                            "op": "error",
                            "code": "too_slow",
                            "message": "The connection did not keep up; resume from cursor.",
                            "cursor": Cursor(self.sent).encode(self.conf.cursor_key),
                        }
                    )
                    raise _Close(CLOSE_TOO_SLOW, "too slow") from None
                except SubscriberClosed:
                    raise _Close(CLOSE_GOING_AWAY, "server going away") from None
                await self._write_items(items)
        except _Close as exc:
            close = exc
        except OSError:  # the client is gone (Uvicorn's ClientDisconnected): no one to tell
            logger.debug("WebSocket writer: the client is gone", exc_info=True)
            self.close_sent = True
            return
        except Exception:
            logger.exception("WebSocket writer failed")
            close = _Close(1011, "internal error")
        self.close_sent = True
        await send_close(self.send, close)

    async def _write_items(self, items: list[Item]) -> None:
        """Send one batch taken from the inbox (raises ``_Close`` to end the connection)."""
        send = self.send
        sub = self.sub
        sent = self.sent
        write_texts = self.link.write_texts if self.link.direct else None
        delivered = 0
        i, n = 0, len(items)
        while i < n:
            if sub.overflowed:
                # Too slow while this batch was being written (each send waits for
                # room): stop here, the cursor covers what was sent.
                break
            item = items[i]
            i += 1
            if isinstance(item, Event) and write_texts is not None:
                # A run of events: one write to the socket where the server
                # allows it (flow.Link.write_texts), in chunks so that its
                # high-water mark is looked at between them.
                j = i
                while j < n and j - i < WRITE_CHUNK and isinstance(items[j], Event):
                    j += 1
                run = items[i - 1 : j]
                if write_texts([e.ws_frame for e in run]):  # type: ignore[union-attr]
                    for e in run:
                        sent[e.topic] = e.position  # type: ignore[union-attr]
                    delivered += len(run)
                    i = j
                    continue
            if isinstance(item, Event):
                sent[item.topic] = item.position
                await send({"type": "websocket.send", "text": item.ws_frame})
                delivered += 1
            elif isinstance(item, Notice):
                if item.kind == "frame":
                    if item.data is not None:  # a `subscribed` that moves the cursor
                        moved: tuple[str, Position] = item.data  # type: ignore[assignment]
                        sent[moved[0]] = moved[1]
                    await send({"type": "websocket.send", "text": item.text})
                elif item.kind == "presence":
                    data = item.data if isinstance(item.data, dict) else {}
                    await self._send_json({"op": "presence", **data})
                elif item.kind == "close":
                    code_reason: tuple[int, str] = item.data  # type: ignore[assignment]
                    raise _Close(*code_reason)
                elif item.kind == access.END:
                    await self._end(str(item.data))
                elif item.kind == access.TOPIC_ENDED:
                    await self._topic_ended(item.data)  # type: ignore[arg-type]
            elif isinstance(item, Reset):
                sent[item.topic] = item.position
                await self._send_json(
                    {
                        "op": "subscribed",
                        "topic": item.topic,
                        "recovered": False,
                        "cursor": Cursor({item.topic: item.position}).encode(self.conf.cursor_key),
                    }
                )
        metrics.delivered["ws"].n += delivered

    async def _end(self, reason: str) -> None:
        """Access ended (token expiry, rtdelivery.disconnect()): say why, then close."""
        expired = reason == access.TOKEN_EXPIRED
        await self._send_json(
            {
                "op": "error",
                "code": reason,
                "message": "The connection token expired; resume from cursor with a fresh one."
                if expired
                else "The server ended this connection's access.",
                "cursor": Cursor(self.sent).encode(self.conf.cursor_key),
            }
        )
        raise _Close(CLOSE_TOKEN_EXPIRED if expired else CLOSE_ACCESS_ENDED, reason[:100])

    async def _topic_ended(self, data: dict[str, str]) -> None:
        """rtdelivery.unsubscribe() ended a topic (the hub already let it go)."""
        topic = data["topic"]
        self.sent.pop(topic, None)
        await self._leave_presence(topic)
        await self._send_json({"op": "unsubscribed", "topic": topic, "reason": data["reason"]})

    async def _send_json(self, payload: dict[str, Any]) -> None:
        await self.send(
            {"type": "websocket.send", "text": json.dumps(payload, separators=(",", ":"))}
        )


#: Stand-ins on servers that refuse the standard codes from an application.
FALLBACK_CLOSE_CODES = {
    CLOSE_GOING_AWAY: 4002,  # not 4001: that is "too slow"
    CLOSE_POLICY: 4008,
    CLOSE_TOO_BIG: 4009,
    1011: 4011,
    CLOSE_TRY_AGAIN: 4013,
}


def fallback_close_code(code: int) -> int:
    """The stand-in for ``code`` on servers that refuse it (see FALLBACK_CLOSE_CODES).

    Daphne (autobahn) lets an application close only with 1000 or 3000-4999 and raises
    for anything else (1001, 1008, 1009, 1011); the socket would stay open with no
    application behind it. There 1008 becomes 4008, 1009 4009, 1011 4011, 1001 4002.
    """
    return FALLBACK_CLOSE_CODES.get(code, code)


async def send_close(send: Send, close: _Close) -> None:
    """Close the socket with ``close``'s code (its stand-in where the server refuses it)."""
    try:
        await send({"type": "websocket.close", "code": close.code, "reason": close.reason})
    except Exception:
        fallback = fallback_close_code(close.code)
        if fallback == close.code:
            return
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": fallback, "reason": close.reason})
