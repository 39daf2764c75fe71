"""The bench's publish scenario runs and counts (timings are its output, never asserted)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from bench import publishing
from bench.runner import _cleanup, _env

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(autouse=True)
def _redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)


def run(case: publishing.PublishCase) -> dict[str, Any]:
    prefix = f"rtdtest:{uuid.uuid4().hex[:8]}:"
    try:
        return publishing.run_case(case, _env(prefix))
    finally:
        _cleanup(prefix)


@pytest.mark.parametrize("concurrency", [1, 8])
def test_publish_case_counts_round_trips_and_deliveries(concurrency: int) -> None:
    raw = run(publishing.PublishCase("raw", 5, 1, concurrency, 16, timeout=120))
    rt = run(publishing.PublishCase("rtdelivery", 5, 1, concurrency, 16, timeout=120))
    for result in (raw, rt):
        assert result["delivered"] == result["expected"] == publishing.WARMUP + 16
        assert result["cpu_us_per_publish"] > 0
    assert raw["round_trips_per_publish"] == 1.0
    if concurrency == 1:
        assert rt["round_trips_per_publish"] == 1.0  # the append queues the event too
    else:
        assert rt["round_trips_per_publish"] < 1.0  # batches of 8 share requests
    rows = publishing.with_ratios([raw, rt])
    assert rows[0]["cpu_vs_raw"] == 1.0
    table = publishing.markdown(rows)
    assert table.count("\n") == 3
    assert "target <= 2x" in publishing.ratios(rows)[0]
