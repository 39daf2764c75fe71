"""The fault suite: real processes killed, restarted and stalled (``pytest -m fault``).

Every test here is marked ``fault`` (so ``pytest -m fault`` runs the suite on its own) and
reports what its clients saw with the ``fault_report`` fixture: one row per case, transport
and server, counting events delivered, gaps announced (``recovered: false``, ``rt.reset``,
``too_slow``, …), events missed silently and duplicates. The rows are printed as one table at
the end of the run and written to ``test-artifacts/fault-table.md``.

Servers and Redis come from the e2e fixtures (tests/e2e/conftest.py) and private
``redis-server`` processes (tests/history/conftest.py ``RedisServer``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import *  # noqa: F403  (servers, redis fixtures)

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "test-artifacts" / "fault-table.md"
COLUMNS = ("case", "transport", "server", "delivered", "announced", "silent", "duplicates")


@dataclass
class FaultRow:
    """What one client saw through one fault."""

    case: str
    transport: str
    server: str
    delivered: int
    announced: int
    silent: int
    duplicates: int


_rows: list[FaultRow] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.fault)


@pytest.fixture
def fault_report() -> Any:
    """``fault_report(case, transport, server, delivered=, announced=, silent=, duplicates=)``
    adds a row to the fault table (and returns it)."""

    def report(case: str, transport: str, server: str, **counts: int) -> FaultRow:
        row = FaultRow(case, transport, server, **counts)
        _rows.append(row)
        return row

    return report


def render_table(rows: list[FaultRow]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        values = asdict(row)
        lines.append("| " + " | ".join(str(values[c]) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _rows:
        return
    table = render_table(_rows)
    TABLE.parent.mkdir(exist_ok=True)
    TABLE.write_text(table)
    terminalreporter.write_sep("=", "fault suite")
    terminalreporter.write(table)
