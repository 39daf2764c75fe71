"""The harness of the scale-out faults (Redis Cluster, Redis Sentinel failover).

Two e2e servers (Uvicorn and Daphne, tests/e2e/settings_e2e.py) run with history and
presence on the topology under test (``RTD_REDIS``) and the channel layer on the hosts in
``RTD_LAYER_HOSTS``. On each server one client per transport watches every topic and is
kept connected by :func:`supervise`: when its connection fails (503, reset, end of stream)
it reconnects from its own cursor, as rtdelivery.js does. :class:`Publisher` publishes
through both servers in turn and keeps every acknowledgement.

:func:`tally` then compares what each client received with what was acknowledged, topic by
topic, and counts

- **delivered**: acknowledged events received;
- **announced**: acknowledged events not received, on a topic whose loss the client was
  told about (``recovered: false``, ``lost``, ``rt.reset``) after the last event it got
  from that epoch;
- **silent**: acknowledged events not received and not announced, including any hole
  below an event received from the same epoch;
- **duplicates**: an event id received twice, or an id received with other data than the
  event acknowledged under that id (a reused id).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.clients import TRANSPORTS, BaseClient, ClientError, http_client, make_client
from tests.e2e.conftest import Server, server_env, start_server, stop_server, wait_ready

#: Pause before a client reconnects after a failed attempt (rtdelivery.js backs off too).
RECONNECT_DELAY = 0.25
#: Upper bound for the clients to catch up with the last acknowledged events (seconds).
CATCH_UP = 30.0
SERVER_KINDS = ("uvicorn", "daphne")


# -- servers --------------------------------------------------------------------------------------


@contextlib.contextmanager
def scaleout_servers(
    redis_setting: dict[str, Any],
    layer_hosts: list[Any],
    log_dir: Path,
    prefix: str,
) -> Iterator[list[Server]]:
    """One Uvicorn and one Daphne with ``RTDELIVERY["REDIS"] = redis_setting`` and the
    layer on ``layer_hosts``; stopped by PID at exit (their log tails printed)."""
    env = server_env(
        "redis://unused.invalid:1/0",  # REDIS_URL is replaced by RTD_REDIS and RTD_LAYER_HOSTS
        prefix,
        {"RTD_REDIS": json.dumps(redis_setting), "RTD_LAYER_HOSTS": json.dumps(layer_hosts)},
    )
    started: list[Server] = []
    try:
        for kind in SERVER_KINDS:
            started.append(start_server(kind, env, log_dir))
        for server in started:
            wait_ready(server)
        yield started
    finally:
        for server in started:
            status = stop_server(server)
            print(f"--- {server.kind} pid {server.pid} port {server.port} exit {status}")
            print(server.log_tail())


# -- publishing -----------------------------------------------------------------------------------


@dataclass
class Ack:
    topic: str
    i: int
    seq: int
    id: str
    at: float  # monotonic


@dataclass
class Publisher:
    """Publishes ``{"i": n}`` (n counts per topic) on ``topics`` through ``servers`` in turn,
    from ``tasks`` concurrent tasks; a publish not answered 201 is simply not acknowledged
    (its n is never reused)."""

    servers: Sequence[Server]
    token: str
    topics: Sequence[str]
    tasks: int = 4
    pause: float = 0.01  # between one task's publishes: a steady stream, not a flood
    acks: list[Ack] = field(default_factory=list)
    refused: int = 0
    #: (sent, answered, acknowledged) per publish (monotonic), for the failover figures.
    outcomes: list[tuple[float, float, bool]] = field(default_factory=list)
    _counters: dict[str, itertools.count[int]] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _running: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        for topic in self.topics:
            self._counters[topic] = itertools.count(1)
        for index in range(self.tasks):
            mine = list(self.topics[index :: self.tasks])
            self._running.append(asyncio.create_task(self._run(index, mine)))

    async def stop(self) -> None:
        """Stop publishing (again: a no-op) once the publishes in flight are answered."""
        self._stop.set()
        running, self._running = self._running, []
        await asyncio.gather(*running)

    async def _run(self, index: int, topics: list[str]) -> None:
        order = list(self.servers)
        shift = index % len(order)
        servers = itertools.cycle(order[shift:] + order[:shift])  # tasks start on different ones
        async with http_client(timeout=httpx.Timeout(10.0, connect=2.0)) as http:
            for topic in itertools.cycle(topics):
                if self._stop.is_set():
                    return
                server = next(servers)
                i = next(self._counters[topic])
                sent = time.monotonic()
                try:
                    response = await http.post(
                        f"{server.base_url}/rt/publish",
                        json={"topic": topic, "type": "message", "data": {"i": i}},
                        headers={"authorization": f"Bearer {self.token}"},
                    )
                except httpx.HTTPError:
                    response = None
                now = time.monotonic()
                if response is not None and response.status_code == 201:
                    body = response.json()
                    self.acks.append(Ack(topic, i, body["seq"], body["id"], now))
                    self.outcomes.append((sent, now, True))
                else:
                    self.refused += 1
                    self.outcomes.append((sent, now, False))
                    await asyncio.sleep(RECONNECT_DELAY)  # Retry-After, shortened for a test
                    continue
                await asyncio.sleep(self.pause)

    def first_ack_sent_after(self, moment: float) -> float | None:
        """When the first publish sent after ``moment`` was acknowledged."""
        return next((end for sent, end, ok in self.outcomes if ok and sent > moment), None)

    def refused_between(self, start: float, end: float) -> int:
        return sum(1 for _, at, ok in self.outcomes if not ok and start <= at <= end)

    def slowest_answer(self, start: float, end: float) -> float:
        """The longest a publish sent between ``start`` and ``end`` waited for its answer."""
        return max((e - s for s, e, _ in self.outcomes if start <= s <= end), default=0.0)


def reused_ids(acks: Sequence[Ack]) -> list[tuple[str, str]]:
    """Ids acknowledged for two different events (must be none)."""
    first: dict[str, int] = {}
    reused = []
    for ack in acks:
        if first.setdefault(ack.id, ack.i) != ack.i:
            reused.append((ack.topic, ack.id))
    return reused


# -- clients --------------------------------------------------------------------------------------


@dataclass
class Watched:
    """A client, its server and when each of its events arrived (for latencies)."""

    client: BaseClient
    server: Server
    arrivals: list[float] = field(default_factory=list)  # wall clock, aligned with events
    failures: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def transport(self) -> str:
        return self.client.transport


def open_clients(servers: Sequence[Server], topics: Sequence[str]) -> list[Watched]:
    return [
        Watched(make_client(transport, server.base_url, list(topics)), server)
        for server in servers
        for transport in TRANSPORTS
    ]


async def supervise(watched: Watched, stop: asyncio.Event) -> None:
    """Keep ``watched.client`` connected until ``stop``: reconnect from its cursor whenever its
    connection ends; stamp each event's arrival."""
    client = watched.client
    stopping = asyncio.ensure_future(stop.wait())
    stamper = asyncio.ensure_future(_stamp(watched, stop))
    try:
        while not stop.is_set():
            task = client._task  # the connection's reader (tests.e2e.clients)
            if task is None or task.done():
                try:
                    await client.connect()
                except (ClientError, httpx.HTTPError, OSError, TimeoutError) as exc:
                    watched.failures.append(f"{type(exc).__name__}: {str(exc)[:120]}")
                    await asyncio.sleep(RECONNECT_DELAY)
                    continue
                except Exception as exc:  # websockets' handshake and close errors
                    watched.failures.append(f"{type(exc).__name__}: {str(exc)[:120]}")
                    await asyncio.sleep(RECONNECT_DELAY)
                    continue
                task = client._task
                assert task is not None
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if task.done() and not stop.is_set():
                failure = client._failure
                watched.failures.append(repr(failure)[:160] if failure else "ended")
                await asyncio.sleep(RECONNECT_DELAY)
    finally:
        stopping.cancel()
        await stamper
        await client.close()


async def _stamp(watched: Watched, stop: asyncio.Event) -> None:
    client = watched.client
    while not stop.is_set():
        seen = len(client.events)

        def more(seen: int = seen) -> bool:
            return len(client.events) > seen or stop.is_set()

        try:
            await client.wait_for(more, 1.0, "events")
        except ClientError:
            # Timed out, or the connection failed (wait_for then raises at once, until
            # supervise() reconnects): look again shortly, never spin.
            await asyncio.sleep(0.05)
        now = time.time()
        watched.arrivals.extend([now] * (len(client.events) - len(watched.arrivals)))


async def start_clients(watched: list[Watched], stop: asyncio.Event) -> None:
    """Connect every client (each retried until it is live) and keep them connected."""
    for one in watched:
        one.task = asyncio.create_task(supervise(one, stop))
    deadline = time.monotonic() + 30
    while not all(one.client.opens for one in watched):
        assert time.monotonic() < deadline, [
            (one.transport, one.server.kind, one.failures[-3:]) for one in watched
        ]
        await asyncio.sleep(0.05)  # polling a condition, bounded by the deadline


async def stop_clients(watched: list[Watched], stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.gather(*(one.task for one in watched if one.task is not None))
    for one in watched:
        await one.client.close()  # never started (start_clients failed early): still closed


async def catch_up(watched: list[Watched], acks: Sequence[Ack]) -> float:
    """Wait until every client received each topic's last acknowledged event (or the bound
    passes: what is missing then is counted by :func:`tally`). Returns the time waited."""
    last: dict[str, str] = {}
    for ack in acks:
        last[ack.topic] = ack.id
    wanted = set(last.values())
    started = time.monotonic()
    for one in watched:
        events = one.client.events

        def done(events: list[dict[str, Any]] = events) -> bool:
            return wanted <= {e["id"] for e in events}

        remaining = started + CATCH_UP - time.monotonic()
        with contextlib.suppress(ClientError):
            await one.client.wait_for(done, max(remaining, 0.01), "the last events")
    return time.monotonic() - started


# -- counting -------------------------------------------------------------------------------------


def id_epoch(event_id: str) -> int:
    """The epoch inside an event id (a one-topic cursor: version, topic, epoch, seq, MAC)."""
    raw = base64.urlsafe_b64decode(event_id + "=" * (-len(event_id) % 4))
    body, pos = raw[1:-6], 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            byte = body[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    length = varint()
    pos += length
    return varint()


def announced_topics(client: BaseClient) -> set[str]:
    """Topics the server told this client it may have lost events on."""
    topics: set[str] = set()
    for entry in [*client.opens, *client.notices]:
        topics.update(entry.get("lost") or [])
        if entry.get("event") == "rt.reset" or (
            entry.get("event") == "subscribed" and entry.get("recovered") is False
        ):
            topics.add(entry["topic"])
    return topics


@dataclass
class Tally:
    delivered: int = 0
    announced: int = 0
    silent: int = 0
    duplicates: int = 0
    missing: list[tuple[str, int, int]] = field(default_factory=list)  # silent (topic, epoch, seq)
    #: (topic, epoch, seq, i, why) of each duplicate: "again" (the id twice) or "reused"
    #: (the id was acknowledged for another event).
    doubles: list[tuple[str, int, int, int, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "delivered": self.delivered,
            "announced": self.announced,
            "silent": self.silent,
            "duplicates": self.duplicates,
        }


def tally(client: BaseClient, acks: Sequence[Ack]) -> Tally:
    result = Tally()
    acked_i = {ack.id: ack.i for ack in acks}
    seen_ids: set[str] = set()
    received: dict[str, dict[int, set[int]]] = {}  # topic -> epoch -> seqs
    got: set[tuple[str, str, int]] = set()  # (topic, id, i)
    for event in client.events:
        event_id, i = event["id"], event["data"]["i"]
        if event_id in seen_ids or acked_i.get(event_id, i) != i:
            result.duplicates += 1
            why = "again" if event_id in seen_ids else f"reused (acked for i={acked_i[event_id]})"
            result.doubles.append((event["topic"], id_epoch(event_id), event["seq"], i, why))
        seen_ids.add(event_id)
        received.setdefault(event["topic"], {}).setdefault(id_epoch(event_id), set()).add(
            event["seq"]
        )
        got.add((event["topic"], event_id, i))
    told = announced_topics(client)
    for ack in acks:
        if (ack.topic, ack.id, ack.i) in got:
            result.delivered += 1
            continue
        epoch = id_epoch(ack.id)
        later = [s for s in received.get(ack.topic, {}).get(epoch, ()) if s > ack.seq]
        if not later and ack.topic in told:
            result.announced += 1
        else:
            result.silent += 1
            result.missing.append((ack.topic, epoch, ack.seq))
    return result


def latencies(watched: Watched) -> dict[str, float]:
    """p50/p95 of arrival minus publish time (ms), over the client's events."""
    delays = [
        (arrival * 1000 - event["time"])
        for event, arrival in zip(watched.client.events, watched.arrivals, strict=False)
    ]
    if len(delays) < 2:
        return {}
    cuts = statistics.quantiles(delays, n=20)
    return {"p50_ms": round(statistics.median(delays), 1), "p95_ms": round(cuts[18], 1)}
