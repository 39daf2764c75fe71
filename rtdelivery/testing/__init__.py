"""Helpers to test live features built on rtdelivery, from pytest or Django's test runner.

One module per job; every public name is importable from ``rtdelivery.testing``:

- :mod:`.recording` (async, in-process through the hub): :func:`subscribe` gives an
  :class:`EventRecorder` that records what a real subscriber of a topic receives.
- :mod:`.capture` (sync): :func:`capture_events` gives an :class:`EventCapture`, the same
  for sync tests (a Django ``TestCase``, a sync pytest test).
- :mod:`.websocket`: :class:`WebSocketClient` speaks rtdelivery's WebSocket protocol,
  in-process (:func:`ws_client`) or over a real socket (:func:`live_ws_client`);
  :class:`HandshakeRefused`.
- :mod:`.http`: :func:`endpoint` builds an endpoint's URL from the URLconf;
  :class:`EndpointClient` / :class:`AsyncEndpointClient` call ``poll``, ``longpoll``,
  ``history``, ``presence`` and ``publish`` through Django's test clients, ``httpx`` or
  an ASGI application.
- :mod:`.sse`: :func:`sse_events` opens an SSE stream (live server or in-process) and its
  :class:`SSEReader` hands out parsed :class:`SSEFrame`\\ s and events.
- :mod:`.server`: :func:`live_server` serves the project in the test's event loop.
- :mod:`.isolation`: :func:`reset` / :func:`areset`, :func:`isolated` and
  :class:`RTDeliveryTestMixin` give every test fresh rtdelivery state.
- :mod:`.waiting`: :func:`wait_until` and the default timeouts.

Every wait is bounded (``timeout`` seconds, :data:`DEFAULT_TIMEOUT` by default) and fails
with an :class:`AssertionError` that says what was expected and what arrived instead.
"""

from __future__ import annotations

from .capture import EventCapture, capture_events
from .http import AsyncEndpointClient, EndpointClient, endpoint
from .isolation import RTDeliveryTestMixin, areset, isolated, reset
from .recording import EventRecorder, subscribe
from .server import LiveServer, live_server
from .sse import SSEFrame, SSEReader, sse_events
from .waiting import DEFAULT_TIMEOUT, NO_EVENT_TIMEOUT, wait_until
from .websocket import HandshakeRefused, WebSocketClient, live_ws_client, ws_client

__all__ = [
    "DEFAULT_TIMEOUT",
    "NO_EVENT_TIMEOUT",
    "AsyncEndpointClient",
    "EndpointClient",
    "EventCapture",
    "EventRecorder",
    "HandshakeRefused",
    "LiveServer",
    "RTDeliveryTestMixin",
    "SSEFrame",
    "SSEReader",
    "WebSocketClient",
    "areset",
    "capture_events",
    "endpoint",
    "isolated",
    "live_server",
    "live_ws_client",
    "reset",
    "sse_events",
    "subscribe",
    "wait_until",
    "ws_client",
]
