"""Process-wide delivery counters (cheap integer increments on the hot path)."""

from __future__ import annotations

from collections import Counter

counters: Counter[str] = Counter()


def incr(name: str, amount: int = 1) -> None:
    counters[name] += amount


def snapshot() -> dict[str, int]:
    return dict(counters)
