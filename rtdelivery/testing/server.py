"""A real server in the test's own event loop: :func:`live_server` and :class:`LiveServer`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from ._common import _default_application
from .waiting import DEFAULT_TIMEOUT

__all__ = ["LiveServer", "live_server"]


class LiveServer:
    """A server started by :func:`live_server`: where to reach it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        #: ``http://host:port``
        self.url = f"http://{host}:{port}"

    def ws_url(self, path: str = "/rt/ws") -> str:
        """``ws://host:port`` + ``path``."""
        return f"ws://{self.host}:{self.port}{path}"

    def url_for(self, name: str, *, base: str | None = None, **params: Any) -> str:
        """Full URL of rtdelivery's endpoint ``name`` on this server, e.g.
        ``server.url_for("sse", topic="feed")`` (see :func:`~rtdelivery.testing.endpoint`)."""
        from .http import endpoint

        return self.url + endpoint(name, base=base, **params)


@contextlib.asynccontextmanager
async def live_server(
    application: Any = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[LiveServer]:
    """Serve ``application`` on a real socket, in the running event loop (Uvicorn)::

        async with live_server() as server, live_ws_client(server.ws_url()) as ws:
            await ws.subscribe("feed")
            await apublish("feed", {"n": 1})
            assert (await ws.receive_event())["data"] == {"n": 1}

    By default it serves the settings' Django project wrapped by ``rtdelivery_application``,
    as ``asgi.py`` does (rtdelivery's HTTP paths come from your URLconf, the WebSocket is
    at ``/rt/ws``). The server shares the test's
    loop, so ``apublish`` and :func:`subscribe` reach its connections with any channel
    layer. ``port=0`` picks a free port. Needs ``uvicorn`` (``rtdelivery[uvicorn]``).
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise ImportError(
            "rtdelivery.testing.live_server needs 'uvicorn' (pip install rtdelivery[uvicorn])."
        ) from exc
    if application is None:
        application = _default_application()
    config = uvicorn.Config(
        application,
        host=host,
        port=port,
        lifespan="off",
        log_level="warning",
        ws="websockets-sansio",
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    deadline = time.monotonic() + DEFAULT_TIMEOUT + 8
    while not server.started:
        if task.done():
            task.result()
            raise AssertionError("The live server stopped before it started.")
        if time.monotonic() > deadline:
            server.should_exit = True
            await task
            raise AssertionError(f"The live server did not start on {host}:{port}.")
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield LiveServer(host, int(bound[1]))
    finally:
        server.should_exit = True
        await task
