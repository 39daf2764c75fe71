"""Run a transport handler and answer with what it sends, two ways.

A handler is ``async (Request, send) -> None`` and speaks ASGI's ``http.response.*``
messages. :func:`serve_asgi` runs it straight on an ASGI connection: the no-thread fast
path for held requests (long polls, SSE streams), which :mod:`rtdelivery.asgi` finds by
resolving the path against the project's URLconf. :func:`serve_django` runs the same
handler inside a Django view and turns its messages into an ``HttpResponse`` (or a
``StreamingHttpResponse``), so the answers are the same byte for byte however a view is
reached: the fast path, Django's ASGI handler, WSGI or the test ``Client``.

Under WSGI there is no event loop that outlives a request, so handlers run on the
process's background loop (the one sync :func:`rtdelivery.publish` uses), where the hub
and the Redis connections stay open between requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.request import split_domain_port, validate_host
from django.http.response import HttpResponseBase

from .. import metrics
from ..core.errors import (
    BadRequest,
    ClientGone,
    InternalError,
    MethodNotAllowed,
    RTDeliveryError,
    Unavailable,
)
from ..cors import is_preflight, response_headers
from ..ops import reporter as ops_reporter
from .flow import server_send
from .http import Receive, Request, Scope, Send, respond, respond_error
from .origins import allowed_hosts

logger = logging.getLogger("rtdelivery.transports")

Handler = Callable[[Request, Send], Awaitable[None]]
Message = dict[str, Any]

#: A stream handler's attribute: its fast-path form, ``(request, method, send) ->
#: awaitable``, which runs the whole stream itself (its opening under run_handler's
#: rules: :func:`open_stream`). The server's task then awaits that one coroutine.
STREAM = "rtdelivery_stream"


async def run_handler(
    handler: Handler, method: str, request: Request, send: Send, *, label: str | None = None
) -> None:
    """Call ``handler``; answer an ``RTDeliveryError`` (or a crash) with a JSON error if
    nothing was sent yet. Errors after the response started end it quietly. ``label``:
    the metrics label (else the handler's, :func:`rtdelivery.metrics.endpoint_of`)."""
    started = False
    # The process reports to the live page from its first request (a worker that only
    # answers polls has no hub to start it).
    ops_reporter.start()
    try:
        cors = request_cors_headers(request)
    except Exception:  # e.g. a project's corsheaders signal receiver: the answer stays JSON
        logger.exception("rtdelivery: deciding the CORS headers failed")
        cors = []

    async def tracked_send(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
            if cors:
                message = {**message, "headers": [*message.get("headers", ()), *cors]}
        await send(message)

    if cors is not None and is_preflight(request.method, request.headers):
        # A CORS preflight: answered before authentication (browsers send none with it).
        await respond(tracked_send, 200, b"")
        return
    try:
        if request.method != method:
            raise MethodNotAllowed(f"Expected {method}, got {request.method}.")
        await handler(request, tracked_send)
    except ClientGone:
        return
    except RTDeliveryError as exc:
        metrics.refused(label or metrics.endpoint_of(handler), exc.status, exc.code)
        if started:
            return
        headers: list[tuple[bytes, bytes]] = []
        if isinstance(exc, MethodNotAllowed):
            headers.append((b"allow", method.encode()))
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            headers.append((b"retry-after", str(int(retry_after)).encode()))
        challenge = getattr(exc, "www_authenticate", None)
        if challenge is not None:  # a 401 (refused credentials)
            headers.append((b"www-authenticate", challenge.encode()))
        await respond_error(tracked_send, exc, headers)
    except Exception:
        logger.exception("rtdelivery endpoint %s failed", request.scope.get("path"))
        if not started:
            await respond_error(
                tracked_send, InternalError("Internal error; see the server log."), ()
            )


def request_cors_headers(request: Request) -> list[tuple[bytes, bytes]] | None:
    """rtdelivery.cors's headers for an answer to ``request``."""
    django_request = request.django
    if django_request is not None:
        path = django_request.path_info
    else:  # as Django's path_info: without the ASGI root_path (CORS_URLS_REGEX)
        path = request.scope.get("path", "/")
        root = request.scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
    return response_headers(
        request.header("origin"),
        request.method,
        path,
        request=(lambda: django_request) if django_request is not None else request.as_django,
    )


def _scope_cors_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """CORS headers for a request too malformed to become a :class:`Request`."""
    origin = dict(scope.get("headers", ())).get(b"origin")
    return (
        response_headers(
            None if origin is None else origin.decode("latin-1"),
            scope.get("method", "GET"),
            scope.get("path", "/"),
        )
        or []
    )


def serve_asgi(
    handler: Handler,
    method: str,
    scope: Scope,
    receive: Receive,
    send: Send,
    url_route: dict[str, Any] | None = None,
) -> Awaitable[None]:
    """The fast path: the handler on the ASGI connection itself (``send`` is the server's
    own). ``url_route``: what the URL gave, as Channels puts it in the scope.

    Not a coroutine: what it returns is what the server's task awaits, so a stream is the
    stream handler's coroutine alone (:data:`STREAM`), with no frame of this one above it.
    """
    if url_route is not None:
        scope = {**scope, "url_route": url_route}  # the Request's: gone once it is
    try:
        request = Request(scope, receive)
        _check_host(request)
    except RTDeliveryError as exc:
        return respond_error(send, exc, _scope_cors_headers(scope))
    stream = getattr(handler, STREAM, None)
    if stream is not None:
        return stream(request, method, send)  # type: ignore[no-any-return]
    return _serve_held(handler, method, request, send)


async def _serve_held(handler: Handler, method: str, request: Request, send: Send) -> None:
    # The server's own send, before run_handler wraps it: its write buffer bounds what a
    # held request writes under Daphne (rtdelivery.transports.daphne).
    token = server_send.set(send)
    try:
        await run_handler(handler, method, request, send)
    finally:
        server_send.reset(token)


async def open_stream(
    opener: Callable[..., Awaitable[Any]], method: str, request: Request, send: Send
) -> Any:
    """A stream's opening on the fast path, under :func:`run_handler`'s rules (CORS, a
    preflight, the method, errors answered as JSON): ``opener(request, start, send)``
    subscribes, starts the response through ``start`` (which adds the CORS headers) and
    returns the open stream, which writes with the server's own ``send`` from then on.
    None: something else was answered (an error, a preflight)."""
    opened: list[Any] = []

    async def opening(request: Request, start: Send) -> None:
        opened.append(await opener(request, start, send))

    await run_handler(opening, method, request, send, label=metrics.endpoint_of(opener))
    return opened[0] if opened else None


def _check_host(request: Request) -> None:
    """``ALLOWED_HOSTS``, as Django's ``HttpRequest.get_host()`` checks it for the views
    (the fast path skips Django's handler; without it a DNS-rebinding page could read)."""
    host = ""
    if settings.USE_X_FORWARDED_HOST:
        host = request.header("x-forwarded-host") or ""
    host = host or request.header("host") or ""
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, allowed_hosts()):
        shown = host if len(host) <= 80 else host[:80] + "…"
        raise BadRequest(f"Expected a Host in ALLOWED_HOSTS, got {shown!r}.", code="bad_host")


# -- Django views ------------------------------------------------------------------


def background_loop() -> asyncio.AbstractEventLoop:
    """The loop WSGI requests run their handlers on (see the module docstring)."""
    from ..hub import running_hub_loops
    from ..publishing import publisher_loop

    loops = running_hub_loops()
    return loops[0] if loops else publisher_loop()


async def serve_django(
    handler: Handler, method: str, request: HttpRequest, *, streaming: bool = False
) -> HttpResponseBase:
    """Run ``handler`` for a Django view. A ``streaming`` handler (SSE) may answer with a
    ``StreamingHttpResponse``; the others are collected into one ``HttpResponse``."""
    wsgi = isinstance(request, WSGIRequest)
    collected = _Collected()
    try:
        rt_request = Request.from_django(request)
    except RTDeliveryError as exc:
        scope: Scope = {"method": request.method, "path": request.path, "headers": []}
        if "HTTP_ORIGIN" in request.META:
            scope["headers"] = [(b"origin", request.META["HTTP_ORIGIN"].encode("latin-1"))]
        await respond_error(collected, exc, _scope_cors_headers(scope))
        return _marked(collected.response())
    if wsgi:
        # Identity is read here, on the request's own thread (the ORM's connections are
        # per thread), before the handler moves to the background loop.
        await rt_request.load_identity()
    if not streaming:
        answer = run_handler(handler, method, rt_request, collected)
        if wsgi:
            future = asyncio.run_coroutine_threadsafe(answer, background_loop())
            await asyncio.wrap_future(future)
        else:
            await answer
        return _marked(collected.response())
    exchange = _Exchange(background_loop() if wsgi else asyncio.get_running_loop())
    await exchange.start(run_handler(handler, method, rt_request, exchange.send))
    try:
        start = await exchange.pull()
        first = await exchange.pull()
    except BaseException:
        exchange.cancel()
        raise
    if start is None or start["type"] != "http.response.start":  # pragma: no cover
        exchange.cancel()
        raise RuntimeError(f"Expected http.response.start from {handler!r}, got {start!r}.")
    body = b"" if first is None else first.get("body", b"")
    if first is None or not first.get("more_body", False):
        exchange.cancel()
        response: HttpResponseBase = HttpResponse(body, status=start["status"])
    elif exchange.same_loop:
        response = StreamingHttpResponse(_AsyncChunks(exchange, body), status=start["status"])
    else:
        response = StreamingHttpResponse(_sync_chunks(exchange, body), status=start["status"])
    for name, value in start.get("headers", ()):
        response.headers[name.decode("latin-1")] = value.decode("latin-1")
    return _marked(response)


def _marked(response: HttpResponseBase) -> HttpResponseBase:
    if response.status_code == Unavailable.status:
        # Only an outage answers 503, and rtdelivery.outage logs it once per outage.
        # Django would log each one as an ERROR (and mail ADMINS); this is the mark
        # Django's own log_response() sets on a response it has logged.
        response._has_been_logged = True  # type: ignore[attr-defined]
    return response


class _Collected:
    """A ``send`` that keeps one whole (non-streaming) answer."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def response(self) -> HttpResponse:
        start = self.messages[0]
        body = b"".join(m.get("body", b"") for m in self.messages[1:])
        response = HttpResponse(body, status=start["status"])
        for name, value in start.get("headers", ()):
            response.headers[name.decode("latin-1")] = value.decode("latin-1")
        return response


_END: Message = {"type": "rtdelivery.end"}


class _Exchange:
    """The handler's messages, handed over one at a time: the handler waits until the
    response has taken each one, so a client that stops reading holds the stream back
    (and the subscriber's bounded inbox ends it as too slow) instead of a queue growing."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        try:
            self.same_loop = asyncio.get_running_loop() is loop
        except RuntimeError:  # pragma: no cover - always called from a view
            self.same_loop = False
        self.queue: asyncio.Queue[Message] | None = None
        self.task: asyncio.Task[None] | None = None

    async def _in_loop(self, coro: Awaitable[Any]) -> Any:
        if self.same_loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))  # type: ignore[arg-type]

    async def start(self, coro: Awaitable[None]) -> None:
        async def begin() -> None:
            self.queue = asyncio.Queue()
            self.task = asyncio.ensure_future(self._run(coro))

        await self._in_loop(begin())

    async def _run(self, coro: Awaitable[None]) -> None:
        assert self.queue is not None
        try:
            await coro
        finally:
            self.queue.put_nowait(_END)  # never waits: the reader may be gone

    async def send(self, message: Message) -> None:
        """Queue one message and wait until the reader has taken it."""
        assert self.queue is not None
        self.queue.put_nowait(message)
        await self.queue.join()

    async def _get(self) -> Message | None:
        assert self.queue is not None
        message = await self.queue.get()
        self.queue.task_done()
        return None if message is _END else message

    async def pull(self) -> Message | None:
        """The next message, or None once the handler has finished."""
        return await self._in_loop(self._get())  # type: ignore[no-any-return]

    def pull_sync(self) -> Message | None:
        return asyncio.run_coroutine_threadsafe(self._get(), self.loop).result()

    def cancel(self) -> None:
        """Stop the handler (any thread): the client left or the response was closed."""
        task = self.task
        if task is not None and not task.done():
            self.loop.call_soon_threadsafe(task.cancel)


class _AsyncChunks:
    """The body of a streaming answer on the view's own loop; ``close()`` (called by
    Django when the response ends, from any thread) stops the handler."""

    def __init__(self, exchange: _Exchange, first: bytes) -> None:
        self.exchange = exchange
        self.first = first

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            yield self.first
            while (message := await self.exchange.pull()) is not None:
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return
        finally:
            self.exchange.cancel()

    def close(self) -> None:
        self.exchange.cancel()


def _sync_chunks(exchange: _Exchange, first: bytes) -> Iterator[bytes]:
    """The body of a streaming answer for a WSGI server (one worker per stream)."""
    try:
        yield first
        while (message := exchange.pull_sync()) is not None:
            yield message.get("body", b"")
            if not message.get("more_body", False):
                return
    finally:
        exchange.cancel()
