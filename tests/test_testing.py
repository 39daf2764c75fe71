"""rtdelivery.testing under pytest: each helper works, and each one can fail.

Django's runner counterparts are in tests/test_django_runner.py.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import unittest
import warnings
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from django.core.asgi import get_asgi_application
from django.test import AsyncClient, Client, SimpleTestCase
from django.urls import include, path

from rtdelivery import apublish, outage, publish
from rtdelivery.asgi import rtdelivery_application
from rtdelivery.conf import get_settings
from rtdelivery.core.cursors import Cursor, Position
from rtdelivery.hub import get_hub, running_hub_loops
from rtdelivery.testing import (
    AsyncEndpointClient,
    EndpointClient,
    HandshakeRefused,
    RTDeliveryTestMixin,
    SSEFrame,
    areset,
    capture_events,
    endpoint,
    isolated,
    live_server,
    live_ws_client,
    reset,
    sse_events,
    subscribe,
    wait_until,
    ws_client,
)
from rtdelivery.testing._streams import _Stream
from rtdelivery.testing.sse import SSEReader, _SSEParser

TOPICS = {
    "open.*": {"subscribe": "anyone", "publish": "anyone"},
    "members.*": {"subscribe": "authenticated", "publish": "authenticated"},
    "closed.*": {"subscribe": "nobody", "publish": "nobody"},
    "talk.*": {"subscribe": "anyone", "publish": "anyone", "presence": True},
}


TOKEN = "test-publish-token-0123456789"

#: A URLconf (this module) that mounts rtdelivery elsewhere than the tests' /rt/.
urlpatterns = [path("live/", include("rtdelivery.urls"))]


@pytest.fixture(autouse=True)
def _rt_settings(settings: Any) -> None:
    settings.RTDELIVERY = {"HISTORY_BACKEND": "memory", "TOPICS": TOPICS, "PUBLISH_TOKENS": [TOKEN]}


@pytest.fixture(autouse=True)
async def _isolation(_rt_settings: None) -> AsyncIterator[None]:
    # After the test, while its settings are still in place: close this loop's hub and
    # Redis client and forget the in-memory history.
    yield
    await areset()


#: WebSocket tests: Channels' AuthMiddlewareStack reads the session and user from the
#: database (in a worker thread), so they need database access.
ws_db = pytest.mark.django_db(transaction=True)


def capture_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "rtdelivery-capture"]


# -- subscribe() / EventRecorder -----------------------------------------------------------


async def test_recorder_hands_out_events_in_order_and_its_cursor_resumes() -> None:
    async with subscribe("open.feed") as rec:
        await apublish("open.feed", {"n": 1})
        await apublish("open.feed", {"n": 2}, type="update")
        first = await rec.next()
        (second,) = await rec.events(1)
        cursor = rec.cursor
    assert (first.seq, first.data, first.type) == (1, {"n": 1}, "message")
    assert (second.seq, second.data, second.type) == (2, {"n": 2}, "update")
    assert rec.received == [first, second]

    await apublish("open.feed", {"n": 3})  # while nobody watches
    async with subscribe("open.feed", since=cursor) as rec:
        assert rec.subscriptions["open.feed"].recovered is True
        assert (await rec.next()).data == {"n": 3}  # replayed from history
        await rec.assert_no_event()


async def test_recorder_without_since_starts_at_the_live_end() -> None:
    await apublish("open.feed", {"n": 1})
    async with subscribe("open.feed") as rec:
        await apublish("open.feed", {"n": 2})
        assert (await rec.next()).data == {"n": 2}


async def test_recorder_watches_several_topics() -> None:
    async with subscribe("open.a", "open.b") as rec:
        await apublish("open.b", "b1")
        await apublish("open.a", "a1")
        events = await rec.events(2)
        assert [(e.topic, e.data) for e in events] == [("open.b", "b1"), ("open.a", "a1")]
        await rec.unsubscribe("open.a")
        assert rec.topics == ["open.b"]
        await apublish("open.a", "a2")
        await rec.assert_no_event()


async def test_recorder_unsubscribes_on_exit() -> None:
    async with subscribe("open.feed"):
        assert get_hub().local_subscribers("open.feed") == 1
    assert get_hub().local_subscribers("open.feed") == 0


async def test_next_fails_clearly_when_nothing_is_published() -> None:
    async with subscribe("open.feed") as rec:
        await apublish("open.other", "not watched")
        with pytest.raises(AssertionError, match=r"No event on \['open.feed'\] within 0.1s"):
            await rec.next(timeout=0.1)


async def test_events_fails_when_fewer_arrive() -> None:
    async with subscribe("open.feed") as rec:
        await apublish("open.feed", "only one")
        with pytest.raises(AssertionError, match=r"Expected 2 events .* got 1: \[open.feed#1 "):
            await rec.events(2, timeout=0.2)


async def test_assert_no_event_fails_on_an_event() -> None:
    async with subscribe("open.feed") as rec:
        await rec.assert_no_event(timeout=0.05)
        await apublish("open.feed", {"n": 1})
        with pytest.raises(AssertionError, match=r"Expected no event .* got open.feed#1"):
            await rec.assert_no_event(timeout=0.05)


async def test_recorder_fails_as_a_slow_consumer() -> None:
    async with subscribe("open.feed", maxsize=2) as rec:
        for n in range(4):
            await apublish("open.feed", n)
        await asyncio.sleep(0.05)  # let the hub fan them out
        with pytest.raises(AssertionError, match="fell behind: more than 2 events"):
            await rec.next()


async def test_lost_events_fail_unless_allowed() -> None:
    async with subscribe("open.feed") as rec:
        position = rec.subscriptions["open.feed"].position
        rec.subscriber.reset("open.feed", Position(position.epoch, 5))  # as the hub would
        with pytest.raises(AssertionError, match=r"Events were lost on topic 'open\.feed'"):
            await rec.next(timeout=0.5)
    async with subscribe("open.feed", allow_resets=True) as rec:
        position = rec.subscriptions["open.feed"].position
        rec.subscriber.reset("open.feed", Position(position.epoch, 5))
        await rec.assert_no_event()
        assert [r.topic for r in rec.resets] == ["open.feed"]
        assert Cursor.decode(rec.cursor, get_settings().cursor_key)["open.feed"].seq == 5


async def test_reset_loses_history_so_an_old_cursor_is_not_recovered() -> None:
    async with subscribe("open.feed") as rec:
        await apublish("open.feed", 1)
        await rec.next()
        cursor = rec.cursor
    await areset()
    async with subscribe("open.feed", since=cursor) as rec:
        assert rec.subscriptions["open.feed"].recovered is False
        assert (await apublish("open.feed", 2)).seq == 1  # a new epoch starts at 1
        assert (await rec.next()).data == 2


# -- capture_events() (sync) ----------------------------------------------------------------


def test_capture_events_records_sync_publishes_and_tears_down() -> None:
    with capture_events("open.feed") as captured:
        assert len(running_hub_loops()) == 1  # publish() goes through the capture loop
        publish("open.feed", {"n": 1})
        publish("open.feed", {"n": 2})
        events = captured.wait(2)
        captured.assert_no_event()
    assert [e.data for e in events] == [{"n": 1}, {"n": 2}]
    assert captured.received == events
    assert running_hub_loops() == []
    assert capture_threads() == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gc.collect()  # an unclosed loop or client would warn here


def test_capture_events_wait_fails_when_nothing_is_published() -> None:
    with (
        capture_events("open.feed") as captured,
        pytest.raises(AssertionError, match=r"Expected 1 events on \['open.feed'\] within 0.1s"),
    ):
        captured.wait(1, timeout=0.1)
    assert capture_threads() == []


def test_capture_events_assert_no_event_fails_on_an_event() -> None:
    with capture_events("open.feed") as captured:
        publish("open.feed", "stray")
        with pytest.raises(AssertionError, match="Expected no event"):
            captured.assert_no_event(timeout=0.5)


def test_nested_captures_share_one_loop() -> None:
    with capture_events("open.a") as a, capture_events("open.b", "open.a") as b:
        assert len(capture_threads()) == 1
        publish("open.a", "x")
        assert a.next().data == "x"
        assert b.next().data == "x"
        assert b.subscriptions.keys() == {"open.b", "open.a"}
    assert capture_threads() == []


def test_capture_events_resumes_from_a_cursor() -> None:
    with capture_events("open.feed") as captured:
        publish("open.feed", 1)
        captured.wait(1)
        cursor = captured.cursor
    publish("open.feed", 2)
    with capture_events("open.feed", since=cursor) as captured:
        assert captured.next().data == 2


async def test_capture_events_refuses_async_code() -> None:
    with pytest.raises(RuntimeError, match="in async code use"), capture_events("open.feed"):
        pass  # pragma: no cover


@pytest.mark.parametrize("layer", ["redis", "pubsub"])
def test_capture_events_on_redis(
    layer: str,
    settings: Any,
    redis_settings: dict[str, Any],
    redis_layer_settings: Callable[[str], dict[str, Any]],
) -> None:
    settings.RTDELIVERY = {**redis_settings, "TOPICS": TOPICS}
    redis_layer_settings(layer)
    with capture_events("open.feed") as captured:
        publish("open.feed", {"layer": layer})
        assert captured.next().data == {"layer": layer}
    assert capture_threads() == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gc.collect()


# -- ws_client() (in-process) --------------------------------------------------------------


@ws_db
async def test_ws_client_subscribes_publishes_and_receives() -> None:
    async with ws_client() as ws, subscribe("open.room") as rec:
        subscribed = await ws.subscribe("open.room")
        assert subscribed["recovered"] is True
        ack = await ws.publish("open.room", {"text": "from ws"})
        await apublish("open.room", {"text": "from server"})
        first, second = await ws.receive_events(2)
        assert (first["seq"], first["data"]) == (ack["seq"], {"text": "from ws"})
        assert second["data"] == {"text": "from server"}
        assert [e.data["text"] for e in await rec.events(2)] == ["from ws", "from server"]
        assert (await ws.ping())["op"] == "pong"
        await ws.unsubscribe("open.room")
        await apublish("open.room", "unseen")
        await ws.assert_no_event()


@ws_db
async def test_presence_reaches_the_recorder_and_the_ws_client() -> None:
    async with subscribe("talk.room") as rec, ws_client() as ws:
        await ws.subscribe("talk.room")
        snapshot = await ws.presence("talk.room")
        assert snapshot["count"] == 1
        join = await ws.receive()  # the join broadcast, kept for receive()
        assert (join["op"], join["action"]) == ("presence", "join")
        await rec.assert_no_event()  # presence changes are not events
        assert [p["action"] for p in rec.presence] == ["join"]


@ws_db
async def test_ws_client_resumes_with_an_event_id() -> None:
    async with ws_client() as ws:
        await ws.subscribe("open.room")
        await apublish("open.room", 1)
        last = await ws.receive_event()
    await apublish("open.room", 2)
    async with ws_client() as ws:
        await ws.subscribe("open.room", since=last["id"])
        assert (await ws.receive_event())["data"] == 2


@ws_db
async def test_ws_client_requests_fail_with_the_servers_error() -> None:
    async with ws_client() as ws:
        with pytest.raises(AssertionError, match=r"subscribe closed.x was refused: forbidden"):
            await ws.subscribe("closed.x")
        with pytest.raises(AssertionError, match="subscribe bad topic! was refused"):
            await ws.subscribe("bad topic!")
        await ws.send("not json")
        error = await ws.receive()
        assert (error["op"], error["code"]) == ("error", "invalid_json")


@ws_db
async def test_ws_client_receive_event_fails_when_nothing_arrives() -> None:
    async with ws_client() as ws:
        await ws.subscribe("open.room")
        with pytest.raises(AssertionError, match=r"No event within 0\.1s"):
            await ws.receive_event(timeout=0.1)
        await apublish("open.room", "late")
        with pytest.raises(AssertionError, match="Expected no event"):
            await ws.assert_no_event(timeout=0.5)


@ws_db
async def test_ws_client_refused_origin_raises_handshake_refused() -> None:
    with pytest.raises(HandshakeRefused, match="refused with close code 1008") as info:
        async with ws_client(origin="http://evil.example"):
            pass  # pragma: no cover
    assert info.value.code == 1008


@ws_db
async def test_ws_client_sees_a_server_close() -> None:
    async with ws_client() as ws:
        await ws.send("x" * 2_000_000)  # over WS_MAX_MESSAGE_BYTES
        assert await ws.expect_close() == 1009
        with pytest.raises(AssertionError, match="closed with code 1009"):
            await ws.ping(timeout=0.1)


@pytest.fixture
def member_client(django_user_model: Any) -> Client:
    user = django_user_model.objects.create_user("member", password="pw")
    client = Client()
    client.force_login(user)
    return client


@ws_db
async def test_ws_client_connects_as_a_logged_in_user(member_client: Client) -> None:
    async with ws_client() as anonymous:
        with pytest.raises(AssertionError, match="forbidden"):
            await anonymous.subscribe("members.room")
    async with ws_client(cookies=member_client.cookies) as member:
        await member.subscribe("members.room")
        await member.publish("members.room", "hello")
        assert (await member.receive_event())["data"] == "hello"


# -- live_server() / live_ws_client() -------------------------------------------------------


@ws_db
async def test_live_ws_client_against_a_live_server() -> None:
    async with live_server() as server, live_ws_client(server.ws_url()) as ws:
        await ws.subscribe("open.live")
        await apublish("open.live", {"n": 1})
        event = await ws.receive_event()
        assert (event["topic"], event["data"]) == ("open.live", {"n": 1})
        ack = await ws.publish("open.live", "from client")
        assert (await ws.receive_event())["seq"] == ack["seq"]
        with pytest.raises(AssertionError, match=r"No event within 0\.1s"):
            await ws.receive_event(timeout=0.1)


@ws_db
async def test_live_ws_client_refused_origin() -> None:
    async with live_server() as server:
        with pytest.raises(HandshakeRefused, match="HTTP 403") as info:
            async with live_ws_client(server.ws_url(), origin="http://evil.example"):
                pass  # pragma: no cover
    assert info.value.status == 403


async def test_live_ws_client_without_websockets_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "websockets.asyncio.client", None)
    with pytest.raises(ImportError, match="needs the 'websockets' package"):
        async with live_ws_client("ws://127.0.0.1:1/rt/ws"):
            pass  # pragma: no cover


# -- endpoint() / EndpointClient / AsyncEndpointClient ---------------------------------------


def test_endpoint_follows_the_urlconf(settings: Any) -> None:
    assert endpoint("poll") == "/rt/poll"
    assert endpoint("poll", topic=["a", "b"], cursor=None) == "/rt/poll?topic=a&topic=b"
    assert endpoint("history", base="/api/rt/", topic="t", limit=5) == (
        "/api/rt/history?topic=t&limit=5"
    )
    settings.ROOT_URLCONF = __name__
    assert endpoint("sse", topic="t") == "/live/sse?topic=t"
    with pytest.raises(AssertionError, match=r'Add path\("rt/", include\("rtdelivery.urls"\)\)'):
        endpoint("nowhere")


@pytest.mark.django_db
def test_endpoint_client_through_djangos_test_client(member_client: Client) -> None:
    anonymous, member = EndpointClient(Client()), EndpointClient(member_client)
    start = anonymous.poll("open.http")
    assert (start["events"], start["recovered"]) == ([], True)
    publish("open.http", {"n": 1})
    answer = anonymous.poll("open.http", start["cursor"])
    assert [e["data"] for e in answer["events"]] == [{"n": 1}]
    assert anonymous.last_response.headers["ETag"]
    assert anonymous.longpoll("open.http", answer["cursor"], timeout=0)["events"] == []

    assert member.publish("members.http", "hi")["seq"] == 1
    assert anonymous.publish("members.http", "server", token=TOKEN)["seq"] == 2
    with pytest.raises(
        AssertionError,
        match=r"Expected 201 from POST /rt/publish, got 403 \(forbidden: Not allowed",
    ):
        anonymous.publish("members.http", "anonymous")
    assert anonymous.history("members.http", expect=403)["error"]["code"] == "forbidden"
    history = member.history("members.http", limit=1)
    assert [e["data"] for e in history["events"]] == ["server"]
    assert anonymous.presence("talk.http")["count"] == 0


@ws_db
async def test_async_endpoint_client_through_djangos_async_client(member_client: Client) -> None:
    client = AsyncClient()
    client.cookies = member_client.cookies  # logged in as the member
    rt = AsyncEndpointClient(client)
    start = await rt.poll(["open.a", "members.b"])
    await apublish("members.b", 1)
    held = asyncio.ensure_future(rt.longpoll(["open.a", "members.b"], start["cursor"], timeout=5))
    answer = await asyncio.wait_for(held, 10)
    assert [(e["topic"], e["data"]) for e in answer["events"]] == [("members.b", 1)]
    ack = await rt.publish("members.b", 2, type="update")
    assert [e["seq"] for e in (await rt.history("members.b"))["events"]] == [1, ack["seq"]]
    with pytest.raises(AssertionError, match=r"got 400 \(presence_disabled: "):
        await rt.presence("open.a")


async def test_async_endpoint_client_in_process_and_over_a_live_server() -> None:
    application = rtdelivery_application(get_asgi_application())
    async with live_server(application) as server:
        for target in (application, server.url):
            rt = AsyncEndpointClient(target)
            start = await rt.poll("open.both")
            ack = await rt.publish("open.both", {"via": str(target)[:20]}, token=TOKEN)
            events = (await rt.poll("open.both", start["cursor"]))["events"]
            assert [e["seq"] for e in events] == [ack["seq"]]
        # The sync client over a real socket, from a thread: the server runs in this loop.
        sync = EndpointClient(server.url)
        assert (await asyncio.to_thread(sync.history, "open.both"))["events"][-1]["seq"] == 2


# -- sse_events() / SSEReader --------------------------------------------------------------


def test_sse_parser_follows_the_line_rules() -> None:
    parser = _SSEParser()
    chunks = [
        "retry: 2000\r",  # CRLF split over two chunks
        "\n\r\n: hb\n\n",
        "id: 1\nevent: rt.open\nda",
        'ta: {"a":\ndata: 1}\n\n',
        "data\n\n",
        "id: bad\0id\nretry: soon\ndata:x\r\r",
        "\n",
    ]
    frames = [frame for chunk in chunks for frame in parser.feed(chunk)]
    assert frames == [
        SSEFrame(retry=2000),
        SSEFrame(event="rt.open", id="1", data='{"a":\n1}'),
        SSEFrame(data=""),
        SSEFrame(data="x"),
    ]
    assert frames[1].json() == {"a": 1}
    assert parser.comments == ["hb"]


class _Chunks(_Stream):
    """A stream whose body is the given chunks."""

    def __init__(self, *chunks: bytes) -> None:
        self.status = 200
        self.headers = {"content-type": "text/event-stream"}
        self.chunks = self._body(chunks)

    @staticmethod
    async def _body(chunks: tuple[bytes, ...]) -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def aclose(self) -> None:
        pass


async def test_sse_reader_decodes_characters_split_over_chunks() -> None:
    body = 'data: {"text": "caf\u00e9"}\n\n'.encode()
    cut = body.index(b"\xa9")  # inside the two bytes of "\u00e9"
    reader = SSEReader(_Chunks(body[:cut], body[cut:]))
    assert await reader.receive_event() == {"text": "caf\u00e9"}
    await reader.expect_end()
    await reader.aclose()


async def test_sse_events_in_process_and_resume_from_last_event_id() -> None:
    async with sse_events(topics="open.sse") as sse:
        assert sse.headers["content-type"].startswith("text/event-stream")
        assert (await sse.receive()).retry is not None
        opened = await sse.expect("rt.open")
        assert opened.json()["recovered"] is True
        await apublish("open.sse", {"n": 1})
        event = await sse.receive_event()
        assert (event["seq"], event["data"]) == (1, {"n": 1})
        last = sse.last_event_id
    assert last == event["id"]  # one topic: the stream cursor is the event's id
    await apublish("open.sse", {"n": 2})
    async with sse_events(topics="open.sse", last_event_id=last) as sse:
        assert [e["data"] for e in await sse.receive_events(1)] == [{"n": 2}]
        await sse.assert_no_event()


async def test_sse_events_fail_clearly() -> None:
    async with sse_events(topics="open.sse") as sse:
        with pytest.raises(AssertionError, match=r"No SSE event within 0\.1s"):
            await sse.receive_event(timeout=0.1)
        with pytest.raises(AssertionError, match=r"No 'rt.reset' frame within 0\.1s"):
            await sse.expect("rt.reset", timeout=0.1)
        await apublish("open.sse", "late")
        with pytest.raises(AssertionError, match="Expected no SSE event"):
            await sse.assert_no_event(timeout=1)
    with pytest.raises(
        AssertionError,
        match=r"Expected 200 from GET /rt/sse\?topic=closed.x, got 403 \(forbidden: ",
    ):
        async with sse_events(topics="closed.x"):
            pass  # pragma: no cover
    async with sse_events(topics="closed.x", expect=403) as refused:
        assert (await refused.json())["error"]["code"] == "forbidden"


async def test_sse_events_over_a_live_server_at_the_urlconfs_prefix(settings: Any) -> None:
    settings.ROOT_URLCONF = __name__  # rtdelivery under /live/
    async with live_server() as server:
        url = server.url_for("sse")
        assert url == f"{server.url}/live/sse"
        async with sse_events(url, ["open.live", "talk.live"]) as sse:
            join = await sse.expect("rt.presence")
            assert join.json()["action"] == "join"
            await apublish("open.live", "hi")
            assert (await sse.receive_event())["data"] == "hi"
            hub = get_hub()
            assert hub.local_subscribers("open.live") == 1
        await wait_until(
            lambda: hub.local_subscribers("open.live") == 0, within=5, what="the stream released"
        )


# -- isolation ------------------------------------------------------------------------------


def test_isolated_resets_history() -> None:
    with isolated():
        assert publish("open.feed", 1).seq == 1
        assert publish("open.feed", 2).seq == 2
    with isolated():
        assert publish("open.feed", 3).seq == 1


async def test_async_isolated_closes_the_hub() -> None:
    async with isolated(), subscribe("open.feed"):
        hub = get_hub()
    assert hub.channel is not None
    async with isolated():
        assert hub.closed


def _provoke_outage() -> None:
    outage.record_failure(ConnectionError("Connection refused"), "history read")


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_reset_forgets_a_backend_outage(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """An outage one test provoked does not leak into the next: the backend is up again, and
    the next outage is logged at once (not swallowed by the previous one's rate limit)."""
    caplog.set_level("WARNING", logger="rtdelivery.outage")
    try:
        _provoke_outage()
        assert outage.is_down()
        if kind == "sync":
            await asyncio.to_thread(reset)  # as a sync test would, outside the loop
        else:
            await areset()
        assert not outage.is_down()
        assert outage.failures() == 0
        _provoke_outage()
        warnings_logged = [r for r in caplog.records if r.name == "rtdelivery.outage"]
        assert len(warnings_logged) == 2, [r.getMessage() for r in warnings_logged]
        assert "unavailable" in warnings_logged[1].getMessage()
    finally:
        outage.reset()


@pytest.fixture
def mixin_case() -> Any:
    seen: list[tuple[str, int]] = []

    class Case(RTDeliveryTestMixin, SimpleTestCase):
        def test_sync(self) -> None:
            seen.append(("sync", publish("open.feed", 1).seq))

        async def test_async(self) -> None:
            async with subscribe("open.feed") as rec:
                await apublish("open.feed", 1)
                seen.append(("async", (await rec.next()).seq))
                hub = get_hub()
            seen.append(("hub open", int(not hub.closed)))
            case.hub = hub  # type: ignore[attr-defined]

    case = Case
    Case.seen = seen  # type: ignore[attr-defined]
    return Case


def test_mixin_isolates_each_test_method(mixin_case: Any) -> None:
    assert getattr(mixin_case.test_sync, "_rtdelivery_isolated", False)
    assert asyncio.iscoroutinefunction(mixin_case.test_async)
    publish("open.feed", "before")  # seq 1: each test below must start again at 1
    for name in ("test_sync", "test_async", "test_sync"):
        result = unittest.TestResult()
        mixin_case(name)(result)  # as Django's runner does (async tests via async_to_sync)
        assert result.wasSuccessful(), result.errors + result.failures
    assert mixin_case.seen == [("sync", 1), ("async", 1), ("hub open", 1), ("sync", 1)]
    assert mixin_case.hub.closed  # closed inside the test's loop


def test_mixin_failures_still_fail() -> None:
    class Case(RTDeliveryTestMixin, SimpleTestCase):
        async def test_nothing_published(self) -> None:
            async with subscribe("open.feed") as rec:
                await rec.next(timeout=0.05)

    result = unittest.TestResult()
    Case("test_nothing_published")(result)
    assert len(result.failures) == 1
    assert "No event on ['open.feed'] within 0.05s" in result.failures[0][1]
