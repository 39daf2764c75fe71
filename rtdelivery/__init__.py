"""rtdelivery: real-time delivery for Django over polling, long polling, SSE and WebSockets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "Event",
    "adisconnect",
    "apublish",
    "aunsubscribe",
    "disconnect",
    "publish",
    "publish_on_commit",
    "unsubscribe",
]

if TYPE_CHECKING:
    from .access import adisconnect, aunsubscribe, disconnect, unsubscribe
    from .core.events import Event
    from .publishing import apublish, publish, publish_on_commit


def __getattr__(name: str) -> Any:
    # Lazy, so importing rtdelivery (e.g. from settings) reads no setting and loads
    # neither Channels nor a Redis client.
    if name in ("apublish", "publish", "publish_on_commit"):
        from . import publishing

        return getattr(publishing, name)
    if name in ("adisconnect", "aunsubscribe", "disconnect", "unsubscribe"):
        from . import access

        return getattr(access, name)
    if name == "Event":
        from .core.events import Event

        return Event
    raise AttributeError(f"module 'rtdelivery' has no attribute {name!r}")
