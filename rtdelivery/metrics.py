"""rtdelivery's metrics: Prometheus when ``prometheus-client`` is installed, else in process.

Every count the code keeps lives here, once: with the ``prometheus`` extra the objects
below are ``prometheus_client`` metrics in its default registry (multiprocess mode works:
set ``PROMETHEUS_MULTIPROC_DIR`` before the server starts); without it they are small
stand-ins with the same methods that only count in memory (the live operations page
still reads them). :func:`read` gives this process's values either way.

Hot paths pay little: labelled children are bound once here (no label lookup per
event), the publish->fan-out latency is observed once per event per process (in the
hub, not per subscriber), and deliveries are added to a plain integer per transport
(:class:`Pending`) that :func:`flush` moves to the counter: by the writer itself
once the last flush is over a second old, and by every ops report and scrape of this
process (a process that only answers short polls flushes too).

Names follow Prometheus' conventions (docs/operations.md lists them): a
``rtdelivery_`` prefix, ``_total`` on counters, seconds for time.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

try:
    import prometheus_client
except ImportError:  # the optional extra: count in process only
    prometheus_client = None  # type: ignore[assignment]

#: Transports a connection, a delivery or a refusal is labelled with.
TRANSPORTS = ("ws", "sse", "longpoll", "poll")
#: Buckets (seconds) of the publish->fan-out latency.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: How many recent slow-consumer ends and gaps a process remembers (the ops page).
RECENT = 20

ENABLED = prometheus_client is not None

_multiproc_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if ENABLED and _multiproc_dir is not None and not os.path.isdir(_multiproc_dir):
    # prometheus-client would fail below with a bare FileNotFoundError on a .db file.
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"PROMETHEUS_MULTIPROC_DIR is {_multiproc_dir!r}, which is not a directory; expected "
        "an existing, writable, empty directory created before the server starts "
        "(docs/operations.md)."
    )


# -- in-process stand-ins (no prometheus-client) -------------------------------------------


class _Value:
    """One series of a stand-in metric: counter, gauge or histogram (sum and count)."""

    __slots__ = ("count", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.count = 0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def set(self, value: float) -> None:
        self.value = value

    def observe(self, amount: float) -> None:
        self.value += amount
        self.count += 1


class _Metric:
    """A stand-in with the ``prometheus_client`` methods rtdelivery uses."""

    def __init__(self, kind: str, name: str, labelnames: Sequence[str]) -> None:
        self.kind = kind
        self.name = name
        self.labelnames = tuple(labelnames)
        self.children: dict[tuple[str, ...], _Value] = {}
        self._lock = threading.Lock()
        self._value = _Value()

    def labels(self, *values: str) -> _Value:
        key = tuple(str(v) for v in values)
        child = self.children.get(key)
        if child is None:
            with self._lock:
                child = self.children.setdefault(key, _Value())
        return child

    def inc(self, amount: float = 1) -> None:
        self._value.inc(amount)

    def dec(self, amount: float = 1) -> None:
        self._value.dec(amount)

    def set(self, value: float) -> None:
        self._value.set(value)

    def observe(self, amount: float) -> None:
        self._value.observe(amount)

    def series(self) -> Iterable[tuple[dict[str, str], float, int]]:
        if not self.labelnames:
            yield {}, self._value.value, self._value.count
        for key, child in list(self.children.items()):
            yield dict(zip(self.labelnames, key, strict=True)), child.value, child.count


_metrics: dict[str, Any] = {}
_plain_counters: set[str] = set()


def _define(
    kind: str,
    name: str,
    documentation: str,
    labelnames: Sequence[str] = (),
    *,
    mode: str = "",
    buckets: Sequence[float] = (),
) -> Any:
    """A Prometheus metric (or its stand-in) named ``rtdelivery_<name>``."""
    full = "rtdelivery_" + name
    metric: Any
    if prometheus_client is None:
        metric = _Metric(kind, full, labelnames)
    elif kind == "counter":
        metric = prometheus_client.Counter(full, documentation, labelnames)
    elif kind == "gauge":
        # multiprocess_mode: how a scrape combines the gauges of several worker processes.
        metric = prometheus_client.Gauge(
            full,
            documentation,
            labelnames,
            multiprocess_mode=mode or "livesum",  # type: ignore[arg-type]
        )
    else:
        metric = prometheus_client.Histogram(full, documentation, labelnames, buckets=buckets)
    _metrics[name] = metric
    if kind == "counter" and not labelnames:
        _plain_counters.add(name)
    return metric


# -- the metrics --------------------------------------------------------------------------

connections = _define(
    "gauge", "connections", "Open connections (held requests included) by transport.", ["transport"]
)
connections_opened = _define(
    "counter", "connections_opened", "Connections opened by transport.", ["transport"]
)
held_requests = _define(
    "gauge",
    "held_requests",
    "Long polls and SSE streams held open by this process (MAX_HELD_REQUESTS applies).",
    mode="liveall",
)
held_requests_limit = _define(
    "gauge", "held_requests_limit", "MAX_HELD_REQUESTS of this process.", mode="livemax"
)
subscriptions = _define(
    "gauge", "subscriptions", "Subscriptions (a connection to a topic) served by the hubs."
)
events_published = _define("counter", "events_published", "Events stored and broadcast.")
broadcast_failures = _define(
    "counter",
    "broadcast_failures",
    "Events stored but not sent on the backplane (subscribers get them from history).",
)
events_delivered = _define(
    "counter", "events_delivered", "Events written to clients, by transport.", ["transport"]
)
delivery_latency = _define(
    "histogram",
    "delivery_latency_seconds",
    "From an event's publish time to its fan-out in this process (once per event).",
    buckets=LATENCY_BUCKETS,
)
gaps_detected = _define(
    "counter", "gaps_detected", "Skips in a topic's seq the backplane left (filled from history)."
)
gap_events_repaired = _define(
    "counter", "gap_events_repaired", "Events the backplane dropped, delivered from history."
)
not_recovered = _define(
    "counter",
    "not_recovered",
    "Answers with recovered: false (resume: a cursor history could not continue; gap: "
    "events lost between live deliveries).",
    ["source"],
)
duplicates_dropped = _define(
    "counter", "duplicates_dropped", "Events the hub received twice (dropped)."
)
replay_pages = _define("counter", "replay_pages", "History pages read for paged resumes.")
slow_consumer_ends = _define(
    "counter",
    "slow_consumer_ends",
    "Connections ended because they did not keep up (too_slow), by transport.",
    ["transport"],
)
throttled = _define(
    "counter",
    "throttled",
    "Requests refused as too many (HTTP 429, or the WebSocket's close), by transport and code.",
    ["transport", "code"],
)
refusals = _define(
    "counter",
    "refusals",
    "Requests refused by the policy or authentication (401/403), by transport and code.",
    ["transport", "code"],
)
redis_errors = _define(
    "counter", "redis_errors", "Failed Redis operations, by operation.", ["operation"]
)
redis_outages = _define("counter", "redis_outages", "Redis outages (unreachable, then back).")
redis_down = _define(
    "gauge", "redis_down", "1 while Redis cannot be reached from this process.", mode="livemax"
)
redis_restarts = _define(
    "counter", "redis_restarts", "Redis restarts (run_id changes) the hub recovered from."
)
history_reads = _define("counter", "history_reads", "History reads, by kind.", ["kind"])
publish_duplicates = _define(
    "counter", "publish_duplicates", "Publishes that repeated an idempotency key (not stored)."
)
other = _define(
    "counter", "other", "Counts without a metric of their own (see incr()), by name.", ["name"]
)

# Children bound once: no label lookup on a hot path.
CONNECTIONS = {t: connections.labels(t) for t in TRANSPORTS}
OPENED = {t: connections_opened.labels(t) for t in TRANSPORTS}
SLOW_ENDS = {t: slow_consumer_ends.labels(t) for t in TRANSPORTS}
NOT_RECOVERED_RESUME = not_recovered.labels("resume")
NOT_RECOVERED_GAP = not_recovered.labels("gap")
HISTORY_READ = history_reads.labels("read")
HISTORY_LATEST = history_reads.labels("latest")
HISTORY_HEADS = history_reads.labels("heads")
_DELIVERED = {t: events_delivered.labels(t) for t in TRANSPORTS}


class Pending:
    """Deliveries of one transport: a plain integer a writer adds to per batch
    (``metrics.delivered["ws"].n += count``); :func:`flush` adds what came since the last
    flush to the counter. Adding also flushes when the last flush is more than
    :data:`FLUSH_EVERY` seconds old (one clock read and one float compare per batch), so
    a process's deliveries reach Prometheus even when nothing else flushes (no reporter,
    no scrape of that process). Writers only ever add (no lost update when a flush runs
    on another thread)."""

    __slots__ = ("_n", "flushed")

    def __init__(self) -> None:
        self._n = 0
        self.flushed = 0

    @property
    def n(self) -> int:
        return self._n

    @n.setter
    def n(self, value: int) -> None:
        self._n = value
        if time.monotonic() - _last_flush[0] > FLUSH_EVERY:
            flush()


#: How old the last flush may be when a writer adds deliveries (seconds).
FLUSH_EVERY = 1.0
#: ``metrics.delivered["ws"].n += count`` from a transport's writer, per batch.
delivered = {t: Pending() for t in TRANSPORTS}
_flush_lock = threading.Lock()
_last_flush = [time.monotonic()]


def flush() -> None:
    """Move the pending deliveries to ``rtdelivery_events_delivered_total``."""
    with _flush_lock:
        _last_flush[0] = time.monotonic()
        for transport, pending in delivered.items():
            n = pending._n
            if n != pending.flushed:
                _DELIVERED[transport].inc(n - pending.flushed)
                pending.flushed = n


# -- recording helpers (not on the per-event path) ------------------------------------------

#: Recent slow-consumer ends and gaps of this process, newest last (the ops page).
recent_slow_ends: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT)
recent_gaps: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT)


def slow_consumer_ended(transport: str, connection: str, user: Any, topics: Iterable[str]) -> None:
    """Count a connection ended as too slow and remember it for the ops page."""
    SLOW_ENDS[transport].inc()
    recent_slow_ends.append(
        {
            "time": time.time(),
            "transport": transport,
            "connection": connection,
            "user": _user_label(user),
            "topics": sorted(topics)[:10],
        }
    )


def gap(topic: str, events: int, recovered: bool) -> None:
    """Count a gap the hub filled from history (``events`` delivered from it)."""
    gaps_detected.inc()
    if events:
        gap_events_repaired.inc(events)
    if not recovered:
        NOT_RECOVERED_GAP.inc()
    recent_gaps.append(
        {"time": time.time(), "topic": topic, "events": events, "recovered": recovered}
    )


def held_opened(transport: str) -> None:
    """A long poll or SSE stream is held (:func:`rtdelivery.transports.limits.hold`)."""
    OPENED[transport].inc()
    CONNECTIONS[transport].inc()
    held_requests.inc()


def held_closed(transport: str) -> None:
    CONNECTIONS[transport].dec()
    held_requests.dec()


def observe_latency(event_time_ms: int) -> None:
    """Publish->fan-out latency of one event (its ``time``, milliseconds since the epoch)."""
    delivery_latency.observe(max(0.0, time.time() - event_time_ms / 1000))


def endpoint_of(handler: Any) -> str:
    """The transport (``poll``, ``longpoll``, ``sse``) or endpoint (``publish``,
    ``history``, ``presence``) a request handler serves, for labels (a handler may name
    its own in a ``metrics_label`` attribute: the django-eventstream bridge's)."""
    label = getattr(handler, "metrics_label", None)
    if isinstance(label, str):
        return label
    module = getattr(handler, "__module__", "") or ""
    name = module.rsplit(".", 1)[-1]
    return name if name in TRANSPORTS else str(getattr(handler, "__name__", name))


def refused(transport: str, status: int, code: str) -> None:
    """Count an error answer: 429s as throttled, 401/403 as refusals (others: not)."""
    if status == 429:
        throttled.labels(transport, code).inc()
    elif status in (401, 403):
        refusals.labels(transport, code).inc()


def redis_failure(operation: str, starting: bool) -> None:
    """A Redis operation failed (``starting``: the first failure of an outage)."""
    redis_errors.labels(operation).inc()
    if starting:
        redis_outages.inc()
        redis_down.set(1)


def redis_recovered() -> None:
    redis_down.set(0)


def _user_label(user: Any) -> str | None:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return str(getattr(user, "pk", ""))


def incr(name: str, amount: float = 1) -> None:
    """Count ``name``: the unlabelled counter of that name (``events_published``), or
    ``rtdelivery_other_total{name=...}`` for a name without a metric of its own. Hot
    paths use the metric objects directly."""
    if name in _plain_counters:
        _metrics[name].inc(amount)
    else:
        other.labels(name).inc(amount)


def snapshot() -> dict[str, float]:
    """This process's values summed over their labels: ``{name: total}`` (see :func:`read`)."""
    totals = {name: sum(series.values()) for name, series in read().items()}
    return {name: int(v) if v == int(v) else v for name, v in totals.items()}


# -- reading --------------------------------------------------------------------------------


def read() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """This process's values: ``{name: {((label, value), ...): value}}``.

    Names are the metrics' without the ``rtdelivery_`` prefix and the ``_total`` suffix;
    a histogram gives ``<name>_sum`` and ``<name>_count``. Pending deliveries are flushed
    first.
    """
    flush()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for name, metric in _metrics.items():
        if prometheus_client is None:
            for labels, value, count in metric.series():
                key = tuple(sorted(labels.items()))
                if metric.kind == "histogram":
                    out.setdefault(name + "_sum", {})[key] = value
                    out.setdefault(name + "_count", {})[key] = count
                else:
                    out.setdefault(name, {})[key] = value
            continue
        for family in metric.collect():
            for sample in family.samples:
                sample_name = sample.name[len("rtdelivery_") :]
                if sample_name.endswith("_created") or sample_name.endswith("_bucket"):
                    continue
                if sample_name.endswith("_total"):
                    sample_name = sample_name[: -len("_total")]
                labels = {k: v for k, v in sample.labels.items() if k != "pid"}
                out.setdefault(sample_name, {})[tuple(sorted(labels.items()))] = sample.value
    return out


def value(name: str, **labels: str) -> float:
    """One value of this process (0 when never counted): ``value("events_delivered",
    transport="ws")``. Without labels, the sum over every label value."""
    series = read().get(name, {})
    if not labels:
        return sum(series.values())
    return series.get(tuple(sorted(labels.items())), 0.0)


def multiprocess() -> bool:
    """Whether prometheus-client runs in multiprocess mode (PROMETHEUS_MULTIPROC_DIR)."""
    return ENABLED and bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


__all__ = [
    "ENABLED",
    "TRANSPORTS",
    "delivered",
    "flush",
    "gap",
    "incr",
    "multiprocess",
    "read",
    "refused",
    "slow_consumer_ended",
    "snapshot",
    "value",
]
