"""What is wrong with ``settings.RTDELIVERY``: :class:`Problem` and the system check IDs.

Shared by :mod:`rtdelivery.conf_validation` and :mod:`rtdelivery.redis_config` (and
re-exported by :mod:`rtdelivery.conf`); no settings are read here.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

E_SHAPE = "rtdelivery.E001"  # RTDELIVERY not a dict, unknown keys
E_VALUE = "rtdelivery.E002"  # a bad value
E_TOPICS = "rtdelivery.E003"  # a bad TOPICS entry or policy rule
E_REDIS = "rtdelivery.E004"  # Redis history without a usable REDIS_URL / REDIS


@dataclass(frozen=True)
class Problem:
    """One thing wrong with ``settings.RTDELIVERY`` and the system check ID reporting it."""

    check_id: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message} {self.hint}"


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    # "value >= 0" is False for NaN, so NaN is rejected by the callers' range tests.
    return isinstance(value, int | float) and not isinstance(value, bool)


def did_you_mean(word: Any, choices: Any) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1)
    if not close and word.upper() in choices:
        close = [word.upper()]
    return f" (did you mean {close[0]!r}?)" if close else ""
