"""Channel names <-> topics (reversible, never silently wrong) and the event ids."""

from __future__ import annotations

import pytest
from django_eventstream.utils import parse_last_event_id
from hypothesis import given
from hypothesis import strategies as st

from rtdelivery.contrib.eventstream.ids import BadEventId, make_id, parse_id
from rtdelivery.contrib.eventstream.names import (
    InvalidChannel,
    channel_to_topic,
    topic_to_channel,
)
from rtdelivery.core.cursors import Position
from rtdelivery.core.topics import validate_topic


@pytest.mark.parametrize(
    ("channel", "topic"),
    [
        ("room.1", "es.room.1"),
        ("test", "es.test"),
        ("a_b", "es.a_5Fb"),
        ("user:42/feed", "es.user_3A42_2Ffeed"),
        ("a..b", "es.a_2E_2Eb"),
        (".x.", "es._2Ex_2E"),
        ("hé", "es.h_C3_A9"),
    ],
)
def test_examples(channel: str, topic: str) -> None:
    assert channel_to_topic(channel) == topic
    assert topic_to_channel(topic) == channel


@given(st.text(min_size=1, max_size=25))
def test_any_channel_is_one_valid_topic_and_back(channel: str) -> None:
    surrogates = any("\ud800" <= c <= "\udfff" for c in channel)
    escaped = len("es.")
    for i, c in enumerate(channel):
        inner_dot = c == "." and 0 < i < len(channel) - 1 and "." not in channel[i - 1 : i + 2 : 2]
        kept = inner_dot or (c.isascii() and (c.isalnum() or c == "-"))
        escaped += 1 if kept else 3 * len(c.encode("utf-8", "surrogatepass"))
    if surrogates or escaped > 80:
        # Only lone surrogates (not text) and names too long once escaped are refused.
        with pytest.raises(InvalidChannel):
            channel_to_topic(channel)
        return
    topic = channel_to_topic(channel)
    assert validate_topic(topic) == topic
    assert topic_to_channel(topic) == channel


@pytest.mark.parametrize("bad", ["", "x" * 78, 42, None])
def test_unmappable_channels_are_refused(bad: object) -> None:
    with pytest.raises(InvalidChannel, match="Expected"):
        channel_to_topic(bad)


@pytest.mark.parametrize("topic", ["feed", "es.a_5", "es.a_41", "es._zz"])
def test_only_canonical_topics_are_channels(topic: str) -> None:
    with pytest.raises(InvalidChannel):
        topic_to_channel(topic)


def test_ids_are_django_eventstreams_and_carry_epochs() -> None:
    text = make_id([("a b", Position(13, 7)), ("c", Position(0, 0))])
    assert text == "a%20b:7,c:0,*:d.0"
    # django-eventstream's own parser reads it (and ignores the epochs).
    assert parse_last_event_id(text) == {"a%20b": "7", "c": "0", "*": "d.0"}
    parsed = parse_id(text)
    assert parsed.seqs == {"a b": 7, "c": 0}
    assert parsed.epochs == {"a b": 13, "c": 0}
    assert parse_id("a:3").epochs == {}


@pytest.mark.parametrize("bad", ["x", "a:b", "a:1:2", "a:-1", "a:1,"])
def test_bad_ids(bad: str) -> None:
    with pytest.raises(BadEventId):
        parse_id(bad)
