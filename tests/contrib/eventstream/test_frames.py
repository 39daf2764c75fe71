"""The bridge's frames for what rtdelivery's hub queues: events, a reset mid-stream (events
lost), heartbeats, a topic ended by rtdelivery.unsubscribe(), an access end."""

from __future__ import annotations

import json
import tracemalloc

from rtdelivery import access
from rtdelivery.contrib.eventstream.stream import KEEP_ALIVE, _Stream, event_tail
from rtdelivery.core.cursors import Position
from rtdelivery.core.events import Event
from rtdelivery.subscriber import Notice, Reset, Subscriber

TOPICS = {"es.a": "a", "es.b_20c": "b c"}


def stream() -> _Stream:
    positions = {"es.a": Position(13, 4), "es.b_20c": Position(0, 0)}
    return _Stream(dict(TOPICS), positions, Subscriber(10))


def test_event_frame() -> None:
    event = Event("es.a", 5, 13, "update", '{"x":[1,"é"]}', 0, key=b"k" * 32)
    assert stream().frame(event) == (
        'event: update\nid: a:5,b%20c:0,*:d.0\ndata: {"x": [1, "\\u00e9"]}\n\n'
    )


def test_multiline_text_frame() -> None:
    event = Event("es.a", 5, 13, "message", '"one\\ntwo"', 0, key=b"k" * 32)
    assert stream().frame(event).endswith("\ndata: one\ndata: two\n\n")


def test_reset_mid_stream() -> None:
    s = stream()
    text = s.frame(Reset("es.b_20c", Position(15, 2)))
    assert text == 'event: stream-reset\nid: a:4,b%20c:2,*:d.f\ndata: {"channels": ["b c"]}\n\n'


def test_heartbeat_and_ends() -> None:
    s = stream()
    assert s.frame(Notice("heartbeat")) == KEEP_ALIVE == "event: keep-alive\ndata:\n\n"
    ended = s.frame(Notice(access.TOPIC_ENDED, data={"topic": "es.b_20c", "reason": "gone"}))
    assert ended == (
        "event: stream-error\nid: error\ndata: "
        '{"condition": "forbidden", "text": "Permission denied to channels: b c", '
        '"channels": ["b c"]}\n\n'
    )
    # Too slow, going away, access ended: the response ends; the browser resumes by its id.
    assert s.close_frame("too_slow") == ""
    assert s.frame(Notice("presence", data={})) == ""


def test_text_cache_is_bounded_in_bytes() -> None:
    # 200 distinct 60 KiB events through one stream: what stays cached is a few events'
    # text, not all of them (an unbounded-in-bytes cache kept ~24 MB here).
    s = stream()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for seq in range(200):
            data = json.dumps({"seq": seq, "text": "x" * 60_000})
            assert s.frame(Event("es.a", seq + 5, 13, "big", data, 0, key=b"k" * 32))
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert retained < 3_000_000, retained
    # Small events are still built once per process: the second stream reuses the text.
    small = Event("es.a", 999, 13, "small", '{"n": 1}', 0, key=b"k" * 32)
    tail = event_tail(small.data_json)
    assert event_tail(small.data_json) is tail
    assert stream().frame(small).endswith(tail)
