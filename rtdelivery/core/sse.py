"""Server-Sent Events framing, safe against CR/LF/NUL injection."""

from __future__ import annotations

import re

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FORBIDDEN = re.compile(r"[\r\n\x00]")


def _field(name: str, value: str) -> str:
    if _FORBIDDEN.search(value):
        raise ValueError(f"SSE {name} must not contain CR, LF or NUL, got {value!r}.")
    return f"{name}: {value}\n"


def format_event(data: str, *, event: str | None = None, id: str | None = None) -> str:  # noqa: A002
    """One SSE message. Multi-line ``data`` becomes several ``data:`` lines."""
    parts = []
    if id is not None:
        parts.append(_field("id", id))
    if event is not None:
        parts.append(_field("event", event))
    for line in _LINE_BREAK.split(data.replace("\x00", "\ufffd")):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts)


def format_comment(text: str = "") -> str:
    """A comment line (heartbeats); line breaks in ``text`` start new comment lines."""
    return "".join(f": {line}\n" for line in _LINE_BREAK.split(text)) + "\n"


def format_retry(milliseconds: int) -> str:
    """The ``retry:`` hint for the browser's reconnection delay."""
    if milliseconds < 0:
        raise ValueError(f"retry must be >= 0 milliseconds, got {milliseconds}.")
    return f"retry: {int(milliseconds)}\n\n"
