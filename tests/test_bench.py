"""A small smoke run of the benchmark: it starts real processes and counts correctly.

Timings are never asserted (they are the benchmark's output, not its correctness).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from bench.runner import Case, _server_cmd, markdown, ratios, run_case

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(autouse=True)
def _redis(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)


def _check_counts(result: dict[str, Any], clients: int, events: int) -> None:
    assert "error" not in result, result.get("error")
    assert result["ready"] == clients
    assert result["expected"] == clients * events
    assert result["delivered"] == clients * events
    assert result["loss_pct"] == 0
    assert result["duplicates"] == 0
    assert result["out_of_order"] == 0
    assert result["errors"] == 0
    assert result["threads_connected"] >= 1
    assert result["cpu_us_per_delivery"] is not None


@pytest.mark.parametrize(
    ("target", "transport"),
    [("rtdelivery", "ws"), ("rtdelivery", "sse"), ("rtdelivery", "longpoll"), ("floor", "ws")],
)
def test_fan_out_counts_every_delivery(target: str, transport: str) -> None:
    result = run_case(Case("smoke", target, transport, clients=6, events=5, timeout=60))
    _check_counts(result, 6, 5)
    if transport == "longpoll":
        assert result["requests"] >= 6


def test_naive_baseline_runs() -> None:
    # The naive consumer may drop over capacity in big bursts; not with 5 events.
    result = run_case(Case("smoke", "naive", "ws", clients=4, events=5, timeout=60))
    _check_counts(result, 4, 5)


def test_request_cost_case_counts_requests() -> None:
    result = run_case(
        Case("poll-cost", "rtdelivery", "get", clients=3, events=0, path="/bare", requests=7)
    )
    assert "error" not in result, result.get("error")
    assert result["requests"] == 21
    assert result["cpu_us_per_delivery"] is not None


def test_report_has_a_row_per_case_and_the_ratios() -> None:
    results = [
        {"scenario": "burst", "target": t, "transport": "ws", "cpu_us_per_delivery": c}
        for t, c in (("rtdelivery", 15.0), ("floor", 10.0), ("naive", 300.0))
    ]
    table = markdown(results)
    assert table.count("\n") == 4  # header, rule, three rows
    lines = ratios(results)
    assert "WebSocket CPU/delivery vs raw floor: 1.50x (target <= 1.5x)" in lines
    assert "rtdelivery WebSocket is 20.0x cheaper per delivery than naive Channels" in lines[1]


def test_cli_quick_run_writes_json(tmp_path: Path, redis_url: str) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "poll-cost",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "| poll-cost | rtdelivery | get |" in proc.stdout
    assert "unchanged poll vs bare async Django view" in proc.stdout
    data = json.loads(out.read_text())
    assert {r["note"] for r in data["results"]} == {
        "bare async Django view returning {}",
        "unchanged short poll",
    }
    assert data["versions"]["django"]


def test_floor_server_uses_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    # The floor subscribes where the publisher publishes: REDIS_URL, not a fixed default.
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6399/3")
    cmd = _server_cmd(Case("smoke", "floor", "sse", clients=1, events=1), 8000)
    assert cmd[cmd.index("--redis") + 1] == "redis://127.0.0.1:6399/3"


def test_the_bench_is_not_a_management_command() -> None:
    # `manage.py help` of a project using rtdelivery lists no benchmark command.
    from django.core.management import get_commands

    assert not [name for name in get_commands() if "bench" in name]


def test_the_bench_is_not_in_the_wheel(tmp_path: Path) -> None:
    # Built from a copy, so the build leaves nothing in the working tree.
    src = tmp_path / "src"
    shutil.copytree(
        Path(__file__).resolve().parents[1],
        src,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv*",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            "test-artifacts",
            ".*_cache",
        ),
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "--wheel-dir",
            str(tmp_path),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("rtdelivery-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        tops = {name.split("/")[0] for name in zf.namelist()}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"rtdelivery"}


@pytest.mark.parametrize(("target", "server"), [("eventstream", "daphne"), ("bridge", "uvicorn")])
def test_eventstream_targets_count_every_delivery(target: str, server: str) -> None:
    # django-eventstream's own view (its Redis storage and pub/sub) and the bridge, each
    # fed by django_eventstream.send_event() from the publisher process.
    result = run_case(Case("smoke", target, "sse", clients=4, events=5, server=server, timeout=60))
    _check_counts(result, 4, 5)
    assert result["server"] == server
