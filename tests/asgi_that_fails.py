"""An ASGI module whose import fails, for the system check tests (W008)."""

raise RuntimeError("asgi.py failed on import")
