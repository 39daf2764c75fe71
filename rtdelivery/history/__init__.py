"""Per-topic event history: one interface, an in-memory and a Redis backend."""

from __future__ import annotations

import threading

from ..conf import get_settings
from .base import History, ReadResult

__all__ = ["History", "ReadResult", "get_history", "reset_history"]

_lock = threading.Lock()
_instances: dict[object, History] = {}


def get_history() -> History:
    """The configured history backend (one instance per settings object)."""
    conf = get_settings()
    history = _instances.get(conf)
    if history is None:
        with _lock:
            history = _instances.get(conf)
            if history is None:
                if conf.history_backend == "redis":
                    from .redis import RedisHistory

                    history = RedisHistory(conf)
                else:
                    from .memory import MemoryHistory

                    history = MemoryHistory(conf)
                _instances.clear()
                _instances[conf] = history
    return history


def reset_history() -> None:
    """Forget the backend instance (the in-memory one loses its events)."""
    with _lock:
        _instances.clear()
