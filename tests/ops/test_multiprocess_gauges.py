"""docs/operations.md's multiprocess advice, checked: a worker that exited keeps its gauges
in every scrape until it is marked dead, and the documented gunicorn ``child_exit`` hook
(run from the doc itself) drops them while its counters stay."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

ROOT = Path(__file__).resolve().parents[2]
WORKER = """
import django
django.setup()
from rtdelivery import metrics
metrics.CONNECTIONS["ws"].inc(2)
metrics.redis_down.set(1)
metrics.events_published.inc(5)
print(__import__("os").getpid())
"""


def _hook_from_the_doc() -> Any:
    text = (ROOT / "docs" / "operations.md").read_text()
    match = re.search(
        r"<!-- doc-test: write gunicorn_conf.py -->\n```python\n(.*?)```", text, re.DOTALL
    )
    assert match, "docs/operations.md lost its gunicorn_conf.py example"
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), "gunicorn_conf.py", "exec"), namespace)
    return namespace["child_exit"]


def _scrape(path: Path) -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(path))
    return registry


def test_an_exited_worker_keeps_its_gauges_until_marked_dead(
    tmp_path: Path, monkeypatch: Any
) -> None:
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
    }
    done = subprocess.run(
        [sys.executable, "-c", WORKER],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    )
    pid = int(done.stdout.strip().splitlines()[-1])

    # Exited, not marked dead: its gauges are still there ("live" means "not marked").
    registry = _scrape(tmp_path)
    assert registry.get_sample_value("rtdelivery_connections", {"transport": "ws"}) == 2
    assert registry.get_sample_value("rtdelivery_redis_down") == 1

    class Worker:
        pass

    worker = Worker()
    worker.pid = pid  # type: ignore[attr-defined]
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    _hook_from_the_doc()(None, worker)

    registry = _scrape(tmp_path)
    assert not registry.get_sample_value("rtdelivery_connections", {"transport": "ws"})
    assert not registry.get_sample_value("rtdelivery_redis_down")
    assert registry.get_sample_value("rtdelivery_events_published_total") == 5
