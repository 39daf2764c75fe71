"""rtdelivery's HTTP endpoints in tests: :func:`endpoint` builds their URLs from the
URLconf; :class:`EndpointClient` (sync) and :class:`AsyncEndpointClient` call ``poll``,
``longpoll``, ``history``, ``presence`` and ``publish`` and return the JSON answer.

They run through Django's test ``Client``/``AsyncClient`` (the project's middleware and
views, no server), an ``httpx`` client or base URL (a live server), or, async only, an
ASGI application in-process. The SSE stream has its own reader: :mod:`.sse`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

__all__ = ["AsyncEndpointClient", "EndpointClient", "endpoint"]


def endpoint(name: str, *, base: str | None = None, **params: Any) -> str:
    """Path of rtdelivery's endpoint ``name`` (``poll``, ``longpoll``, ``sse``, ``history``,
    ``presence``, ``publish``, ``ws``) with ``params`` as its query string::

        endpoint("poll", topic=["a", "b"], cursor=rec.cursor)  # "/rt/poll?topic=a&topic=b&…"

    The path is ``reverse("rtdelivery:<name>")``, so it follows the prefix your URLconf
    mounts ``rtdelivery.urls`` at; ``base`` (e.g. ``"/rt/"``) puts it under that path
    instead. A list becomes a repeated parameter; None values are left out.
    """
    if base is not None:
        path = base.rstrip("/") + "/" + name
    else:
        from django.urls import NoReverseMatch, reverse

        try:
            path = reverse(f"rtdelivery:{name}")
        except NoReverseMatch:
            raise AssertionError(
                f"reverse('rtdelivery:{name}') found no URL: the URLconf does not include "
                'rtdelivery\'s views. Add path("rt/", include("rtdelivery.urls")) to it, '
                'or pass base= (e.g. base="/rt/").'
            ) from None
    pairs = [
        (key, item)
        for key, value in params.items()
        if value is not None
        for item in (value if isinstance(value, list | tuple) else [value])
    ]
    return f"{path}?{urlencode(pairs)}" if pairs else path


def _topic_list(topics: str | Iterable[str]) -> list[str]:
    return [topics] if isinstance(topics, str) else list(topics)


def _publish_body(topic: str, data: Any, type: str) -> bytes:  # noqa: A002
    return json.dumps({"topic": topic, "type": type, "data": data}).encode()


def _is_django_client(client: Any) -> bool:
    from django.test import AsyncClient, Client

    return isinstance(client, Client | AsyncClient)


def _httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:
        raise ImportError(
            "rtdelivery.testing needs the 'httpx' package (pip install httpx) to reach a "
            "live server or an ASGI application; rtdelivery does not depend on it at runtime."
        ) from exc
    return httpx


class _Endpoints:
    """What the sync and the async client share: URLs, headers, checking the answer."""

    def __init__(
        self,
        client: Any,
        *,
        base: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.client = client
        self.base = base
        self.headers = dict(headers or {})
        #: The last response (Django's or httpx's): ``status_code``, ``headers``, ``content``.
        self.last_response: Any = None

    def _url(self, name: str, **params: Any) -> str:
        return endpoint(name, base=self.base, **params)

    def _publish_headers(self, token: str | None) -> dict[str, str]:
        headers = {**self.headers, "content-type": "application/json"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return headers

    def _answer(self, method: str, url: str, response: Any, expect: int) -> dict[str, Any]:
        self.last_response = response
        content = response.content
        try:
            body = json.loads(content) if content else {}
        except ValueError:
            body = None
        if response.status_code != expect:
            error = body.get("error") if isinstance(body, dict) else None
            said = (
                f"{error.get('code')}: {error.get('message')}"
                if isinstance(error, dict)
                else repr(content[:300])
            )
            raise AssertionError(
                f"Expected {expect} from {method} {url}, got {response.status_code} ({said})."
            )
        if not isinstance(body, dict):
            raise AssertionError(f"Expected a JSON object from {method} {url}, got {content!r}.")
        return body


class EndpointClient(_Endpoints):
    """rtdelivery's HTTP endpoints from sync tests; every method returns the JSON answer.

    ``client``: a Django test ``Client`` (``self.client`` of a ``TestCase``; log it in to
    ask as a user), an ``httpx.Client``, or a live server's base URL. ``base``: where
    rtdelivery's views are mounted if not found with ``reverse()``. ``headers``: sent with
    every request. Each method fails with an ``AssertionError`` quoting the server's
    error unless the status is ``expect``; :attr:`last_response` keeps the response.
    """

    def _get(self, url: str, expect: int) -> dict[str, Any]:
        if isinstance(self.client, str):
            with _httpx().Client(base_url=self.client) as client:
                response = client.get(url, headers=self.headers)
        else:
            response = self.client.get(url, headers=self.headers)
        return self._answer("GET", url, response, expect)

    def _post(self, url: str, body: bytes, headers: dict[str, str], expect: int) -> dict[str, Any]:
        if isinstance(self.client, str):
            with _httpx().Client(base_url=self.client) as client:
                response = client.post(url, content=body, headers=headers)
        elif _is_django_client(self.client):
            response = self.client.post(
                url, body, content_type=headers.pop("content-type"), headers=headers
            )
        else:
            response = self.client.post(url, content=body, headers=headers)
        return self._answer("POST", url, response, expect)

    def poll(
        self, topics: str | Iterable[str], cursor: str | None = None, *, expect: int = 200
    ) -> dict[str, Any]:
        """``GET poll``: ``{"events", "cursor", "recovered", "lost"}``."""
        return self._get(self._url("poll", topic=_topic_list(topics), cursor=cursor), expect)

    def longpoll(
        self,
        topics: str | Iterable[str],
        cursor: str | None = None,
        *,
        timeout: float | None = None,
        expect: int = 200,
    ) -> dict[str, Any]:
        """``GET longpoll``, held up to ``timeout`` seconds by the server (it blocks)."""
        url = self._url("longpoll", topic=_topic_list(topics), cursor=cursor, timeout=timeout)
        return self._get(url, expect)

    def history(
        self,
        topic: str,
        cursor: str | None = None,
        *,
        limit: int | None = None,
        expect: int = 200,
    ) -> dict[str, Any]:
        """``GET history`` of one topic: the latest events, or those after ``cursor``."""
        return self._get(self._url("history", topic=topic, cursor=cursor, limit=limit), expect)

    def presence(self, topic: str, *, expect: int = 200) -> dict[str, Any]:
        """``GET presence``: ``{"topic", "users", "anonymous", "count"}``."""
        return self._get(self._url("presence", topic=topic), expect)

    def publish(
        self,
        topic: str,
        data: Any,
        type: str = "message",  # noqa: A002
        *,
        token: str | None = None,
        expect: int = 201,
    ) -> dict[str, Any]:
        """``POST publish`` as the client's user, or with a ``PUBLISH_TOKENS`` ``token``;
        returns ``{"topic", "seq", "id"}``."""
        body = _publish_body(topic, data, type)
        return self._post(self._url("publish"), body, self._publish_headers(token), expect)


class AsyncEndpointClient(_Endpoints):
    """:class:`EndpointClient` with ``async`` methods, for async tests.

    ``client``: a Django test ``AsyncClient``, an ``httpx.AsyncClient``, a live server's
    base URL, or an ASGI application (served in-process through ``httpx``)::

        rt = AsyncEndpointClient(self.async_client)
        answer = await rt.poll("feed", cursor)
    """

    async def _send(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> Any:
        client = self.client
        if _is_django_client(client):
            if method == "GET":
                return await client.get(url, headers=headers)
            content_type = headers.pop("content-type")
            return await client.post(url, body, content_type=content_type, headers=headers)
        if isinstance(client, str) or callable(client):  # a base URL or an ASGI application
            httpx = _httpx()
            options: dict[str, Any] = (
                {"base_url": client}
                if isinstance(client, str)
                else {"base_url": "http://testserver", "transport": httpx.ASGITransport(client)}
            )
            async with httpx.AsyncClient(**options) as owned:
                return await owned.request(method, url, content=body or None, headers=headers)
        return await client.request(method, url, content=body or None, headers=headers)

    async def _get(self, url: str, expect: int) -> dict[str, Any]:
        response = await self._send("GET", url, b"", dict(self.headers))
        return self._answer("GET", url, response, expect)

    async def poll(
        self, topics: str | Iterable[str], cursor: str | None = None, *, expect: int = 200
    ) -> dict[str, Any]:
        """``GET poll``: ``{"events", "cursor", "recovered", "lost"}``."""
        return await self._get(self._url("poll", topic=_topic_list(topics), cursor=cursor), expect)

    async def longpoll(
        self,
        topics: str | Iterable[str],
        cursor: str | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (sent as ?timeout=, the server's hold)
        expect: int = 200,
    ) -> dict[str, Any]:
        """``GET longpoll``, held up to ``timeout`` seconds by the server."""
        url = self._url("longpoll", topic=_topic_list(topics), cursor=cursor, timeout=timeout)
        return await self._get(url, expect)

    async def history(
        self,
        topic: str,
        cursor: str | None = None,
        *,
        limit: int | None = None,
        expect: int = 200,
    ) -> dict[str, Any]:
        """``GET history`` of one topic: the latest events, or those after ``cursor``."""
        url = self._url("history", topic=topic, cursor=cursor, limit=limit)
        return await self._get(url, expect)

    async def presence(self, topic: str, *, expect: int = 200) -> dict[str, Any]:
        """``GET presence``: ``{"topic", "users", "anonymous", "count"}``."""
        return await self._get(self._url("presence", topic=topic), expect)

    async def publish(
        self,
        topic: str,
        data: Any,
        type: str = "message",  # noqa: A002
        *,
        token: str | None = None,
        expect: int = 201,
    ) -> dict[str, Any]:
        """``POST publish`` as the client's user, or with a ``PUBLISH_TOKENS`` ``token``;
        returns ``{"topic", "seq", "id"}``."""
        url = self._url("publish")
        body = _publish_body(topic, data, type)
        response = await self._send("POST", url, body, self._publish_headers(token))
        return self._answer("POST", url, response, expect)
