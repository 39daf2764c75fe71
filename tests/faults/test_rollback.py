"""Redis goes back in time, or comes back empty, under real servers and clients (issue 9,
cases 1 and 7; DESIGN invariant 6).

Two servers of one kind (Daphne or Uvicorn) share a private ``redis-server``; on each,
one client per transport (poll, long poll, SSE, WebSocket) follows one topic while events
are published through both servers. Then Redis is SIGKILLed and started again:

- **rdb-rollback**: from an RDB snapshot (``SAVE``) taken 200 events earlier, as after
  a crash with Redis's default persistence or a failover to a replica that missed writes;
- **empty-restart**: empty; some clients are away during the restart and resume from
  their cursors after events were already published in the topic's new epoch.

After the restart more events are published. Every client must either continue exactly or
be told (``recovered: false``, ``rt.reset``, a ``subscribed`` frame with
``recovered: false``) and then receive every event published since, exactly once; no id
names two different events, and no publisher is acknowledged an id given out before.

Clients behave like real ones through the outage: a poll that gets ``503`` asks again,
and a stream or socket that ends is reopened from its cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from tests.conftest import find_free_port
from tests.e2e.clients import (
    TRANSPORTS,
    BaseClient,
    ClientError,
    LongPollClient,
    PollClient,
    SSEClient,
    WSClient,
    http_client,
)
from tests.e2e.conftest import SERVER_KINDS, Server, Servers, running_servers
from tests.history.conftest import RedisServer

#: Upper bound for one wait (seconds); a healthy run needs a fraction of it.
WAIT = 30.0
#: How often a client asks again after a 503 (a real client backs off like this).
RETRY = 0.1

# -- clients that live through an outage ---------------------------------------------------


class _Retrying:
    """A poll or long-poll client that asks again when the server answers 503."""

    outages = 0

    async def _get(self, extra: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                response = await super()._get(extra, headers)  # type: ignore[misc]
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code != 503:
                return response
            self.outages += 1
            if time.monotonic() > deadline:
                raise ClientError(f"still unavailable after {WAIT}s")
            await asyncio.sleep(RETRY)  # the client's retry interval


class RetryingPoll(_Retrying, PollClient):
    pass


class RetryingLongPoll(_Retrying, LongPollClient):
    pass


CLIENTS: dict[str, type[BaseClient]] = {
    "poll": RetryingPoll,
    "longpoll": RetryingLongPoll,
    "sse": SSEClient,
    "ws": WSClient,
}


def alive(client: BaseClient) -> bool:
    task = client._task
    return task is not None and not task.done()


async def revive(client: BaseClient) -> None:
    """Reopen a client whose stream or socket ended, from its cursor (as a browser
    would); a refused reopening is retried on the next call."""
    if alive(client):
        return
    with contextlib.suppress(ClientError, httpx.TransportError, OSError):
        await client.connect()


def announcements(client: BaseClient) -> int:
    """How often the server told this client it could not continue exactly."""
    told = sum(1 for o in client.opens if o.get("recovered") is False)
    for notice in client.notices:
        kind = notice.get("event")
        if kind in ("lost", "rt.reset") or (kind == "subscribed" and not notice["recovered"]):
            told += 1
    return told


async def settle(
    clients: list[BaseClient], done: Callable[[BaseClient], bool], seconds: float = WAIT
) -> bool:
    """Wait until ``done(client)`` for every client (reviving dead ones); False at the
    deadline (the caller reports what each client got, then fails)."""
    deadline = time.monotonic() + seconds
    while True:
        pending = [c for c in clients if not done(c)]
        if not pending:
            return True
        if time.monotonic() > deadline:
            return False
        for client in pending:
            await revive(client)
        await asyncio.sleep(0.05)  # polling a condition, bounded by the deadline


# -- publishing ------------------------------------------------------------------------------


@dataclass
class Publisher:
    """Publishes ``{"n": k}`` through the servers in turn; remembers every ack."""

    servers: Servers
    topic: str
    http: httpx.AsyncClient
    #: n -> the ack's body ({"topic", "seq", "id"}).
    acks: dict[int, dict[str, Any]] = field(default_factory=dict)

    async def publish(self, count: int) -> list[int]:
        sent = []
        for _ in range(count):
            n = len(self.acks) + 1
            server = self.servers.items[n % len(self.servers.items)]
            self.acks[n] = await self._post(server, n)
            sent.append(n)
        return sent

    async def _post(self, server: Server, n: int) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        while True:
            response = await self.http.post(
                f"{server.base_url}/rt/publish",
                json={"topic": self.topic, "type": "message", "data": {"n": n}},
                headers={"authorization": f"Bearer {self.servers.token}"},
            )
            if response.status_code == 201:
                body: dict[str, Any] = response.json()
                return body
            # 503 while the server reconnects to Redis: nothing was stored, ask again.
            assert response.status_code == 503, (response.status_code, response.text)
            assert time.monotonic() < deadline, f"publish still refused after {WAIT}s"
            await asyncio.sleep(RETRY)

    def reused_ack_ids(self) -> dict[str, list[int]]:
        """Ack ids given to more than one event (a reused (epoch, seq))."""
        by_id: dict[str, list[int]] = defaultdict(list)
        for n, ack in self.acks.items():
            by_id[ack["id"]].append(n)
        return {i: ns for i, ns in by_id.items() if len(ns) > 1}


def received(client: BaseClient, topic: str) -> list[int]:
    return [e["data"]["n"] for e in client.events if e["topic"] == topic]


def has_all(client: BaseClient, topic: str, wanted: set[int]) -> bool:
    return wanted <= set(received(client, topic))


@dataclass
class Tally:
    """What one client saw, as a fault-table row."""

    delivered: int
    announced: int
    silent: int
    duplicates: int


def tally(
    client: BaseClient, publisher: Publisher, ids: dict[str, set[int]], told_before: int
) -> Tally:
    """``ids`` maps every id seen anywhere (acks and every client) to the events it named;
    ``told_before``: the client's announcements before the fault (not counted).

    Every event of these cases stays retained in history, so a client that was told of a
    reset must still get all of them: an acknowledged event never received is ``silent``.
    ``duplicates`` counts an event received twice, and an event whose id also names
    another event.
    """
    ns = received(client, publisher.topic)
    wanted = set(publisher.acks)
    shared = sum(1 for e in client.events if len(ids[e["id"]]) > 1)
    return Tally(
        delivered=len(set(ns) & wanted),
        announced=announcements(client) - told_before,
        silent=len(wanted - set(ns)),
        duplicates=len(ns) - len(set(ns)) + shared,
    )


def ids_seen(publisher: Publisher, clients: list[BaseClient]) -> dict[str, set[int]]:
    ids: dict[str, set[int]] = defaultdict(set)
    for n, ack in publisher.acks.items():
        ids[ack["id"]].add(n)
    for client in clients:
        for event in client.events:
            ids[event["id"]].add(event["data"]["n"])
    return ids


# -- fixtures ------------------------------------------------------------------------------


@contextlib.contextmanager
def servers_on_private_redis(
    kind: str, log_dir: Path, workdir: Path
) -> Iterator[tuple[Servers, RedisServer]]:
    """Two servers of ``kind`` on a private redis-server (files in ``workdir``)."""
    redis = RedisServer(find_free_port(), workdir)
    redis.start()
    try:
        with running_servers(kind, redis.url, log_dir) as servers:
            try:
                yield servers, redis
            finally:
                if redis.process is None:
                    redis.start()  # the servers' teardown deletes their keys
    finally:
        redis.stop()


@pytest.fixture(params=SERVER_KINDS)
def fault_servers(
    request: pytest.FixtureRequest, e2e_log_dir: Path, tmp_path: Path
) -> Iterator[tuple[Servers, RedisServer]]:
    """Two servers of one kind on a private redis-server that the test kills."""
    with servers_on_private_redis(request.param, e2e_log_dir, tmp_path) as pair:
        yield pair


@dataclass
class Follower:
    """One client of one transport on one server."""

    server: str  # "A" or "B"
    transport: str
    client: BaseClient


@contextlib.asynccontextmanager
async def followers(servers: Servers, topic: str) -> AsyncIterator[list[Follower]]:
    """One client per transport on each server, subscribed (live) to ``topic``."""
    opened: list[Follower] = []
    try:
        for name, server in (("A", servers.a), ("B", servers.b)):
            for transport in TRANSPORTS:
                client = CLIENTS[transport](server.base_url, [topic])
                await client.connect()
                opened.append(Follower(name, transport, client))
        yield opened
    finally:
        for follower in opened:
            with contextlib.suppress(Exception):
                await follower.client.close()


def describe(follower: Follower, topic: str) -> str:
    client = follower.client
    ns = received(client, topic)
    return (
        f"{follower.transport}@{follower.server}: {len(ns)} events "
        f"(last {ns[-3:]}), opens={client.opens[-2:]}, notices={client.notices[-3:]}, "
        f"failure={client._failure!r}"
    )


def report_rows(
    fault_report: Any,
    case: str,
    kind: str,
    group: list[Follower],
    publisher: Publisher,
    told_before: dict[int, int],
) -> dict[str, Tally]:
    clients = [f.client for f in group]
    ids = ids_seen(publisher, clients)
    out = {}
    for follower in group:
        counts = tally(follower.client, publisher, ids, told_before[id(follower.client)])
        label = f"{follower.transport}@{follower.server}"
        fault_report(case, follower.transport, f"{kind} {follower.server}", **counts.__dict__)
        out[label] = counts
    return out


# -- rdb-rollback ----------------------------------------------------------------------------

BEFORE_SNAPSHOT = 100
AFTER_SNAPSHOT = 200  # lost by the restart
AFTER_RESTART = 100


async def test_restart_from_an_older_rdb_snapshot_is_never_silent(
    fault_servers: tuple[Servers, RedisServer], fault_report: Any
) -> None:
    servers, redis = fault_servers
    topic = f"e2e.rdb{uuid4().hex[:10]}"
    async with http_client() as http, followers(servers, topic) as group:
        clients = [f.client for f in group]
        publisher = Publisher(servers, topic, http)
        await publisher.publish(BEFORE_SNAPSHOT)
        redis.save()  # the snapshot Redis will come back with
        await publisher.publish(AFTER_SNAPSHOT)
        everything = set(publisher.acks)
        assert await settle(clients, lambda c: has_all(c, topic, everything)), "\n".join(
            describe(f, topic) for f in group
        )
        told_before = {id(c): announcements(c) for c in clients}

        redis.kill()
        redis.start()  # from dump.rdb: the topic's counter is back 200 events
        with redis.client() as client:
            assert client.dbsize() > 0, "the snapshot was not loaded"
        after = set(await publisher.publish(AFTER_RESTART))
        reached = await settle(
            clients,
            lambda c: has_all(c, topic, after) and announcements(c) > told_before[id(c)],
        )

    rows = report_rows(fault_report, "rdb-rollback", servers.kind, group, publisher, told_before)
    reused = publisher.reused_ack_ids()
    details = "\n".join(describe(f, topic) for f in group)
    assert not reused, f"publishers were acknowledged reused ids: {len(reused)}\n{details}"
    for label, counts in rows.items():
        assert counts.silent == 0, f"{label} missed events silently: {counts}\n{details}"
        assert counts.duplicates == 0, f"{label} got duplicates: {counts}\n{details}"
        assert counts.announced >= 1, f"{label} was never told of the rollback\n{details}"
    assert reached, details


# -- empty-restart ---------------------------------------------------------------------------

BEFORE_RESTART = 50
WHILE_AWAY = 40  # published after the restart, before the away clients come back
AFTER_RETURN = 40


async def test_empty_restart_resumes_every_transport_from_the_new_epochs_start(
    fault_servers: tuple[Servers, RedisServer], fault_report: Any
) -> None:
    servers, redis = fault_servers
    topic = f"e2e.emp{uuid4().hex[:10]}"
    async with (
        http_client() as http,
        followers(servers, topic) as live,
        followers(servers, topic) as away,
    ):
        everyone = [f.client for f in live + away]
        publisher = Publisher(servers, topic, http)
        await publisher.publish(BEFORE_RESTART)
        first = set(publisher.acks)
        assert await settle(everyone, lambda c: has_all(c, topic, first)), "\n".join(
            describe(f, topic) for f in live + away
        )
        told_before = {id(c): announcements(c) for c in everyone}
        for follower in away:
            await follower.client.drop()  # gone, holding its cursor

        redis.kill()
        redis.start()  # empty: no snapshot was written
        with redis.client() as client:
            # The topic's history is gone. (Not dbsize() == 0: the servers notice the
            # restart within moments and re-join their layer groups.)
            assert client.keys(f"*{{{topic}}}*") == []
        await publisher.publish(WHILE_AWAY)
        for follower in away:  # back, resuming from the cursor of the old epoch
            await revive(follower.client)
        await publisher.publish(AFTER_RETURN)
        wanted = set(publisher.acks)
        reached = await settle(everyone, lambda c: has_all(c, topic, wanted))

    rows = report_rows(
        fault_report, "empty-restart live", servers.kind, live, publisher, told_before
    )
    resumed = report_rows(
        fault_report, "empty-restart resumed", servers.kind, away, publisher, told_before
    )
    rows.update({"away " + k: v for k, v in resumed.items()})
    details = "\n".join(describe(f, topic) for f in live + away)
    assert not publisher.reused_ack_ids(), details
    for label, counts in rows.items():
        assert counts.silent == 0, f"{label} missed events: {counts}\n{details}"
        assert counts.duplicates == 0, f"{label} got duplicates: {counts}\n{details}"
        assert counts.announced >= 1, f"{label} was never told of the new epoch\n{details}"
    assert reached, details
