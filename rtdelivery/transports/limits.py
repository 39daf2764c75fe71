"""Process-wide limits on held connections (long polls and SSE streams)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .. import metrics
from ..conf import get_settings
from .http import TooMany

_held = 0


def held() -> int:
    return _held


@contextmanager
def hold(transport: str) -> Iterator[None]:
    """Count one held request; refuse with 429 beyond ``MAX_HELD_REQUESTS``."""
    global _held
    limit = get_settings().max_held_requests
    if _held >= limit:
        raise TooMany(f"Too many held requests on this server (limit {limit}); retry later.")
    _held += 1
    metrics.incr(f"connections_opened.{transport}")
    try:
        yield
    finally:
        _held -= 1
