"""Idempotency keys in history: a repeated (topic, key) stores nothing and answers the first
append's event, atomically (one script in Redis, one lock in memory)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from rtdelivery.core.cursors import Position
from rtdelivery.history import get_history, reset_history
from rtdelivery.history import memory as memory_module
from rtdelivery.history.redis import RedisHistory
from rtdelivery.testing import areset
from tests.conftest import sync_redis

from .conftest import TOPIC, Configure, now_ms, seqs


async def test_a_repeated_key_stores_nothing_and_answers_the_first_event(
    configure: Configure,
) -> None:
    history = configure()
    first = await history.append(TOPIC, "chat", '{"n":1}', now_ms(), "k-1")
    assert first.duplicate is False
    assert first.seq == 1
    # Later, other data and type: still the first publish's answer.
    again = await history.append(TOPIC, "other", '{"n":2}', now_ms() + 5, "k-1")
    assert again.duplicate is True
    assert (again.topic, again.epoch, again.seq, again.id) == (
        first.topic,
        first.epoch,
        first.seq,
        first.id,
    )
    assert (again.time, again.type) == (first.time, "chat")
    assert again.data_json == '{"n":2}'  # this call's: the first's is not kept with the key
    result = await history.read(TOPIC, Position(first.epoch, 0))
    assert [(e.seq, e.data) for e in result.events] == [(1, {"n": 1})]
    assert (await history.heads([TOPIC]))[TOPIC] == Position(first.epoch, 1)


async def test_keys_are_per_topic_and_other_keys_publish(configure: Configure) -> None:
    history = configure()
    a1 = await history.append("t.a", "message", "1", now_ms(), "same")
    b1 = await history.append("t.b", "message", "1", now_ms(), "same")  # another topic
    a2 = await history.append("t.a", "message", "2", now_ms(), "other")
    a3 = await history.append("t.a", "message", "3", now_ms())  # no key: never a duplicate
    a4 = await history.append("t.a", "message", "3", now_ms())
    assert [e.duplicate for e in (a1, b1, a2, a3, a4)] == [False] * 5
    assert (a1.seq, b1.seq, a2.seq, a3.seq, a4.seq) == (1, 1, 2, 3, 4)
    assert (await history.append("t.b", "message", "x", now_ms(), "same")).seq == 1
    assert seqs(await history.read("t.a", Position(a1.epoch, 0))) == [1, 2, 3, 4]


async def test_a_duplicate_does_not_move_the_rollback_evidence(configure: Configure) -> None:
    # A duplicate answers an old position: it must not count as "seen" (Redis fencing).
    history = configure()
    await history.append(TOPIC, "message", "1", now_ms(), "k")
    await history.append(TOPIC, "message", "2", now_ms())
    dup = await history.append(TOPIC, "message", "1", now_ms(), "k")
    assert (dup.duplicate, dup.seq) == (True, 1)
    assert (await history.append(TOPIC, "message", "3", now_ms())).seq == 3


@pytest.mark.parametrize("backend", ["memory"])
async def test_memory_keys_expire_after_the_ttl(
    configure: Configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(memory_module, "_clock", lambda: clock[0])
    history = configure(IDEMPOTENCY_TTL=60)
    first = await history.append(TOPIC, "message", "1", now_ms(), "k")
    await history.append(TOPIC, "message", "x", now_ms(), "early")
    clock[0] += 59.5
    assert (await history.append(TOPIC, "message", "2", now_ms(), "k")).duplicate is True
    clock[0] += 1
    after = await history.append(TOPIC, "message", "3", now_ms(), "k")
    assert (after.duplicate, after.seq) == (False, first.seq + 2)
    # Expired keys are forgotten (oldest first), live ones kept.
    assert set(history._keys) == {(TOPIC, "k")}  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", ["memory"])
async def test_memory_keys_are_bounded_and_keep_no_data(
    configure: Configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(memory_module, "MAX_REMEMBERED_KEYS", 3)
    history = configure()
    big = '"' + "x" * 10_000 + '"'
    for n in range(4):
        await history.append(TOPIC, "message", big, now_ms(), f"k{n}")
    remembered = history._keys  # type: ignore[attr-defined]
    assert list(remembered) == [(TOPIC, "k1"), (TOPIC, "k2"), (TOPIC, "k3")]
    # What a key answers with: the first seq and id, not the first (large) data.
    assert all(event.data_json == "null" for _expiry, event in remembered.values())
    again = await history.append(TOPIC, "message", "1", now_ms(), "k3")
    assert (again.duplicate, again.seq) == (True, 4)
    forgotten = await history.append(TOPIC, "message", "1", now_ms(), "k0")
    assert (forgotten.duplicate, forgotten.seq) == (False, 5)


@pytest.mark.parametrize("backend", ["redis"])
async def test_redis_key_lives_idempotency_ttl_on_the_topic_slot(
    configure: Configure, redis_url: str, key_prefix: str
) -> None:
    history = configure(IDEMPOTENCY_TTL=1234)
    assert isinstance(history, RedisHistory)
    at = now_ms()
    event = await history.append(TOPIC, "chat", "1", at, "order-42:created")
    mark = f"{key_prefix}{{{TOPIC}}}:k:order-42:created"
    with sync_redis(redis_url) as client:
        assert 1234 - 10 <= client.ttl(mark) <= 1234
        value = client.get(mark).decode()
        epoch_s, seq_s, _publish_id, time_s, type_s = value.split("|")
        assert (epoch_s, seq_s, time_s, type_s) == (str(event.epoch), "1", str(at), "chat")
        # A duplicate leaves the window where it was (it does not extend it).
        client.expire(mark, 500)
    assert (await history.append(TOPIC, "chat", "2", now_ms(), "order-42:created")).duplicate
    with sync_redis(redis_url) as client:
        assert client.ttl(mark) <= 500
        # Once the key is gone (expired), the same key publishes again.
        client.delete(mark)
    again = await history.append(TOPIC, "chat", "3", now_ms(), "order-42:created")
    assert (again.duplicate, again.seq) == (False, 2)


@pytest.mark.parametrize("backend", ["redis"])
async def test_a_key_outlives_a_reset_topic(configure: Configure, redis_url: str) -> None:
    # The topic's record expired (TOPIC_IDLE_TTL) but the key did not: still the first
    # publish's answer, and nothing is created.
    history = configure()
    assert isinstance(history, RedisHistory)
    first = await history.append(TOPIC, "message", "1", now_ms(), "k")
    meta, log = history.keys(TOPIC)
    with sync_redis(redis_url) as client:
        client.delete(meta, log)
    dup = await history.append(TOPIC, "message", "2", now_ms(), "k")
    assert (dup.duplicate, dup.epoch, dup.seq, dup.id) == (True, first.epoch, 1, first.id)
    assert (await history.heads([TOPIC]))[TOPIC] is None


@pytest.mark.parametrize("backend", ["redis"])
def test_concurrent_publishes_with_one_key_store_one_event(
    configure: Configure, settings: Any
) -> None:
    # Several threads, each with its own event loop and Redis connections (as several
    # processes would be), release the same keyed append at once: one is stored.
    configure()
    threads, rounds = 8, 5
    barrier = threading.Barrier(threads)
    results: list[list[Any]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        async def main() -> None:
            history = get_history()
            try:
                for r in range(rounds):
                    await asyncio.get_running_loop().run_in_executor(None, barrier.wait, 10)
                    event = await history.append(TOPIC, "message", str(n), now_ms(), f"key-{r}")
                    results[n].append(event)
            finally:
                await areset()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(60)
    assert not errors, errors
    for r in range(rounds):
        answers = [results[n][r] for n in range(threads)]
        assert sum(not e.duplicate for e in answers) == 1
        assert {(e.epoch, e.seq, e.id) for e in answers} == {
            (answers[0].epoch, r + 1, answers[0].id)
        }

    async def stored() -> list[int]:
        reset_history()
        try:
            return seqs(await get_history().read(TOPIC, Position(answers[0].epoch, 0)))
        finally:
            await areset()

    assert asyncio.run(stored()) == list(range(1, rounds + 1))
