"""The history contract, on both backends (memory, and Redis on the shared test server).

A topic's log has contiguous seqs from 1 and a stable epoch; reading resumes exactly
after a position, or says ``recovered=False`` when it can't: older than what is retained
(count or age bound: no backlog, live end), a stale epoch (the current epoch from its
oldest retained event), a seq beyond the head (proof of a rollback: a new epoch). Reads
never create a topic: before its first append a reader is at ``BEFORE_FIRST``.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from rtdelivery.conf import get_settings
from rtdelivery.core.cursors import Position, event_id
from rtdelivery.history import History
from rtdelivery.history.base import BEFORE_FIRST
from tests.history.conftest import (
    OLD,
    TOPIC,
    Configure,
    append_n,
    assert_lost,
    assert_reset,
    now_ms,
    same_event,
    seqs,
    stale,
)

# -- seq and epoch ----------------------------------------------------------------------


async def test_seq_is_contiguous_from_one_and_epoch_is_stable(history: History) -> None:
    start = now_ms()
    events = await append_n(history, 5)
    assert seqs(events) == [1, 2, 3, 4, 5]
    epochs = {e.epoch for e in events}
    assert len(epochs) == 1
    (epoch,) = epochs
    assert epoch > 0
    key = get_settings().cursor_key
    for i, event in enumerate(events, start=1):
        assert event.topic == TOPIC
        assert event.type == "message"
        assert event.data == {"i": i}
        assert start <= event.time <= now_ms()
        assert event.position == Position(epoch, i)
        assert event.id == event_id(TOPIC, epoch, i, key)
    # Reads don't move or re-draw anything.
    assert (await history.read(TOPIC, None)).position == Position(epoch, 5)
    assert (await history.heads([TOPIC]))[TOPIC] == Position(epoch, 5)
    assert (await history.append(TOPIC, "message", "6", now_ms())).position == Position(epoch, 6)


async def test_topics_have_their_own_seq_and_epoch(history: History) -> None:
    a = await append_n(history, 3, "room.a")
    b = await append_n(history, 2, "room.b")
    a += await append_n(history, 1, "room.a")
    assert seqs(a) == [1, 2, 3, 4]
    assert seqs(b) == [1, 2]
    assert a[0].epoch != b[0].epoch
    assert (await history.read("room.b", None)).position == Position(b[0].epoch, 2)


async def test_concurrent_appends_in_one_process_never_share_a_seq(history: History) -> None:
    events = await asyncio.gather(
        *(history.append(TOPIC, "message", str(i), now_ms()) for i in range(100))
    )
    assert sorted(seqs(list(events))) == list(range(1, 101))
    assert len({e.epoch for e in events}) == 1
    stored = await history.read(TOPIC, Position(events[0].epoch, 0))
    assert seqs(stored) == list(range(1, 101))
    # Each stored record is the one its append returned.
    by_seq = {e.seq: e for e in events}
    assert all(same_event(e, by_seq[e.seq]) for e in stored.events)


# -- read -------------------------------------------------------------------------------


async def test_read_none_is_the_live_end_without_backlog(history: History) -> None:
    events = await append_n(history, 3)
    result = await history.read(TOPIC, None)
    assert result.events == []
    assert result.position == Position(events[0].epoch, 3)
    assert result.recovered is True
    assert result.more is False


async def test_live_end_of_an_unpublished_topic_stays_valid_after_the_first_publish(
    history: History,
) -> None:
    # A client that subscribes before anything was published is "before the first
    # event" (no epoch exists yet, and reading creates none) ...
    start = await history.read(TOPIC, None)
    assert (start.position, start.recovered, start.events) == (BEFORE_FIRST, True, [])
    again = await history.read(TOPIC, start.position, limit=10)
    assert (again.position, again.recovered, again.events) == (BEFORE_FIRST, True, [])
    # ... and continues exactly with the first event of the epoch that comes.
    (first,) = await append_n(history, 1)
    assert first.seq == 1
    result = await history.read(TOPIC, start.position)
    assert result.recovered is True
    assert seqs(result) == [1]
    assert result.position == first.position


async def test_before_first_pages_from_seq_one(history: History) -> None:
    epoch = (await append_n(history, 5))[0].epoch
    result = await history.read(TOPIC, BEFORE_FIRST, limit=2)
    assert (seqs(result), result.recovered, result.more) == ([1, 2], True, True)
    assert result.position == Position(epoch, 2)
    nothing = await history.read(TOPIC, BEFORE_FIRST, limit=0)
    assert (nothing.events, nothing.position, nothing.recovered) == ([], BEFORE_FIRST, True)
    assert nothing.more is True


async def test_before_first_after_seq_one_was_dropped_is_not_recovered(
    configure: Configure,
) -> None:
    history = configure(HISTORY_SIZE=3)
    epoch = (await append_n(history, 5))[0].epoch
    # Events 1 and 2 are gone: the reader gets what is left, and is told.
    assert_reset(await history.read(TOPIC, BEFORE_FIRST), epoch, [3, 4, 5])


async def test_epoch_zero_with_a_seq_is_not_a_position_this_history_gave_out(
    history: History,
) -> None:
    epoch = (await append_n(history, 3))[0].epoch
    assert_reset(await history.read(TOPIC, Position(0, 2)), epoch, [1, 2, 3])
    assert (await history.read("never.seen", Position(0, 2))).recovered is False


async def test_reads_of_an_unpublished_topic_keep_nothing(history: History) -> None:
    for _ in range(2):
        assert (await history.read(TOPIC, None)).position == BEFORE_FIRST
        assert (await history.read(TOPIC, BEFORE_FIRST, limit=5)).position == BEFORE_FIRST
        lost = await history.read(TOPIC, Position(12345, 3))
        assert (lost.position, lost.recovered) == (BEFORE_FIRST, False)
        latest = await history.latest(TOPIC, 10)
        assert (latest.events, latest.position, latest.recovered) == ([], BEFORE_FIRST, True)
        assert await history.heads([TOPIC]) == {TOPIC: None}
    # The first append starts the topic at seq 1.
    assert seqs(await append_n(history, 1)) == [1]


@pytest.mark.parametrize("since", [0, 1, 4, 6, 7])
async def test_read_since_returns_exactly_the_later_events_in_order(
    history: History, since: int
) -> None:
    appended = await append_n(history, 7)
    epoch = appended[0].epoch
    result = await history.read(TOPIC, Position(epoch, since))
    assert result.recovered is True
    assert seqs(result) == list(range(since + 1, 8))
    assert all(same_event(a, b) for a, b in zip(result.events, appended[since:], strict=True))
    assert result.position == Position(epoch, 7)
    assert result.more is False


async def test_limit_pages_through_the_backlog_with_more(history: History) -> None:
    appended = await append_n(history, 10)
    epoch = appended[0].epoch
    position = Position(epoch, 0)
    pages = []
    for _ in range(10):  # bounded: 4 pages expected
        result = await history.read(TOPIC, position, limit=3)
        assert result.recovered is True
        pages.append((seqs(result), result.more))
        position = result.position
        if not result.more:
            break
    assert pages == [
        ([1, 2, 3], True),
        ([4, 5, 6], True),
        ([7, 8, 9], True),
        ([10], False),
    ]
    assert position == Position(epoch, 10)


@pytest.mark.parametrize(
    ("since", "limit", "expected", "more"),
    [
        (0, 10, list(range(1, 11)), False),  # exactly what's left
        (0, 50, list(range(1, 11)), False),  # more than what's left
        (7, 1, [8], True),
        (9, 1, [10], False),
        (10, 5, [], False),  # at the head
        (0, 0, [], True),  # nothing asked, all left
        (4, 0, [], True),
    ],
)
async def test_limit_edges(
    history: History, since: int, limit: int, expected: list[int], more: bool
) -> None:
    epoch = (await append_n(history, 10))[0].epoch
    result = await history.read(TOPIC, Position(epoch, since), limit=limit)
    assert result.recovered is True
    assert seqs(result) == expected
    assert result.more is more
    assert result.position == Position(epoch, expected[-1] if expected else since if more else 10)


async def test_since_seq_beyond_the_head_starts_a_new_epoch(history: History) -> None:
    # A cursor beyond the head of the current epoch proves the history went back (a
    # restore): the events after the head would get seqs that were already given out.
    old = await append_n(history, 3)
    epoch = old[0].epoch
    result = await history.read(TOPIC, Position(epoch, 5), limit=10)
    assert result.recovered is False
    assert result.events == []
    new_epoch = result.position.epoch
    assert new_epoch != epoch
    assert result.position == Position(new_epoch, 0)
    assert await history.heads([TOPIC]) == {TOPIC: Position(new_epoch, 0)}
    (first,) = await append_n(history, 1)
    assert first.position == Position(new_epoch, 1)
    # Every old cursor is now of another epoch: the new one from its start.
    for since in (0, 3, 5, 1000):
        assert_reset(await history.read(TOPIC, Position(epoch, since)), new_epoch, [1])
    # And the new epoch continues normally.
    assert seqs(await history.read(TOPIC, result.position)) == [1]


async def test_stale_epoch_gets_the_current_epoch_from_its_start(history: History) -> None:
    epoch = (await append_n(history, 3))[0].epoch
    for seq in (0, 1, 3, 7):
        result = await history.read(TOPIC, Position(stale(epoch), seq), limit=10)
        assert_reset(result, epoch, [1, 2, 3])
    # Paged by limit, then continued exactly from the returned position.
    page = await history.read(TOPIC, Position(stale(epoch), 9), limit=2)
    assert_reset(page, epoch, [1, 2], more=True)
    rest = await history.read(TOPIC, page.position, limit=2)
    assert (seqs(rest), rest.recovered, rest.more) == ([3], True, False)
    # limit=0: nothing returned, positioned right before the epoch's first event.
    none = await history.read(TOPIC, Position(stale(epoch), 9), limit=0)
    assert_reset(none, epoch, [], more=True)
    assert none.position == Position(epoch, 0)


async def test_start_is_where_a_reader_resumes_before_receiving_the_events(
    history: History,
) -> None:
    epoch = (await append_n(history, 4))[0].epoch
    stale_read = await history.read(TOPIC, Position(stale(epoch), 9))
    assert stale_read.start == Position(epoch, 0)  # not after the backlog
    assert stale_read.position == Position(epoch, 4)
    again = await history.read(TOPIC, stale_read.start)
    assert (seqs(again), again.recovered) == ([1, 2, 3, 4], True)
    normal = await history.read(TOPIC, Position(epoch, 2))
    assert normal.start == Position(epoch, 2)
    at_head = await history.read(TOPIC, Position(epoch, 4))
    assert at_head.start == at_head.position == Position(epoch, 4)


async def test_stale_epoch_with_the_epoch_start_dropped(configure: Configure) -> None:
    history = configure(HISTORY_SIZE=3)
    epoch = (await append_n(history, 5))[0].epoch
    result = await history.read(TOPIC, Position(stale(epoch), 2), limit=2)
    assert_reset(result, epoch, [3, 4], more=True)
    assert result.first_seq == 3
    none = await history.read(TOPIC, Position(stale(epoch), 2), limit=0)
    assert none.position == Position(epoch, 2)  # the oldest retained - 1
    assert none.recovered is False
    rest = await history.read(TOPIC, none.position)
    assert (seqs(rest), rest.recovered) == ([3, 4, 5], True)


async def test_stale_epoch_of_a_topic_with_no_events_kept(configure: Configure) -> None:
    history = configure(HISTORY_SIZE=0)
    epoch = (await append_n(history, 3))[0].epoch
    result = await history.read(TOPIC, Position(stale(epoch), 1))
    assert_reset(result, epoch, [])
    assert result.position == Position(epoch, 3)  # nothing retained: the live end


async def test_unknown_topic_with_a_cursor_is_not_recovered(history: History) -> None:
    # A cursor naming a topic this history has no record of (its history was lost):
    # not recovered, and the reader waits before the first event of the next epoch.
    result = await history.read("never.seen", Position(12345, 3))
    assert result.recovered is False
    assert result.events == []
    assert result.position == BEFORE_FIRST
    (first,) = await append_n(history, 1, "never.seen")
    after = await history.read("never.seen", result.position)
    assert (seqs(after), after.recovered, after.position) == ([1], True, first.position)


# -- latest -----------------------------------------------------------------------------


async def test_latest_returns_the_last_n_oldest_first(history: History) -> None:
    appended = await append_n(history, 5)
    epoch = appended[0].epoch
    for n, expected in [(3, [3, 4, 5]), (1, [5]), (5, [1, 2, 3, 4, 5]), (50, [1, 2, 3, 4, 5])]:
        result = await history.latest(TOPIC, n)
        assert seqs(result) == expected, n
        assert all(same_event(e, appended[e.seq - 1]) for e in result.events)
        assert result.position == Position(epoch, 5)
        assert result.recovered is True
    assert (await history.latest(TOPIC, 0)).events == []


async def test_latest_of_an_unpublished_topic_is_empty_before_the_first(
    history: History,
) -> None:
    result = await history.latest(TOPIC, 10)
    assert (result.events, result.position, result.recovered) == ([], BEFORE_FIRST, True)
    (first,) = await append_n(history, 1)
    after = await history.read(TOPIC, result.position)
    assert (seqs(after), after.recovered, after.position) == ([1], True, first.position)


# -- bounds: count ----------------------------------------------------------------------


async def test_history_size_keeps_only_the_newest_events(configure: Configure) -> None:
    history = configure(HISTORY_SIZE=3)
    epoch = (await append_n(history, 5))[0].epoch
    head = Position(epoch, 5)
    assert seqs(await history.latest(TOPIC, 10)) == [3, 4, 5]
    # Resumable from the position just before the oldest retained event ...
    result = await history.read(TOPIC, Position(epoch, 2))
    assert result.recovered is True
    assert seqs(result) == [3, 4, 5]
    assert result.first_seq == 3
    # ... but not from before it: events 2 (or 1 and 2) are gone.
    for since in (0, 1):
        assert_lost(await history.read(TOPIC, Position(epoch, since)), head)
    # Appending more keeps shifting the window, seq keeps counting.
    await append_n(history, 2)
    assert seqs(await history.latest(TOPIC, 10)) == [5, 6, 7]
    assert_lost(await history.read(TOPIC, Position(epoch, 3)), Position(epoch, 7))


async def test_per_pattern_history_size_overrides_the_default(configure: Configure) -> None:
    history = configure(
        HISTORY_SIZE=4, TOPICS={"small.*": {"history_size": 2}, "*": {"subscribe": "anyone"}}
    )
    await append_n(history, 6, "small.room")
    await append_n(history, 6, "large.room")
    assert seqs(await history.latest("small.room", 10)) == [5, 6]
    assert seqs(await history.latest("large.room", 10)) == [3, 4, 5, 6]


@pytest.mark.parametrize("how", ["HISTORY_SIZE", "TOPICS"])
async def test_history_size_zero_keeps_no_events_but_seq_counts(
    configure: Configure, how: str
) -> None:
    if how == "HISTORY_SIZE":
        history = configure(HISTORY_SIZE=0)
    else:
        history = configure(TOPICS={"chat.*": {"history_size": 0}})
    appended = await append_n(history, 3)
    assert seqs(appended) == [1, 2, 3]
    epoch = appended[0].epoch
    assert {e.epoch for e in appended} == {epoch}
    head = Position(epoch, 3)
    assert (await history.latest(TOPIC, 10)).events == []
    assert (await history.read(TOPIC, None)).position == head
    assert (await history.heads([TOPIC]))[TOPIC] == head
    # At the head: nothing missed. Anywhere before: the event is not retained.
    at_head = await history.read(TOPIC, head)
    assert (at_head.recovered, at_head.events, at_head.position) == (True, [], head)
    assert_lost(await history.read(TOPIC, Position(epoch, 2)), head)


# -- bounds: age ------------------------------------------------------------------------


async def test_events_older_than_max_age_are_dropped(configure: Configure) -> None:
    history = configure(HISTORY_MAX_AGE=60)
    now = now_ms()
    old = await append_n(history, 3, at=now - OLD)
    fresh = await append_n(history, 2, at=now)
    epoch = old[0].epoch
    assert seqs(old + fresh) == [1, 2, 3, 4, 5]
    head = Position(epoch, 5)
    assert seqs(await history.latest(TOPIC, 10)) == [4, 5]
    result = await history.read(TOPIC, Position(epoch, 3))
    assert result.recovered is True
    assert seqs(result) == [4, 5]
    for since in (0, 2):
        assert_lost(await history.read(TOPIC, Position(epoch, since)), head)


async def test_expiry_by_age_happens_on_read_not_only_on_append(configure: Configure) -> None:
    history = configure(HISTORY_MAX_AGE=60)
    old = await append_n(history, 3, at=now_ms() - OLD)
    epoch = old[0].epoch
    head = Position(epoch, 3)
    # Nothing appended since: the reads themselves must drop the expired events.
    assert_lost(await history.read(TOPIC, Position(epoch, 0)), head)
    assert (await history.latest(TOPIC, 10)).events == []
    at_head = await history.read(TOPIC, head)
    assert (at_head.recovered, at_head.events, at_head.position) == (True, [], head)
    # The topic keeps its epoch and seq.
    assert (await append_n(history, 1))[0].position == Position(epoch, 4)


async def test_expiry_by_age_drops_a_long_backlog_at_once(configure: Configure) -> None:
    # More expired events than any fixed per-call budget: all of them go in one read.
    history = configure(HISTORY_SIZE=2000, HISTORY_MAX_AGE=60)
    old = await append_n(history, 1500, at=now_ms() - OLD)
    epoch = old[0].epoch
    assert (await history.latest(TOPIC, 2000)).events == []
    assert_lost(await history.read(TOPIC, Position(epoch, 1000)), Position(epoch, 1500))


async def test_events_within_max_age_are_kept(configure: Configure) -> None:
    history = configure(HISTORY_MAX_AGE=60)
    appended = await append_n(history, 3, at=now_ms() - 30_000)  # 30 s old
    result = await history.read(TOPIC, Position(appended[0].epoch, 0))
    assert result.recovered is True
    assert seqs(result) == [1, 2, 3]


async def test_per_pattern_max_age_overrides_the_default(configure: Configure) -> None:
    history = configure(TOPICS={"short.*": {"history_max_age": 60}})  # default: 24 h
    at = now_ms() - OLD
    short = await append_n(history, 2, "short.lived", at=at)
    long = await append_n(history, 2, "long.lived", at=at)
    assert (await history.latest("short.lived", 10)).events == []
    assert_lost(
        await history.read("short.lived", Position(short[0].epoch, 0)),
        Position(short[0].epoch, 2),
    )
    result = await history.read("long.lived", Position(long[0].epoch, 0))
    assert result.recovered is True
    assert seqs(result) == [1, 2]


# -- heads ------------------------------------------------------------------------------


async def test_heads_of_known_and_unknown_topics(history: History) -> None:
    a = await append_n(history, 3, "room.a")
    b = await append_n(history, 1, "room.b")
    topics = ["room.a", "never.published", "room.b"]
    heads = await history.heads(topics)
    assert heads == {
        "room.a": Position(a[0].epoch, 3),
        "never.published": None,
        "room.b": Position(b[0].epoch, 1),
    }
    assert list(heads) == topics
    assert await history.heads([]) == {}
    # heads() only looks: the unknown topic is still unknown afterwards.
    assert (await history.heads(iter(["never.published"]))) == {"never.published": None}


async def test_heads_follow_appends(history: History) -> None:
    assert (await history.heads([TOPIC]))[TOPIC] is None
    (first,) = await append_n(history, 1)
    assert (await history.heads([TOPIC]))[TOPIC] == Position(first.epoch, 1)
    await append_n(history, 4)
    assert (await history.heads([TOPIC]))[TOPIC] == Position(first.epoch, 5)


# -- records ----------------------------------------------------------------------------

AWKWARD_DATA = [
    {"text": "a|b||c|", "pipes": ["|", "||", "\\|", "|1|2|x|"]},
    "|",
    "1|2|message|{}",  # looks like a whole record
    {"unicode": "héllo ☃ 漢字 🎉", "rtl": "שלום", "zwj": "👩‍👩‍👧", "nul-ish": "\\u0000"},
    ["\n", "\r\n", "\t", '"quoted"', "'single'", "\\"],
    "",
    0,
    None,
]


@pytest.mark.parametrize("data", AWKWARD_DATA, ids=range(len(AWKWARD_DATA)))
async def test_records_with_pipes_and_unicode_survive(history: History, data: object) -> None:
    data_json = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    event_type = "x.y:z-1_"
    appended = await history.append(TOPIC, event_type, data_json, now_ms())
    (read,) = (await history.read(TOPIC, Position(appended.epoch, 0))).events
    (latest,) = (await history.latest(TOPIC, 1)).events
    for event in (read, latest):
        assert same_event(event, appended)
        assert event.data_json == data_json
        assert event.data == data
        assert json.loads(event.raw)["data"] == data
