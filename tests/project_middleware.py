"""A project's own middleware, to see which requests go through Django's handler.

``RecordRequestsMiddleware`` appends each request's path to :data:`SEEN` and marks the
response with ``X-Project-Middleware: 1``. Sync and async capable, as Django recommends,
so it adds no thread hop under ASGI and works under WSGI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest
from django.http.response import HttpResponseBase

#: Paths of the requests the middleware saw, in order (tests clear it).
SEEN: list[str] = []
HEADER = "X-Project-Middleware"


class RecordRequestsMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        SEEN.append(request.path)
        return self._mark(self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        SEEN.append(request.path)
        return self._mark(await self.get_response(request))

    @staticmethod
    def _mark(response: HttpResponseBase) -> HttpResponseBase:
        response[HEADER] = "1"
        return response
