"""Per-topic event history: one interface, an in-memory and a Redis backend."""

from __future__ import annotations

from ..conf import PerSettings, Settings
from .base import History, ReadResult

__all__ = ["History", "ReadResult", "get_history", "reset_history"]


def _build(conf: Settings) -> History:
    if conf.history_backend == "redis":
        from .redis import RedisHistory

        return RedisHistory(conf)
    from .memory import MemoryHistory

    return MemoryHistory(conf)


_history = PerSettings(_build)


def get_history() -> History:
    """The configured history backend (one instance per settings object)."""
    return _history.get()


def reset_history() -> None:
    """Forget the backend instance (the in-memory one loses its events)."""
    _history.reset()
