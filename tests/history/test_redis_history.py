"""The Redis history backend: atomic seqs across processes, epochs when Redis loses its
data, key layout, script cache loss, and Redis going away and coming back.

Tests that flush, restart or stop Redis use a private redis-server (``redis_server``),
never the shared one.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from redis.client import Monitor
from redis.crc import key_slot

from rtdelivery import outage
from rtdelivery.core.cursors import Position
from rtdelivery.core.errors import HistoryUnavailable, Unavailable
from rtdelivery.history import get_history, reset_history
from rtdelivery.history.base import BEFORE_FIRST
from rtdelivery.history.redis import _APPEND, _READ, _SHAS, RedisHistory
from tests.conftest import sync_redis
from tests.history.conftest import (
    WAIT,
    RedisServer,
    append_n,
    assert_reset,
    now_ms,
    seqs,
)

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "chat.lobby"


def redis_history() -> RedisHistory:
    history = get_history()
    assert isinstance(history, RedisHistory)
    return history


# -- seq atomicity across processes ------------------------------------------------------

PROCESSES = 4
PER_PROCESS = 200
TASKS_PER_PROCESS = 2

# Each publisher process sets Django up with the test settings pointed at the test's
# Redis and key prefix, connects, says "ready", waits for "go" on stdin, appends its
# events from TASKS_PER_PROCESS concurrent tasks and prints what it was given.
PUBLISHER = """
import asyncio, json, os, sys, time

import django

django.setup()
from django.test import override_settings

override_settings(RTDELIVERY=json.loads(os.environ["RTD_TEST_RTDELIVERY"])).enable()

from rtdelivery.connections import aclose_redis
from rtdelivery.history import get_history

TOPIC = os.environ["RTD_TEST_TOPIC"]
PER_PROCESS = int(os.environ["RTD_TEST_N"])
TASKS = int(os.environ["RTD_TEST_TASKS"])


async def publish(history, task):
    out = []
    for i in range(task, PER_PROCESS, TASKS):
        data = json.dumps({"pid": os.getpid(), "i": i})
        event = await history.append(TOPIC, "message", data, int(time.time() * 1000))
        out.append([i, event.epoch, event.seq])
    return out


async def main():
    history = get_history()
    await history.heads(["warm.up"] * TASKS)  # connected before the start signal
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit("no go")
    results = await asyncio.gather(*(publish(history, t) for t in range(TASKS)))
    await aclose_redis()
    print(json.dumps({"pid": os.getpid(), "appended": [r for rs in results for r in rs]}))


asyncio.run(main())
"""


def read_line(process: subprocess.Popen[bytes], deadline: float) -> bytes:
    """One line of the process's stdout, or fail at ``deadline``."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not selector.select(remaining):
            pytest.fail(f"publisher {process.pid} said nothing within {WAIT}s")
    return process.stdout.readline()


def run_publishers(rtdelivery: dict[str, Any]) -> list[dict[str, Any]]:
    """Start the publisher processes, release them together, return what each printed."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        "RTD_TEST_RTDELIVERY": json.dumps(rtdelivery),
        "RTD_TEST_TOPIC": TOPIC,
        "RTD_TEST_N": str(PER_PROCESS),
        "RTD_TEST_TASKS": str(TASKS_PER_PROCESS),
    }
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(PROCESSES):
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-W", "error", "-c", PUBLISHER],
                    cwd=ROOT,
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
        deadline = time.monotonic() + 3 * WAIT  # Django start-up in 4 processes at once
        for process in processes:
            line = read_line(process, deadline)
            if line != b"ready\n":
                _, err = process.communicate(timeout=WAIT)
                pytest.fail(f"publisher {process.pid} did not start: {line!r}\n{err.decode()}")
        for process in processes:  # all connected: start them together
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            process.stdin.flush()
        outputs = []
        for process in processes:
            out, err = process.communicate(timeout=max(deadline - time.monotonic(), 1))
            assert process.returncode == 0, err.decode()
            outputs.append(json.loads(out))
        return outputs
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
            process.wait(timeout=WAIT)


async def test_seqs_are_atomic_across_publisher_processes(
    redis_settings: dict[str, Any], redis_url: str
) -> None:
    outputs = run_publishers(redis_settings)
    appended = [(o["pid"], i, epoch, seq) for o in outputs for i, epoch, seq in o["appended"]]
    assert len(appended) == PROCESSES * PER_PROCESS
    all_seqs = sorted(seq for *_, seq in appended)
    assert all_seqs == list(range(1, PROCESSES * PER_PROCESS + 1)), "duplicate or missing seq"
    epochs = {epoch for _, _, epoch, _ in appended}
    assert len(epochs) == 1
    (epoch,) = epochs
    # The publishers really overlapped (else this proves little): some process's seqs
    # are not one block (one that ran alone would get PER_PROCESS consecutive seqs).
    spans = [
        max(seq for *_, seq in o["appended"]) - min(seq for *_, seq in o["appended"]) + 1
        for o in outputs
    ]
    assert max(spans) > PER_PROCESS, f"the publishers ran one after the other: {spans}"

    # The stored log is contiguous, and each record is the event its publisher was told.
    history = redis_history()
    stored = await history.read(TOPIC, Position(epoch, 0))
    assert stored.recovered is True
    assert seqs(stored) == list(range(1, PROCESSES * PER_PROCESS + 1))
    given = {(pid, i): seq for pid, i, _, seq in appended}
    assert {(e.data["pid"], e.data["i"]): e.seq for e in stored.events} == given
    meta, _ = history.keys(TOPIC)
    with sync_redis(redis_url) as client:
        assert client.hget(meta, "seq") == str(PROCESSES * PER_PROCESS).encode()


# -- key layout (shared Redis, test prefix) ----------------------------------------------


async def test_key_layout_and_ttls(
    settings: Any, redis_settings: dict[str, Any], key_prefix: str, redis_url: str
) -> None:
    settings.RTDELIVERY = {**redis_settings, "HISTORY_MAX_AGE": 600, "TOPIC_IDLE_TTL": 3600}
    history = redis_history()
    at = now_ms()
    event = await history.append(TOPIC, "message", '{"a":"b|c"}', at)
    meta, log = f"{key_prefix}{{{TOPIC}}}:m", f"{key_prefix}{{{TOPIC}}}:l"
    assert history.keys(TOPIC) == (meta, log)
    with sync_redis(redis_url) as client:
        keys = set(client.scan_iter(match=key_prefix + "*"))
        # meta, log, and the append's short-lived publish-id key (idempotent retries)
        marks = {k for k in keys if k.startswith(f"{key_prefix}{{{TOPIC}}}:p:".encode())}
        assert keys - marks == {meta.encode(), log.encode()}
        assert len(marks) == 1
        (mark,) = marks
        # "<epoch>|<seq>|<publish id>|<time>|<type>"
        epoch_s, seq_s, publish_id, time_s, type_s = client.get(mark).decode().split("|")
        assert (epoch_s, seq_s, time_s, type_s) == (str(event.epoch), "1", str(at), "message")
        assert mark.endswith(f":p:{publish_id}".encode())
        assert 300 - WAIT <= client.ttl(mark) <= 300
        assert key_slot(mark) == key_slot(meta.encode())
        run_id = client.info("server")["run_id"]
        assert client.hgetall(meta) == {
            b"epoch": str(event.epoch).encode(),
            b"seq": b"1",
            b"run": run_id.encode(),  # the server that wrote it (rollback fencing)
        }
        assert client.lrange(log, 0, -1) == [f'1|{at}|message|{{"a":"b|c"}}'.encode()]
        assert 3600 - WAIT <= client.ttl(meta) <= 3600  # the idle TTL (> max age)
        assert 660 - WAIT <= client.ttl(log) <= 660  # max age + 60 s
    assert key_slot(meta.encode()) == key_slot(log.encode())  # one hash tag: one slot


async def test_a_retried_append_is_stored_once(redis_settings: dict[str, Any]) -> None:
    # Replays the same EVALSHA twice, as redis-py's retry does when a reply was lost.
    from rtdelivery.history import redis as redis_module

    history = redis_history()
    first = await history.append(TOPIC, "message", "1", now_ms())
    keys = (*history.keys(TOPIC), f"{history.prefix}{{{TOPIC}}}:p:fixed-id")
    # "<new epoch>|<publish id>|<size>|<min time>|<meta ttl>|<log ttl>|<mark ttl>|<seen>|<cutoff>"
    args = ("123|fixedid|1000|0|3600|660|300||0|0", f"{now_ms()}|message|2")
    a = await history._eval(redis_module._APPEND, keys, *args)
    b = await history._eval(redis_module._APPEND, keys, *args)
    assert int(a[1]) == int(b[1]) == first.seq + 1
    result = await history.read(TOPIC, Position(first.epoch, 0))
    assert seqs(result) == [1, 2]


async def test_another_instance_shares_the_log(redis_settings: dict[str, Any]) -> None:
    # What a second process sees: the same epoch, seqs and records.
    appended = await append_n(redis_history(), 3)
    reset_history()
    other = redis_history()
    result = await other.read(TOPIC, Position(appended[0].epoch, 1))
    assert result.recovered is True
    assert seqs(result) == [2, 3]
    assert (await other.append(TOPIC, "message", "4", now_ms())).position == Position(
        appended[0].epoch, 4
    )


async def test_lost_meta_key_means_a_new_epoch_and_an_empty_log(
    redis_settings: dict[str, Any], redis_url: str
) -> None:
    # The seq/epoch hash expired (TOPIC_IDLE_TTL) or was evicted while records remain:
    # they must not be served under a new epoch with clashing seqs.
    history = redis_history()
    old = await append_n(history, 3)
    meta, log = history.keys(TOPIC)
    with sync_redis(redis_url) as client:
        assert client.delete(meta) == 1
    new = await history.append(TOPIC, "message", '"new"', now_ms())
    assert new.seq == 1
    assert new.epoch != old[0].epoch
    assert_reset(await history.read(TOPIC, old[-1].position), new.epoch, [1])
    result = await history.read(TOPIC, Position(new.epoch, 0))
    assert [(e.seq, e.data) for e in result.events] == [(1, "new")]
    with sync_redis(redis_url) as client:
        assert client.llen(log) == 1


# -- Redis loses its data ----------------------------------------------------------------


@pytest.mark.parametrize("first_after", ["append", "read"])
@pytest.mark.parametrize("how", ["flushdb", "restart"])
async def test_lost_redis_data_means_a_new_epoch(
    private_settings: dict[str, Any], redis_server: RedisServer, how: str, first_after: str
) -> None:
    history = redis_history()
    before = await append_n(history, 3)
    old_epoch = before[0].epoch
    await append_n(history, 2, "other.topic")
    if how == "flushdb":
        with redis_server.client() as client:
            assert client.flushdb() is True
    else:
        pid = redis_server.process.pid if redis_server.process else None
        redis_server.restart()  # empty: no persistence
        assert redis_server.process is not None
        assert redis_server.process.pid != pid
    with redis_server.client() as client:
        assert client.dbsize() == 0

    if first_after == "read":
        # A client resumes before anyone publishes again: told, and (no record, so no
        # epoch yet) waiting before the first event of the next epoch, creating nothing.
        result = await history.read(TOPIC, before[-1].position)
        assert (result.recovered, result.events, result.position) == (False, [], BEFORE_FIRST)
        with redis_server.client() as client:
            assert client.dbsize() == 0
        (first,) = await append_n(history, 1)
        assert first.seq == 1
        after = await history.read(TOPIC, result.position)
        assert (seqs(after), after.recovered) == ([1], True)
    else:
        (first,) = await append_n(history, 1)
        assert first.seq == 1
    assert first.epoch != old_epoch
    head = Position(first.epoch, 1)
    for since in (0, 1, 3):  # old epoch, any seq: even one that exists again
        assert_reset(await history.read(TOPIC, Position(old_epoch, since)), first.epoch, [1])
    assert (await history.heads([TOPIC, "other.topic"])) == {TOPIC: head, "other.topic": None}
    result = await history.read(TOPIC, Position(first.epoch, 0))
    assert result.recovered is True
    assert seqs(result) == [1]


# -- key namespace and commands, watched with MONITOR -------------------------------------

KEYLESS_COMMANDS = {"CLIENT", "HELLO", "PING", "SELECT", "ECHO", "INFO", "SCRIPT"}
SCRIPT_COMMANDS = {"EVAL", "EVALSHA"}
# Commands whose first argument is their only key.
ONE_KEY_COMMANDS = {
    "HGET",
    "HMGET",
    "HSET",
    "HINCRBY",
    "EXPIRE",
    "DEL",
    "RPUSH",
    "LTRIM",
    "LINDEX",
    "LPOP",
    "LRANGE",
    "LLEN",
    "GET",  # the append's publish-id mark (idempotent retries)
    "SET",
}
FORBIDDEN_COMMANDS = {"KEYS", "SCAN", "FLUSHDB", "FLUSHALL", "RANDOMKEY"}


def next_monitored(monitor: Monitor) -> tuple[str, list[str]]:
    """The next command MONITOR reports: (client, arguments). Unlike
    ``Monitor.next_command`` this keeps argument boundaries (a script has spaces)."""
    response = monitor.connection.read_response()
    text = response.decode("utf-8", "replace") if isinstance(response, bytes) else str(response)
    match = Monitor.monitor_re.match(text.split(" ", 1)[1])
    assert match is not None, text
    _, client_info, command = match.groups()
    return client_info, Monitor.command_re.findall(command)


async def test_commands_use_only_namespaced_hash_tagged_keys_and_never_scan(
    private_settings: dict[str, Any], redis_server: RedisServer
) -> None:
    prefix = private_settings["KEY_PREFIX"]
    history = redis_history()
    marker = f"end-of-test-{uuid4().hex}"
    with redis_server.client() as client, client.monitor() as monitor:
        # MONITOR is on: run every operation, on new and existing topics.
        await history.append("room.a", "message", '"x"', now_ms())
        await history.append("room.a", "message", '"y"', now_ms())
        head = (await history.read("room.a", None)).position
        await history.read("room.a", Position(head.epoch, 0), limit=1)
        await history.read("room.a", Position(head.epoch + 2, 0))
        await history.latest("room.a", 5)
        await history.read("room.b", None)
        await history.heads(["room.a", "room.b", "room.c"])
        with redis_server.client() as other:
            other.echo(marker)
        seen: list[tuple[str, list[str]]] = []
        for _ in range(10_000):  # bounded: a few dozen commands expected
            client_info, args = next_monitored(monitor)
            if args == ["ECHO", marker]:
                break
            seen.append((client_info, args))
        else:
            pytest.fail("the end marker never showed up in MONITOR")

    names = [args[0].upper() for _, args in seen]
    assert not FORBIDDEN_COMMANDS & set(names), names
    assert SCRIPT_COMMANDS & set(names), names
    assert "HMGET" in names, names  # heads()
    assert any(info == "lua" for info, _ in seen), "script commands not monitored?"
    keys_by_topic: dict[str, set[str]] = {}
    for (_, args), name in zip(seen, names, strict=True):
        if name in KEYLESS_COMMANDS:
            continue
        if name in SCRIPT_COMMANDS:
            keys = args[3 : 3 + int(args[2])]
        elif name in ONE_KEY_COMMANDS:
            keys = args[1:2]
        else:
            pytest.fail(f"unexpected command {args!r}; extend the lists?")
        for key in keys:
            assert key.startswith(prefix + "{"), key
            topic, _, suffix = key[len(prefix) + 1 :].partition("}:")
            assert suffix in ("m", "l") or suffix.startswith("p:"), key
            if suffix.startswith("p:"):  # a publish-id mark: same tag, so same slot
                assert key_slot(key.encode()) == key_slot(history.keys(topic)[0].encode())
                continue
            keys_by_topic.setdefault(topic, set()).add(key)
    assert set(keys_by_topic) == {"room.a", "room.b", "room.c"}
    assert keys_by_topic["room.a"] == set(history.keys("room.a"))  # both kinds seen
    for topic, topic_keys in keys_by_topic.items():
        assert topic_keys <= set(history.keys(topic)), (topic, topic_keys)
        assert len({key_slot(k.encode()) for k in topic_keys}) == 1, topic_keys


WRITE_COMMANDS = {"HSET", "HINCRBY", "HDEL", "EXPIRE", "DEL", "RPUSH", "LTRIM", "LPOP", "SET"}


async def test_reads_of_unpublished_topics_write_nothing(
    private_settings: dict[str, Any], redis_server: RedisServer
) -> None:
    """Issue 9 case 3: polling thousands of topics nobody publishes must not fill Redis."""
    history = redis_history()
    marker = f"end-of-test-{uuid4().hex}"
    topics = [f"room.r{i}" for i in range(20)]
    with redis_server.client() as client, client.monitor() as monitor:
        for topic in topics:
            await history.read(topic, None)
            await history.read(topic, BEFORE_FIRST, limit=5)
            await history.read(topic, Position(12345, 3))
            await history.latest(topic, 10)
        await history.heads(topics)
        with redis_server.client() as other:
            other.echo(marker)
        seen: list[list[str]] = []
        for _ in range(10_000):  # bounded: about a hundred commands expected
            _, args = next_monitored(monitor)
            if args == ["ECHO", marker]:
                break
            seen.append(args)
        else:
            pytest.fail("the end marker never showed up in MONITOR")
    names = [args[0].upper() for args in seen]
    assert names.count("HMGET") == 4 * len(topics) + len(topics), names  # one look each
    assert not WRITE_COMMANDS & set(names), names
    assert "INFO" not in names  # the run_id is only asked about existing records
    with redis_server.client() as client:
        assert client.dbsize() == 0


# -- script cache loss -------------------------------------------------------------------


async def test_append_and_read_survive_script_flush(
    private_settings: dict[str, Any], redis_server: RedisServer
) -> None:
    history = redis_history()
    shas = [_SHAS[_APPEND], _SHAS[_READ]]
    first = (await append_n(history, 1))[0]
    await history.read(TOPIC, None)
    with redis_server.client() as client:
        assert client.script_exists(*shas) == [True, True]
        assert client.script_flush() is True
        assert client.script_exists(*shas) == [False, False]
    (second,) = await append_n(history, 1)
    assert second.position == Position(first.epoch, 2)
    result = await history.read(TOPIC, Position(first.epoch, 0))
    assert seqs(result) == [1, 2]
    with redis_server.client() as client:
        assert client.script_exists(*shas) == [True, True]  # cached again
        assert client.script_flush() is True
    # heads() pipelines its script: loaded again once, answered in full.
    heads = await history.heads([TOPIC, "other", TOPIC])
    assert heads == {TOPIC: second.position, "other": None}
    with redis_server.client() as client:
        assert client.script_exists(_SHAS[_READ]) == [True]


# -- Redis down --------------------------------------------------------------------------


async def test_redis_down_raises_unavailable_then_recovers(
    private_settings: dict[str, Any], redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    outage.reset()
    caplog.set_level("INFO", logger="rtdelivery.outage")
    history = redis_history()
    before = await append_n(history, 2)
    redis_server.stop()

    started = time.monotonic()
    position = before[-1].position
    results = await asyncio.wait_for(
        asyncio.gather(
            history.append(TOPIC, "message", '"lost"', now_ms()),
            history.read(TOPIC, None),
            history.read(TOPIC, position),
            history.latest(TOPIC, 10),
            history.heads([TOPIC]),
            return_exceptions=True,
        ),
        timeout=3 * WAIT,
    )
    elapsed = time.monotonic() - started
    for result in results:
        assert isinstance(result, Unavailable), repr(result)
        assert result.code == "unavailable"
        assert result.status == 503
        assert result.message == "The realtime backend is unavailable; retry later."
        assert 1 <= result.retry_after <= 5
    assert elapsed < 2 * WAIT
    # Which Redis failed, and how, is for the server's log (once), not for clients.
    (line,) = [r for r in caplog.records if r.name == "rtdelivery.outage"]
    assert line.levelname == "WARNING"
    assert f"127.0.0.1:{redis_server.port}" in line.getMessage()
    assert line.exc_info is None

    redis_server.start()  # back, empty
    (after,) = await append_n(history, 1)
    assert after.seq == 1
    assert after.epoch != before[0].epoch
    assert_reset(await history.read(TOPIC, position), after.epoch, [1])
    assert (await history.heads([TOPIC]))[TOPIC] == after.position


async def test_history_unavailable_when_redis_is_not_there_at_all(
    settings: Any, free_port: Callable[[], int]
) -> None:
    """``HistoryUnavailable``, the former name, still works."""
    port = free_port()  # nothing listens there
    settings.RTDELIVERY = {
        "HISTORY_BACKEND": "redis",
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "KEY_PREFIX": "rtdtest:nowhere:",
    }
    history = redis_history()
    with pytest.raises(HistoryUnavailable, match=r"^The realtime backend is unavailable") as info:
        await history.append(TOPIC, "message", "1", now_ms())
    assert info.type is Unavailable
    assert str(port) not in info.value.message
