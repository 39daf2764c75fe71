"""The backplane's message schema: what one process sends, another decodes.

The field names are the wire format between processes (possibly of different versions
during a rolling deploy), so they are pinned here.
"""

from __future__ import annotations

from rtdelivery import backplane
from rtdelivery.backplane import PresenceChange
from rtdelivery.core.events import Event

KEY = b"k" * 32


def test_an_event_message_decodes_to_the_same_event() -> None:
    event = Event("chat.lobby", 7, 12345, "message", '{"text":"hi"}', 1700000000000, key=KEY)
    message = backplane.event_message(event)
    assert message == {
        "type": "rtdelivery.event",
        "topic": "chat.lobby",
        "epoch": 12345,
        "seq": 7,
        "etype": "message",
        "data": '{"text":"hi"}',  # the JSON text, encoded once by the publisher
        "time": 1700000000000,
        "id": event.id,
    }
    decoded = backplane.decode(message, KEY)
    assert isinstance(decoded, Event)
    assert (decoded.topic, decoded.seq, decoded.epoch, decoded.type) == (
        "chat.lobby",
        7,
        12345,
        "message",
    )
    assert (decoded.data_json, decoded.time, decoded.id) == (event.data_json, event.time, event.id)
    assert decoded.raw == event.raw


def test_an_event_message_without_id_gets_it_from_the_cursor_key() -> None:
    # As the history's append script queues it (it cannot compute the HMAC).
    event = Event("chat.lobby", 7, 12345, "message", '{"text":"hi"}', 1700000000000, key=KEY)
    message = {k: v for k, v in backplane.event_message(event).items() if k != "id"}
    decoded = backplane.decode(message, KEY)
    assert isinstance(decoded, Event)
    assert (decoded.id, decoded.raw) == (event.id, event.raw)
    other = backplane.decode(message, b"o" * 32)
    assert isinstance(other, Event)
    assert other.id != event.id  # made with the key given


def test_a_presence_message_decodes_to_a_presence_change() -> None:
    user = {"id": "4", "name": "Ada"}
    message = backplane.presence_message("room.1", "join", "123.4", user, time_ms=5)
    assert message == {
        "type": "rtdelivery.presence",
        "topic": "room.1",
        "data": {
            "topic": "room.1",
            "action": "join",
            "user": user,
            "connection": "123.4",
            "time": 5,
        },
    }
    assert backplane.decode(message, KEY) == PresenceChange("room.1", message["data"])


def test_other_messages_are_ignored() -> None:
    assert backplane.decode({"type": "chat.message", "text": "not ours"}, KEY) is None
    assert backplane.decode({}, KEY) is None


def test_group_names() -> None:
    assert backplane.group_name("chat.lobby") == "rtdelivery.chat.lobby"
