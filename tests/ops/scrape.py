"""Reading Prometheus' text format from a real scrape (prometheus-client's own parser)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(base_url: str, token: str | None, path: str = "/metrics") -> Samples:
    """Every sample of one scrape: ``{(name, labels): value}`` (``pid`` labels kept)."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        response = await client.get(base_url + path, headers=headers)
    assert response.status_code == 200, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def wait_scrape(
    base_url: str,
    token: str,
    predicate: Callable[[Samples], bool],
    what: str,
    timeout: float = 20.0,  # noqa: ASYNC109
) -> Samples:
    """Scrape until ``predicate`` holds (counters of other processes arrive with their
    next report, OPS_INTERVAL); fail with the last scrape's rtdelivery lines."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(base_url, token)
        if predicate(samples):
            return samples
        if time.monotonic() > deadline:
            shown = sorted(
                f"{n}{dict(ls)} {v}" for (n, ls), v in samples.items() if n.startswith("rtdel")
            )
            raise AssertionError(f"timed out waiting for {what}:\n" + "\n".join(shown))
        await asyncio.sleep(0.1)  # polling a condition the servers reach on their own
