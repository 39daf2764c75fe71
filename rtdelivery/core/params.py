"""Strict parsing of numeric (and other short) request parameters (no I/O).

Python's ``int()``/``float()`` and ``str.isdigit()`` accept far more than a URL parameter
should: Unicode digits (``²``, ``٣``), underscores, surrounding spaces, exponents, ``inf``
and ``nan``, and thousands of digits. Parameters are ASCII decimal numbers of bounded
length here; anything else is a ``400`` that says what was expected.
"""

from __future__ import annotations

import re

from .errors import BadRequest

_INTEGER = re.compile(r"[0-9]{1,9}")
_SECONDS = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6})?")
_CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:40] + "…")


def parse_int(name: str, raw: str, low: int, high: int) -> int:
    """``raw`` as an integer from ``low`` to ``high`` (ASCII digits only)."""
    if _INTEGER.fullmatch(raw) is None or not low <= int(raw) <= high:
        raise BadRequest(
            f"Expected {name!r} as an integer from {low} to {high}, got {_shown(raw)}."
        )
    return int(raw)


def parse_seconds(name: str, raw: str) -> float:
    """``raw`` as a number of seconds >= 0 (ASCII digits, an optional decimal part)."""
    if _SECONDS.fullmatch(raw) is None:
        raise BadRequest(
            f"Expected {name!r} as a number of seconds like 25 or 2.5, got {_shown(raw)}."
        )
    return float(raw)


def parse_length(raw: str) -> int | None:
    """A ``Content-Length`` value, or None when it is not a plain ASCII number."""
    return int(raw) if re.fullmatch(r"[0-9]{1,18}", raw) else None


def parse_client_id(name: str, raw: str) -> str:
    """A polling client's own id (``client=``): 8 to 64 letters, digits, ``_`` and ``-``
    (a UUID fits, with or without its dashes)."""
    if _CLIENT_ID.fullmatch(raw) is None:
        raise BadRequest(
            f"Expected {name!r} as 8 to 64 letters, digits, '_' and '-' (a random id, such as "
            f"a UUID), got {_shown(raw)}."
        )
    return raw
