"""The storage class against django-eventstream's own contract (its tests/test_storage.py:
empty channels, EventDoesNotExist carrying the current id, append then read back), and
send_event through it from sync and async code, on the real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django_eventstream import get_current_event_id, send_event
from django_eventstream.storage import EventDoesNotExist
from django_eventstream.utils import get_storage

from rtdelivery.contrib.eventstream import asend_event
from rtdelivery.contrib.eventstream.data import from_stored, sse_text, to_stored
from rtdelivery.contrib.eventstream.names import InvalidChannel
from rtdelivery.contrib.eventstream.storage import RTDeliveryStorage
from rtdelivery.core.errors import EventTooLarge, InvalidEvent
from rtdelivery.history import get_history

pytestmark = pytest.mark.usefixtures("es_settings")


def storage() -> RTDeliveryStorage:
    found = get_storage()
    assert isinstance(found, RTDeliveryStorage)
    return found


# -- django-eventstream's BaseStorageTest, case by case ---------------------------------


def test_empty_channel_id() -> None:
    assert storage().get_current_id("empty") == 0


def test_empty_channel_events() -> None:
    assert storage().get_events("empty", 0) == []


def test_empty_channel_error() -> None:
    with pytest.raises(EventDoesNotExist) as caught:
        storage().get_events("empty", 1)
    assert caught.value.current_id == 0


def test_append() -> None:
    channel, data = "channel", {"a": "b"}
    storage().append_event(channel, "message", data)
    assert storage().get_current_id(channel) == 1
    events = storage().get_events(channel, 0)
    assert len(events) == 1
    assert events[0].data == data
    assert storage().get_events(channel, 1) == []
    with pytest.raises(EventDoesNotExist) as caught:
        storage().get_events(channel, 2)
    assert caught.value.current_id == 1


# -- beyond it ----------------------------------------------------------------------------


def test_trimmed_events_do_not_exist(es_settings: dict[str, Any], settings: Any) -> None:
    settings.RTDELIVERY = {**es_settings, "TOPICS": {"es.*": {"history_size": 2}}}
    for n in range(5):
        storage().append_event("small", "message", str(n))
    assert [e.id for e in storage().get_events("small", 3)] == [4, 5]
    with pytest.raises(EventDoesNotExist) as caught:
        storage().get_events("small", 1)
    assert caught.value.current_id == 5
    assert [e.data for e in storage().get_events("small", 3, limit=1)] == ["3"]


@pytest.mark.parametrize(
    "data",
    [
        '{"a": 1}',
        "[1, 2]",
        "3",
        "null",
        '"text"',
        "plain text",
        "{'py': 'repr'}",
        '{"a":1}',
        {"x": [1]},
        7,
    ],
)
def test_data_reads_back_as_appended(data: Any) -> None:
    assert from_stored(to_stored(data)) == data
    event = storage().append_event("roundtrip", "message", data)
    assert event.data == data
    assert storage().get_events("roundtrip", event.id - 1)[0].data == data


@pytest.mark.usefixtures("closing")
async def test_send_event_stores_json_values_in_rtdelivery() -> None:
    """What send_event makes is stored as the JSON value (WebSocket and polling clients get
    an object), and written back on the bridge's stream as the same text."""
    await asyncio.to_thread(send_event, "room.1", "update", {"n": 1, "t": "é"})
    events = (await get_history().latest("es.room.1", 5)).events
    assert [(e.seq, e.type, e.data) for e in events] == [(1, "update", {"n": 1, "t": "é"})]
    assert sse_text(events[0].data_json) == '{"n": 1, "t": "\\u00e9"}'


@pytest.mark.usefixtures("closing")
async def test_send_event_from_async_code() -> None:
    send_event("async.ch", "message", {"n": 1})  # on the loop: waits on the publisher thread
    event = await asend_event("async.ch", "message", {"n": 2})
    assert event.id == 2
    head = (await get_history().heads(["es.async.ch"]))["es.async.ch"]
    assert head is not None
    assert head.seq == 2


def test_get_current_event_id() -> None:
    send_event("a b", "message", 1)
    send_event("a b", "message", 2)
    assert get_current_event_id(["a b", "none"]) in ("a%20b:2,none:0", "none:0,a%20b:2")


def test_refusals_store_nothing() -> None:
    with pytest.raises(InvalidChannel, match="at most 80 characters"):
        send_event("x" * 80, "message", 1)
    with pytest.raises(InvalidChannel):
        send_event("", "message", 1)
    with pytest.raises(InvalidEvent, match="event type"):
        send_event("ok", "two words", 1)
    with pytest.raises(EventTooLarge):
        send_event("ok", "message", "x" * 70_000)
    assert storage().get_current_id("ok") == 0
