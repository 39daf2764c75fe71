"""A leaner Uvicorn WebSocket protocol: Uvicorn's own, without its per-socket fat.

    uvicorn --ws rtdelivery.contrib.uvicorn:WebSocketProtocol project.asgi:application

:class:`WebSocketProtocol` subclasses Uvicorn's ``WebSocketsSansIOProtocol`` (the default
``--ws``) and keeps its behaviour (handshake, denial responses, keepalive pings, close
handshake and timeout, read pause/resume, write high-water mark, permessage-deflate, max
size): every frame still goes through the parent's methods. What an idle socket no longer
holds for its whole life:

- the handshake's websockets ``Request`` and ``Response`` and their ``Headers``, which the
  parent only needs until the accept (or denial) response is written;
- an ``asyncio.Queue`` (three deques and an ``asyncio.Event``) for received messages: a
  list allocated while messages wait, a future while the app waits;
- an ``asyncio.Event`` (a deque) for ``writable``: a flag, a list only while a send waits;
- an instance ``__dict__`` past CPython's shared-key limit (30 names): the per-server
  values (config, app, loop, server state, ping settings) are read through one shared
  object, so each socket keeps 25 names in key-sharing inline values;
- a permessage-deflate factory per socket: one per server (it is stateless).

It relies on Uvicorn's internals (tested with :data:`TESTED_UVICORN`): the import fails
with the reason when the parent class no longer looks like the one this was written for.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import warnings
import weakref
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request
from websockets.server import ServerProtocol

__all__ = ["TESTED_UVICORN", "WebSocketProtocol"]

#: Uvicorn versions this module was tested with (major.minor).
TESTED_UVICORN = ("0.54",)

#: Every attribute the parent's ``__init__`` sets: :meth:`WebSocketProtocol.__init__`
#: replaces it, so a name added upstream must be added here (the import checks).
_PARENT_INIT = frozenset((
    "config", "app", "loop", "logger", "root_path", "asgi_version", "app_state",
    "connections", "tasks", "default_headers", "transport", "server", "client", "scheme",
    "queue", "handshake_initiated", "handshake_complete", "close_sent", "disconnected",
    "close_timer", "close_timeout", "initial_response", "conn", "read_paused", "writable",
    "ping_interval", "ping_timeout", "ping_timer", "pong_timer", "pending_ping_payload",
    "ping_sent_at", "last_ping_rtt", "frames", "curr_msg_data_type",
))  # fmt: skip
#: The methods of the replacements below that the parent calls.
_QUEUE_USES = frozenset({"put_nowait", "get", "empty"})
_FLAG_USES = frozenset({"set", "clear", "wait"})
#: The only parent methods that read the handshake's request/response.
_HANDSHAKE_USERS = frozenset({"handle_connect", "send"})


class _Inbox:
    """``asyncio.Queue`` (unbounded) as the parent uses it: ``put_nowait``, ``get``,
    ``empty``, ``qsize``. Nothing allocated while empty and nobody waits (the parent pauses
    reading after each message, so it rarely holds more than one or two)."""

    __slots__ = ("_getters", "_items")

    def __init__(self) -> None:
        self._items: list[Any] | None = None
        self._getters: list[asyncio.Future[None]] | None = None

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = [item]
        else:
            self._items.append(item)
        self._wake_next()

    async def get(self) -> Any:
        # asyncio.Queue.get: wait until an item is there; a getter cancelled after being
        # woken passes the wake-up on, so no item is left behind with a waiting getter.
        while not self._items:
            getter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                self._forget(getter)
                if self._items and not getter.cancelled():
                    self._wake_next()
                raise
            self._forget(getter)
        items = self._items
        item = items.pop(0)
        if not items:
            self._items = None
        return item

    def _forget(self, getter: asyncio.Future[None]) -> None:
        if self._getters is not None and getter in self._getters:
            self._getters.remove(getter)
            if not self._getters:
                self._getters = None

    def _wake_next(self) -> None:
        for getter in self._getters or ():
            if not getter.done():
                getter.set_result(None)
                return


class _Flag:
    """``asyncio.Event`` as the parent (and rtdelivery's flow control) uses it: ``set``,
    ``clear``, ``is_set``, ``wait``; the waiter list exists only while someone waits."""

    __slots__ = ("_value", "_waiters")

    def __init__(self, value: bool = False) -> None:
        self._value = value
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._value

    def set(self) -> None:
        if not self._value:
            self._value = True
            waiters, self._waiters = self._waiters, None
            for waiter in waiters or ():
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        self._value = False

    async def wait(self) -> bool:
        if self._value:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
                if not self._waiters:
                    self._waiters = None


class _Server:
    """What the parent copies into every socket but is the same for a whole server."""

    __slots__ = (
        "_state",
        "app",
        "app_state",
        "asgi_version",
        "config",
        "connections",
        "extensions",
        "logger",
        "loop",
        "ping_interval",
        "ping_timeout",
        "root_path",
        "tasks",
    )

    def __init__(
        self, config: Any, server_state: Any, app_state: dict[str, Any], loop: Any
    ) -> None:
        self.config = config
        # Weakly: this object is the value of a WeakKeyDictionary keyed by server_state.
        self._state = weakref.ref(server_state)
        self.app_state = app_state
        self.loop = loop
        self.app = config.loaded_app
        self.logger = logging.getLogger("uvicorn.error")
        self.root_path = config.root_path
        self.asgi_version = config.asgi_version
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.ping_interval = config.ws_ping_interval
        self.ping_timeout = config.ws_ping_timeout
        # The parent's settings; the factory only reads them (each socket that negotiates
        # permessage-deflate gets its own extension object from it).
        self.extensions = (
            [
                ServerPerMessageDeflateFactory(
                    server_max_window_bits=12,
                    client_max_window_bits=12,
                    compress_settings={"memLevel": 5},
                )
            ]
            if config.ws_per_message_deflate
            else []
        )

    @property
    def default_headers(self) -> Any:
        """Read at every accept: Uvicorn replaces the list every second (its Date)."""
        state = self._state()
        return [] if state is None else state.default_headers


#: What the handshake request's headers become once the parent has read them.
_NO_HEADERS = Headers()

_servers: weakref.WeakKeyDictionary[Any, _Server] = weakref.WeakKeyDictionary()


def _server(config: Any, server_state: Any, app_state: dict[str, Any], loop: Any) -> _Server:
    server = _servers.get(server_state)
    if (
        server is None
        or server.config is not config
        or server.app_state is not app_state
        or server.loop is not loop
        or server.app is not config.loaded_app
    ):
        server = _servers[server_state] = _Server(config, server_state, app_state, loop)
    return server


def _shared(name: str) -> Any:
    """A read-only attribute served from the socket's :class:`_Server`."""
    return property(lambda self: getattr(self._per_server, name), doc=f"The server's {name}.")


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """Uvicorn's websockets-sansio protocol, lighter per socket (see the module's doc)."""

    close_timeout = 10.0  # the parent's constant
    config = _shared("config")
    app = _shared("app")
    loop = _shared("loop")
    logger = _shared("logger")
    root_path = _shared("root_path")
    asgi_version = _shared("asgi_version")
    app_state = _shared("app_state")
    connections = _shared("connections")
    tasks = _shared("tasks")
    default_headers = _shared("default_headers")
    ping_interval = _shared("ping_interval")
    ping_timeout = _shared("ping_timeout")

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        # The parent's __init__, with the per-server values shared and lighter objects.
        # Not calling it is what keeps the instance dict small: the names are assigned
        # in one order, up to `scope`, so every socket shares one key table.
        if not config.loaded:
            config.load()  # pragma: no cover
        server = self._per_server = _server(
            config, server_state, app_state, _loop or asyncio.get_event_loop()
        )
        self.transport = None  # type: ignore[assignment]
        self.server = None
        self.client = None
        self.scheme = None  # type: ignore[assignment]
        self.queue = _Inbox()  # type: ignore[assignment]
        self.handshake_initiated = False
        self.handshake_complete = False
        self.close_sent = False
        self.disconnected = False
        self.close_timer = None
        self.initial_response = None
        self.conn = ServerProtocol(
            extensions=server.extensions, max_size=config.ws_max_size, logger=server.logger
        )
        self.read_paused = False
        self.writable = _Flag(True)  # type: ignore[assignment]
        self.ping_timer = None
        self.pong_timer = None
        self.pending_ping_payload = None
        self.ping_sent_at = 0.0
        self.last_ping_rtt = 0.0
        self.frames = []
        self.curr_msg_data_type = "bytes"
        # Set later by the parent; named here so that every socket has the same keys.
        self.request = None  # type: ignore[assignment]
        self.response = None  # type: ignore[assignment]
        self.scope = None  # type: ignore[assignment]

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # Only the parent's record of the request: nothing reads it again. websockets'
        # parser keeps the request too (a local of its generator, for the socket's life),
        # so its headers go as well: the scope has its own copy, the response is built.
        self.request = None  # type: ignore[assignment]
        with contextlib.suppress(AttributeError):  # a frozen Request (another websockets)
            event.headers = _NO_HEADERS
        if self.handshake_complete:  # refused by websockets, answered already
            self.response = None  # type: ignore[assignment]

    async def send(self, message: Any) -> None:
        try:
            await super().send(message)
        finally:
            # The response is only read to answer the handshake (accept): once it is
            # answered (accept, close, denial response) or cannot be, it is garbage.
            if self.response is not None and (
                self.handshake_complete or self.initial_response is not None
            ):
                self.response = None  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.response = None  # type: ignore[assignment]


def _check_parent() -> None:
    """Fail the import if Uvicorn's class is not the one this subclass was written for."""
    parent = WebSocketsSansIOProtocol
    where = f"uvicorn {uvicorn.__version__} {parent.__module__}.{parent.__qualname__}"
    tested = ".".join(uvicorn.__version__.split(".")[:2]) in TESTED_UVICORN
    for name in ("__init__", "handle_connect", "send", "connection_lost", "receive"):
        if not callable(getattr(parent, name, None)):
            raise ImportError(f"rtdelivery.contrib.uvicorn: expected {where}.{name}, got none")
    try:
        init = inspect.getsource(parent.__init__)
        methods = {
            name: inspect.getsource(func)
            for name, func in vars(parent).items()
            if inspect.isfunction(func)
        }
    except (OSError, TypeError):  # no source: trust only the tested versions
        if not tested:
            raise ImportError(
                f"rtdelivery.contrib.uvicorn: tested with uvicorn {TESTED_UVICORN}, got "
                f"{uvicorn.__version__} without source to check it against"
            ) from None
        return
    problems = []
    got = set(re.findall(r"self\.(\w+)\s*(?::[^=\n]*)?=(?!=)", init))
    if got != _PARENT_INIT:
        problems.append(
            f"__init__ sets {sorted(_PARENT_INIT)}, got {sorted(got)} "
            f"(new: {sorted(got - _PARENT_INIT)}, gone: {sorted(_PARENT_INIT - got)})"
        )
    source = "\n".join(methods.values())
    for attr, allowed in (("queue", _QUEUE_USES), ("writable", _FLAG_USES)):
        used = set(re.findall(rf"self\.{attr}\.(\w+)", source))
        if not used <= allowed:
            problems.append(f"self.{attr} used with {sorted(allowed)}, got {sorted(used)}")
    readers = {n for n, s in methods.items() if re.search(r"self\.(request|response)\b", s)}
    if readers != _HANDSHAKE_USERS:
        problems.append(
            f"request/response read in {sorted(_HANDSHAKE_USERS)}, got {sorted(readers)}"
        )
    if problems:
        raise ImportError(
            f"rtdelivery.contrib.uvicorn: {where} is not the class this protocol was "
            f"written for (tested: uvicorn {', '.join(TESTED_UVICORN)}): " + "; ".join(problems)
        )
    if not tested:
        warnings.warn(
            f"rtdelivery.contrib.uvicorn: tested with uvicorn {', '.join(TESTED_UVICORN)}, "
            f"got {uvicorn.__version__} (its protocol class still matches)",
            RuntimeWarning,
            stacklevel=2,
        )


_check_parent()
