"""URLconf of the e2e servers: the demo site's, plus one plain Django streaming view.

``/plain/stream`` is the contrast for the thread-count test: an async Django view returning a
``StreamingHttpResponse`` over an async generator, served through Django's ASGIHandler like
any project view (not through rtdelivery's endpoints).
"""

import asyncio
from collections.abc import AsyncIterator

from django.http import HttpRequest, StreamingHttpResponse
from django.urls import path

from demo_site.urls import urlpatterns as demo_urlpatterns

#: How long one plain stream stays open at most (seconds); the test closes it sooner.
PLAIN_STREAM_SECONDS = 60.0


async def plain_stream(request: HttpRequest) -> StreamingHttpResponse:
    async def body() -> AsyncIterator[bytes]:
        yield b"open\n"
        await asyncio.sleep(PLAIN_STREAM_SECONDS)
        yield b"done\n"

    return StreamingHttpResponse(body(), content_type="text/plain")


urlpatterns = [*demo_urlpatterns, path("plain/stream", plain_stream)]
