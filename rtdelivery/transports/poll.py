"""Short polling: "anything new since cursor C?", answered at once."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from .. import metrics
from ..conf import get_settings
from ..core.cursors import Cursor
from .common import authorize_all, client_seen, read_after
from .http import Request, Send, events_body


def etag_for(cursor_text: str) -> bytes:
    return (
        b'W/"' + hashlib.blake2b(cursor_text.encode(), digest_size=12).hexdigest().encode() + b'"'
    )


async def handle(request: Request, send: Send) -> None:
    conf = get_settings()
    topics = request.topics()
    cursor = request.cursor()
    client = request.client_id()
    await authorize_all(request, topics)
    seen = client_seen(request, topics, client)
    if seen is None:
        events, positions, lost = await read_after(topics, cursor, conf.poll_limit)
    else:  # presence and history at once: one round trip's time
        (events, positions, lost), _ = await asyncio.gather(
            read_after(topics, cursor, conf.poll_limit), seen
        )
    metrics.delivered["poll"].n += len(events)
    cursor_text = Cursor(positions).encode(conf.cursor_key)
    etag = etag_for(cursor_text)
    headers: list[Any] = [(b"etag", etag), (b"cache-control", b"private, no-cache")]
    if not events and not lost and request.headers.get(b"if-none-match") == etag:
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    body = events_body(events, cursor_text, not lost, lost)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


__all__ = ["etag_for", "handle"]
