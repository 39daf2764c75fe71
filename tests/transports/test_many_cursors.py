"""Several cursors in one request (``cursor=`` repeated) on poll, long poll, SSE and history:
merged into one position, per topic the one its cursor gives; the fast path and the
views answer alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from django.core.asgi import get_asgi_application

from rtdelivery import apublish
from rtdelivery.conf import get_settings
from rtdelivery.core.cursors import MAX_CURSOR_TOPICS, Cursor, Position, encode_positions
from rtdelivery.hub import get_hub
from tests.transports.conftest import WAIT, get, open_sse, request, url, wait_until

TOPICS = {"t.*": {"subscribe": "anyone", "publish": "anyone"}}
BOTH = [("topic", "t.a"), ("topic", "t.b")]


@pytest.fixture
def conf(rt: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    def configure(**extra: Any) -> dict[str, Any]:
        return rt(**{"TOPICS": TOPICS, **extra})

    configure()
    return configure


def decode(cursor: str) -> Cursor:
    return Cursor.decode(cursor, get_settings().cursor_key)


async def ids(topic: str, n: int) -> list[str]:
    """Publish ``n`` events on ``topic``; their ids (each a cursor at that event)."""
    return [(await apublish(topic, {"topic": topic, "n": i})).id for i in range(1, n + 1)]


def got(body: dict[str, Any]) -> list[tuple[str, int]]:
    return [(e["topic"], e["seq"]) for e in body["events"]]


ENDPOINTS_MANY = ["poll", "longpoll"]


@pytest.mark.parametrize("endpoint", ENDPOINTS_MANY)
async def test_one_cursor_per_topic(conf: Any, application: Any, endpoint: str) -> None:
    a, b = await ids("t.a", 3), await ids("t.b", 3)
    # The client kept each topic's last event id: t.a at 1, t.b at 2.
    params = [*BOTH, ("cursor", a[0]), ("cursor", b[1]), ("timeout", 5)]
    response = await get(application, endpoint, params)
    assert response.status == 200, response.body
    body = response.json()
    assert got(body) == [("t.a", 2), ("t.a", 3), ("t.b", 3)]
    assert body["recovered"] is True
    cursor = decode(body["cursor"])
    assert (cursor["t.a"].seq, cursor["t.b"].seq) == (3, 3)
    # The order of the cursors does not matter.
    swapped = await get(application, endpoint, [*BOTH, ("cursor", b[1]), ("cursor", a[0])])
    assert swapped.body == response.body


async def test_longpoll_with_many_cursors_is_held_then_answered(
    conf: Any, application: Any
) -> None:
    a, b = await ids("t.a", 1), await ids("t.b", 1)
    params = [*BOTH, ("cursor", a[0]), ("cursor", b[0]), ("timeout", 30)]
    held = asyncio.ensure_future(get(application, "longpoll", params))
    hub = get_hub()
    await wait_until(
        lambda: hub.local_subscribers("t.a") == 1 and hub.local_subscribers("t.b") == 1,
        what="long poll subscribed",
    )
    assert not held.done()
    await apublish("t.b", {"n": 2})
    body = (await asyncio.wait_for(held, WAIT)).json()
    assert got(body) == [("t.b", 2)]
    assert (decode(body["cursor"])["t.a"].seq, decode(body["cursor"])["t.b"].seq) == (1, 2)


async def test_a_topic_without_a_cursor_starts_at_the_live_end(conf: Any, application: Any) -> None:
    a = await ids("t.a", 2)
    await ids("t.b", 2)
    body = (await get(application, "poll", [*BOTH, ("cursor", a[0]), ("cursor", "")])).json()
    assert got(body) == [("t.a", 2)]
    assert decode(body["cursor"])["t.b"].seq == 2


async def test_a_multi_topic_cursor_with_a_one_topic_cursor(conf: Any, application: Any) -> None:
    start = (await get(application, "poll", BOTH)).json()["cursor"]  # covers t.a and t.b
    await ids("t.a", 1)
    c = await ids("t.c", 2)
    params = [*BOTH, ("topic", "t.c"), ("cursor", start), ("cursor", c[0])]
    body = (await get(application, "poll", params)).json()
    assert got(body) == [("t.a", 1), ("t.c", 2)]


@pytest.mark.parametrize("endpoint", ["poll", "longpoll", "sse", "history"])
async def test_a_topic_in_two_cursors_is_refused_naming_it(
    conf: Any, application: Any, endpoint: str
) -> None:
    both = (await get(application, "poll", BOTH)).json()["cursor"]
    a = await ids("t.a", 1)
    params = [("topic", "t.a"), ("cursor", both), ("cursor", a[0])]
    response = await get(application, endpoint, params)
    assert response.status == 400
    error = response.json()["error"]
    assert (error["code"], error["topic"]) == ("invalid_cursor", "t.a")
    assert "'t.a'" in error["message"]
    if endpoint in ("poll", "history"):  # answered at once, not held or streamed
        # The same position twice is not ambiguous.
        same = [("topic", "t.a"), ("cursor", a[0]), ("cursor", a[0])]
        assert (await get(application, endpoint, same)).status == 200


@pytest.mark.parametrize("endpoint", ["poll", "longpoll", "sse", "history"])
async def test_every_cursor_is_checked(conf: Any, application: Any, endpoint: str) -> None:
    a = await ids("t.a", 1)
    for bad in ("garbage", a[0][:-2] + ("AA" if a[0][-2:] != "AA" else "BB")):
        response = await get(application, endpoint, [*BOTH[:1], ("cursor", a[0]), ("cursor", bad)])
        assert response.status == 400
        assert response.error_code() == "invalid_cursor"


async def test_at_most_max_topics_cursor_parameters(conf: Any, application: Any) -> None:
    conf(MAX_TOPICS=3)
    cursors = [(await apublish(f"t.{i}", i)).id for i in range(4)]
    topics = [("topic", f"t.{i}") for i in range(3)]
    ok = await get(application, "poll", [*topics, *(("cursor", c) for c in cursors[:3])])
    assert ok.status == 200, ok.body
    refused = await get(application, "poll", [*topics, *(("cursor", c) for c in cursors)])
    assert refused.status == 400
    assert refused.error_code() == "bad_request"
    assert "'cursor'" in refused.json()["error"]["message"]


async def test_at_most_256_topics_in_all(conf: Any, application: Any) -> None:
    key = get_settings().cursor_key
    per = MAX_CURSOR_TOPICS // 2 + 1  # two cursors: one topic too many in all
    halves = [
        encode_positions(((f"t.{h}x{i}", Position(1, 0)) for i in range(per)), key)
        for h in range(2)
    ]
    for half in halves:  # each alone is fine
        assert len(decode(half)) == per
    response = await get(application, "poll", [("topic", "t.a"), *(("cursor", h) for h in halves)])
    assert response.status == 400
    assert response.error_code() == "invalid_cursor"
    assert str(MAX_CURSOR_TOPICS) in response.json()["error"]["message"]


async def test_history_takes_its_topic_from_many_cursors(conf: Any, application: Any) -> None:
    a, b = await ids("t.a", 3), await ids("t.b", 1)
    params = [("topic", "t.a"), ("cursor", b[0]), ("cursor", a[1])]
    body = (await get(application, "history", params)).json()
    assert got(body) == [("t.a", 3)]


async def test_sse_merges_cursors_and_last_event_id_still_wins(conf: Any, application: Any) -> None:
    a, b = await ids("t.a", 2), await ids("t.b", 2)
    stream = await open_sse(application, [*BOTH, ("cursor", a[0]), ("cursor", b[1])])
    opening = await stream.next_event()
    assert opening["event"] == "rt.open"
    assert opening["json"]["recovered"] is True
    frame = await stream.next_event()
    assert (frame["json"]["topic"], frame["json"]["seq"]) == ("t.a", 2)
    await apublish("t.b", {"n": 3})
    frame = await stream.next_event()
    assert (frame["json"]["topic"], frame["json"]["seq"]) == ("t.b", 3)
    await stream.close()
    # Last-Event-ID (where the stream got to) wins over the cursors of the URL.
    stream = await open_sse(
        application,
        [*BOTH, ("cursor", a[0]), ("cursor", b[0])],
        headers=[(b"last-event-id", frame["id"].encode())],
    )
    opening = await stream.next_event()
    assert opening["json"]["cursor"] == frame["id"]
    await apublish("t.a", {"n": 3})
    assert (await stream.next_event())["json"]["seq"] == 3
    await stream.close()


async def test_fast_path_and_views_answer_alike(conf: Any, application: Any) -> None:
    """``longpoll`` and ``sse`` on rtdelivery_application's fast path and as Django views
    (plain get_asgi_application()): the same status and body, byte for byte."""
    plain = get_asgi_application()
    a, b = await ids("t.a", 2), await ids("t.b", 2)
    both = (await get(application, "poll", BOTH)).json()["cursor"]
    host = [(b"host", b"testserver")]
    for params in (
        [*BOTH, ("cursor", a[0]), ("cursor", b[0])],
        [*BOTH, ("cursor", both), ("cursor", a[0])],
        [*BOTH, ("cursor", a[0]), ("cursor", "garbage")],
    ):
        for endpoint in ("longpoll", "poll", "history", "sse"):
            query = [p for p in params if endpoint != "history" or p != ("topic", "t.b")]
            path = url(endpoint, [*query, ("timeout", 0)])
            if endpoint == "sse" and ("cursor", "garbage") not in params:
                continue  # a stream: compared below
            one = await request(application, "GET", path, headers=host)
            other = await request(plain, "GET", path, headers=host)
            assert (one.status, one.body) == (other.status, other.body), path
    frames = []
    for app in (application, plain):
        stream = await open_sse(app, [*BOTH, ("cursor", a[0]), ("cursor", b[0])])
        frames.append([await stream.next_event() for _ in range(3)])  # rt.open + 2
        await stream.close()
    assert frames[0] == frames[1]
    assert [(f["json"]["topic"], f["json"]["seq"]) for f in frames[0][1:]] == [
        ("t.a", 2),
        ("t.b", 2),
    ]
