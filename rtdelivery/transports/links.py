"""The link between one connection and its server's transport: the base, and asyncio's.

A link is what rtdelivery sees of the server's own transport under a connection: bytes not
yet handed to the kernel and an abort (for :mod:`rtdelivery.shutdown`), and where the
server allows it a direct write (:mod:`rtdelivery.transports.flow`). Daphne's link is in
:mod:`rtdelivery.transports.daphne`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .. import shutdown
from ..subscriber import Subscriber
from .http import Send


class Link:
    """One connection's view of its server transport (this base: nothing to see).

    Write with :attr:`send`; :mod:`rtdelivery.shutdown` calls :meth:`go_away`,
    :meth:`pending` and :meth:`abort`.
    """

    __slots__ = ("__weakref__", "send", "sub", "task")

    #: Whether :meth:`write_texts` can write (else it always returns False).
    direct = False

    def __init__(self, send: Send, sub: Subscriber) -> None:
        #: The ``send`` the connection writes with: the server's own where it waits for
        #: room by itself (no extra call per frame), else one that waits (Daphne).
        self.send: Send = send
        self.sub = sub
        self.task = asyncio.current_task()

    def go_away(self) -> None:
        """The server is shutting down: end the connection with ``going_away``."""
        self.sub.close()

    def pending(self) -> int:
        """Bytes written by the application that the server has not handed to the kernel."""
        return 0

    def abort(self) -> None:
        """Drop the connection at once (a client that stopped reading, at shutdown)."""
        if self.task is not None:
            self.task.cancel()

    def release(self) -> None:
        """The connection is over: unhook from the server's transport."""
        shutdown.untrack(self)

    def write_texts(self, texts: list[str]) -> bool:
        """Write these WebSocket text messages at once, if the server's socket allows it
        now (open, not over its write buffer's high-water mark); False: nothing was
        written, send them through the ASGI ``send`` (which waits for room)."""
        return False

    def write_text(self, text: str) -> bool:
        """:meth:`write_texts` for one message (no list built per connection and event)."""
        return False


class AsyncioLink(Link):
    """Uvicorn (or any server whose ``send`` waits for room): only shutdown needs it."""

    __slots__ = ("_transport",)

    def __init__(self, send: Send, sub: Subscriber, transport: Any) -> None:
        super().__init__(send, sub)
        self._transport = transport

    def pending(self) -> int:
        try:
            return int(self._transport.get_write_buffer_size())
        except Exception:  # closed transport
            return 0

    def abort(self) -> None:
        self._transport.abort()
