"""Per-process CPU time, RSS and thread count from /proc (Linux)."""

from __future__ import annotations

import os
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Sample:
    cpu: float  # seconds of user + system time
    rss: int  # bytes
    threads: int


def sample(pid: int) -> Sample:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    threads = int(fields[17])
    with open(f"/proc/{pid}/statm") as f:
        rss_pages = int(f.read().split()[1])
    return Sample((utime + stime) / _TICKS, rss_pages * _PAGE, threads)


def children(pid: int) -> list[int]:
    """Direct children (uvicorn --workers spawns its workers as children)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def total(pids: list[int]) -> Sample:
    samples = [sample(p) for p in pids]
    return Sample(
        sum(s.cpu for s in samples), sum(s.rss for s in samples), sum(s.threads for s in samples)
    )
