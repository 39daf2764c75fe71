"""Redis goes back in time: no ``(epoch, seq)`` is ever issued twice (DESIGN invariant 6).

A restart from an RDB snapshot (or an AOF fsynced every second, or a failover to a replica
that missed the last writes) brings back counters older than what was already handed
out. Each evidence of that makes the scripts start a new, empty epoch for the topic:

- the Redis server's ``run_id`` is not the one recorded at the topic's last write
  (a real private redis-server, SIGKILLed and restarted from its own ``SAVE``);
- a cursor beyond the head of the current epoch, or a higher seq this process already
  saw in it (a ``RESTORE`` of older keys, which keeps the run_id).

Every issued id is checked against every other: the same ``(epoch, seq)`` never names two
different events.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from rtdelivery.core.cursors import Position
from rtdelivery.core.events import Event
from rtdelivery.history import History, get_history, reset_history
from rtdelivery.history.base import BEFORE_FIRST
from rtdelivery.history.redis import _READ, SEEN_TOPICS, RedisHistory, _Seen
from tests.conftest import sync_redis
from tests.history.conftest import RedisServer, append_n, now_ms, seqs
from tests.history.test_redis_history import PER_PROCESS, PROCESSES, run_publishers

TOPIC = "chat.lobby"  # the topic run_publishers appends to


def fresh_history() -> RedisHistory:
    """What another process sees: a new instance that has seen nothing yet."""
    reset_history()
    history = get_history()
    assert isinstance(history, RedisHistory)
    return history


class Issued:
    """Every (epoch, seq) handed out, with the event it named: none may name two."""

    def __init__(self) -> None:
        self.by_position: dict[Position, tuple[str, str]] = {}

    def add(self, events: list[Event]) -> list[Event]:
        for event in events:
            named = (event.topic, event.data_json)
            previous = self.by_position.setdefault(event.position, named)
            assert previous == named, (
                f"{event.position} was issued for {previous} and again for {named}"
            )
        return events

    async def append(self, history: History, n: int, topic: str = TOPIC) -> list[Event]:
        events = []
        for _ in range(n):
            data = json.dumps({"n": len(self.by_position) + len(events)})
            events.append(await history.append(topic, "message", data, now_ms()))
        return self.add(events)


# -- the run_id changed: a real restart from an RDB snapshot ------------------------------

FIRST_AFTER = ("append", "read-live-end", "read-cursor", "latest", "heads")


async def first_touch(history: History, how: str, cursor: Position) -> None:
    if how == "append":
        await history.append(TOPIC, "message", '"first"', now_ms())
    elif how == "read-live-end":
        await history.read(TOPIC, None)
    elif how == "read-cursor":
        await history.read(TOPIC, cursor)
    elif how == "latest":
        await history.latest(TOPIC, 10)
    else:
        await history.heads([TOPIC])


@pytest.mark.parametrize("how", FIRST_AFTER)
async def test_restart_from_an_rdb_snapshot_starts_a_new_epoch(
    private_settings: dict[str, Any], redis_server: RedisServer, how: str
) -> None:
    issued = Issued()
    history = fresh_history()
    before = await issued.append(history, 3)
    epoch = before[0].epoch
    old_run = redis_server.run_id()
    redis_server.save()  # the snapshot: seq 3
    after_snapshot = await issued.append(history, 200)  # only in memory: lost below
    redis_server.kill()
    redis_server.start()  # loads dump.rdb: the topic is back at seq 3
    assert redis_server.run_id() != old_run
    meta, log = history.keys(TOPIC)
    with redis_server.client() as client:
        assert client.hmget(meta, "epoch", "seq", "run") == [
            str(epoch).encode(),
            b"3",
            old_run.encode(),
        ]
        assert client.llen(log) == 3

    # Another process, which never saw seq 4..203: only the run_id tells.
    other = fresh_history()
    await first_touch(
        other, how, after_snapshot[-1].position if how == "read-cursor" else before[-1].position
    )
    head = (await other.heads([TOPIC]))[TOPIC]
    assert head is not None
    assert head.epoch != epoch
    new = await issued.append(other, 5)
    assert new[0].epoch == head.epoch
    assert seqs(new) == list(range(head.seq + 1, head.seq + 6))
    # The old epoch's events are gone: none is served as part of the new one.
    result = await other.read(TOPIC, Position(head.epoch, 0))
    assert result.recovered is True
    expected = (['"first"'] if how == "append" else []) + [e.data_json for e in new]
    assert [e.data_json for e in result.events] == expected
    # Every cursor of the old epoch: not recovered, the new epoch from its start.
    for cursor in (before[-1].position, after_snapshot[-1].position, Position(epoch, 0)):
        reply = await other.read(TOPIC, cursor)
        assert reply.recovered is False
        assert reply.events[0].seq == 1
        assert reply.position == new[-1].position
        issued.add(reply.events)
    # And the process that saw it all before the crash agrees.
    assert (await history.read(TOPIC, None)).position == new[-1].position


async def test_publisher_processes_racing_after_an_rdb_restart_share_one_new_epoch(
    private_settings: dict[str, Any], redis_server: RedisServer
) -> None:
    history = fresh_history()
    before = await append_n(history, 3)
    redis_server.save()
    await append_n(history, 50)
    redis_server.kill()
    redis_server.start()
    outputs = run_publishers(private_settings)
    appended = [(epoch, seq) for o in outputs for _, epoch, seq in o["appended"]]
    epochs = {epoch for epoch, _ in appended}
    assert len(epochs) == 1, "each racing publisher started its own epoch"
    assert epochs != {before[0].epoch}
    assert sorted(seq for _, seq in appended) == list(range(1, PROCESSES * PER_PROCESS + 1))


async def test_a_record_without_run_adopts_the_running_server(
    redis_settings: dict[str, Any], redis_url: str
) -> None:
    # Written by an rtdelivery from before the fencing: no evidence of a rollback.
    history = fresh_history()
    before = await append_n(history, 2)
    meta, _ = history.keys(TOPIC)
    with sync_redis(redis_url) as client:
        assert client.hdel(meta, "run") == 1
        run_id = client.info("server")["run_id"]
    other = fresh_history()
    result = await other.read(TOPIC, before[0].position)
    assert (seqs(result), result.recovered) == ([2], True)
    with sync_redis(redis_url) as client:
        assert client.hget(meta, "run") == run_id.encode()


@pytest.mark.parametrize("how", FIRST_AFTER)
async def test_another_servers_run_id_starts_a_new_epoch_on_any_operation(
    redis_settings: dict[str, Any], redis_url: str, how: str
) -> None:
    # What a failover to a replica looks like to the scripts: the record was written
    # by another server (the old master), whose last writes may not have arrived.
    history = fresh_history()
    before = await append_n(history, 3)
    meta, log = history.keys(TOPIC)
    with sync_redis(redis_url) as client:
        client.hset(meta, "run", "f" * 40)
    other = fresh_history()
    await first_touch(other, how, before[-1].position)
    head = (await other.heads([TOPIC]))[TOPIC]
    assert head is not None
    assert head.epoch != before[0].epoch
    with sync_redis(redis_url) as client:
        assert client.hget(meta, "run") == client.info("server")["run_id"].encode()
        assert client.hget(meta, "reset") == b"1"
        if how != "append":
            assert client.exists(log) == 0
            assert head.seq == 0
    # A reader that was "before the first event" may have missed the lost epoch: told.
    assert (await other.read(TOPIC, BEFORE_FIRST)).recovered is False


# -- same run_id: a RESTORE of older keys -------------------------------------------------


class Snapshot:
    """A copy of a topic's keys (DUMP) put back later (RESTORE): Redis goes back in time
    while its run_id stays the same (a restored backup, a manual repair)."""

    def __init__(self, history: RedisHistory, redis_url: str) -> None:
        self.keys = history.keys(TOPIC)
        self.redis_url = redis_url
        with sync_redis(redis_url) as client:
            self.dumps = {key: client.dump(key) for key in self.keys}

    def restore(self) -> None:
        with sync_redis(self.redis_url) as client:
            for key, value in self.dumps.items():
                assert value is not None
                client.restore(key, 0, value, replace=True)


EVIDENCE = ("appended-here", "read-here", "heads-here", "cursor")


@pytest.mark.parametrize("evidence", EVIDENCE)
async def test_a_restore_that_keeps_the_run_id_is_caught_by_evidence(
    redis_settings: dict[str, Any], redis_url: str, evidence: str
) -> None:
    issued = Issued()
    writer = fresh_history()
    before = await issued.append(writer, 3)
    snapshot = Snapshot(writer, redis_url)
    lost = await issued.append(writer, 2)  # seq 4, 5: gone with the restore
    # The process that meets the restored topic, and what it saw of seq 4 and 5.
    history = writer if evidence == "appended-here" else RedisHistory(writer.conf)
    if evidence == "read-here":
        assert (await history.read(TOPIC, None)).position == lost[-1].position  # a poll
    elif evidence == "heads-here":
        assert (await history.heads([TOPIC]))[TOPIC] == lost[-1].position  # a tail check
    snapshot.restore()
    with sync_redis(redis_url) as client:
        assert client.hget(history.keys(TOPIC)[0], "seq") == b"3"

    if evidence == "cursor":
        # This process saw nothing; a reader brings seq 5's cursor.
        result = await history.read(TOPIC, lost[-1].position)
        assert (result.recovered, result.events) == (False, [])
        new_epoch = result.position.epoch
        assert result.position == Position(new_epoch, 0)
    elif evidence == "heads-here":
        head = (await history.heads([TOPIC]))[TOPIC]
        assert head is not None
        new_epoch = head.epoch
        assert head == Position(new_epoch, 0)
    else:
        (first,) = await issued.append(history, 1)
        new_epoch = first.epoch
        assert first.seq == 1
    assert new_epoch != before[0].epoch
    more = await issued.append(history, 2)
    assert {e.epoch for e in more} == {new_epoch}
    # Seq 4 and 5 of the old epoch were never issued again (Issued checks every id).
    for cursor in (before[-1].position, lost[-1].position):
        reply = await history.read(TOPIC, cursor)
        assert reply.recovered is False
        assert reply.events[0].position == Position(new_epoch, 1)
        issued.add(reply.events)


async def test_a_reader_at_the_restored_head_continues_when_nothing_was_lost(
    redis_settings: dict[str, Any], redis_url: str
) -> None:
    # The evidence must be real: a cursor at or below the head is no proof.
    history = fresh_history()
    before = await append_n(history, 3)
    snapshot = Snapshot(history, redis_url)
    await append_n(history, 2)
    snapshot.restore()
    other = fresh_history()
    result = await other.read(TOPIC, before[-1].position)
    assert (result.recovered, result.events, result.position) == (True, [], before[-1].position)
    result = await other.read(TOPIC, before[0].position)
    assert (seqs(result), result.recovered) == ([2, 3], True)


# -- what a process remembers -------------------------------------------------------------


def test_seen_keeps_the_highest_position_per_epoch_and_is_bounded() -> None:
    seen = _Seen(size=3)
    seen.note("a", Position(5, 10))
    seen.note("a", Position(5, 7))  # a late reply: lower, ignored
    assert seen.get("a") == Position(5, 10)
    seen.note("a", Position(9, 1))  # another epoch replaces it
    assert seen.get("a") == Position(9, 1)
    seen.note("x", BEFORE_FIRST)  # no epoch: nothing to remember
    assert seen.get("x") is None
    for topic in ("b", "c", "d"):
        seen.note(topic, Position(1, 1))
    assert seen.get("a") is None  # least recently noted: evicted
    assert [seen.get(t) for t in ("b", "c", "d")] == [Position(1, 1)] * 3
    assert SEEN_TOPICS == 10_000
    assert _Seen().size == SEEN_TOPICS


async def test_the_new_epoch_differs_even_when_the_drawn_one_is_the_old_one(
    redis_settings: dict[str, Any], redis_url: str
) -> None:
    history = fresh_history()
    (event,) = await append_n(history, 1)
    meta, log = history.keys(TOPIC)
    with sync_redis(redis_url) as client:
        client.hset(meta, "run", "f" * 40)
    # The script is handed the topic's own epoch as the "new" one (a 2**-47 chance).
    reply = await history._eval(_READ, (meta, log), event.epoch, "head", "", 0, -1, 0, 3600, "", 0)
    assert int(reply[0]) == event.epoch + 2
    assert reply[1:] == [0, 1]
