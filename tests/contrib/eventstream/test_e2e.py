"""The bridge on real Daphne and Uvicorn processes sharing the real Redis.

django_eventstream.send_event() from a view (sync and async), and from a separate process
that serves nothing, reaches a django-eventstream client on the bridge URL (its frames
parsed as its JavaScript client sees them) and rtdelivery's own clients on the channel's
topic (WebSocket, SSE, long polling, polling), on the other server too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote
from uuid import uuid4

import httpx
import pytest

from rtdelivery.contrib.eventstream.names import channel_to_topic
from tests.e2e.clients import make_client, open_raw
from tests.e2e.conftest import SERVER_KINDS, Servers, running_servers

from .esclient import ESClient, Frame, send_event_in_process

SETTINGS = {"DJANGO_SETTINGS_MODULE": "tests.contrib.eventstream.settings_es"}
TRANSPORTS = ("ws", "sse", "longpoll", "poll")


@pytest.fixture(scope="module", params=SERVER_KINDS)
def servers(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Servers]:
    log_dir = tmp_path_factory.mktemp("es-e2e-logs")
    with running_servers(request.param, redis_url, log_dir, extra_env=SETTINGS) as group:
        yield group


@pytest.fixture
def channel() -> str:
    return f"room:{uuid4().hex[:8]}/feed"  # not a valid topic as it is: mapped


def stream_url(servers: Servers, *channels: str, server: str = "a") -> str:
    base = (servers.a if server == "a" else servers.b).base_url
    query = "&".join(f"channel={quote(c)}" for c in channels)
    return f"{base}/events/multi/?{query}"


def opened(client: ESClient) -> Frame:
    assert client.status == 200, client.raw
    assert client.content_type == "text/event-stream"
    frame = client.next()
    assert frame.type == "stream-open", frame
    assert client.raw.startswith(b":" + b" " * 2048 + b"\n\n")
    return frame


def send(servers: Servers, how: str, channel: str, n: int) -> None:
    url = f"{servers.b.base_url}/send/{how}"
    response = httpx.get(url, params={"channel": channel, "n": str(n)}, trust_env=False)
    assert response.status_code == 200, response.text


def epochs_of(event_id: str) -> str:
    return event_id.rsplit(",*:", 1)[1]


def test_send_event_from_views_and_another_process(servers: Servers, channel: str) -> None:
    with ESClient(stream_url(servers, channel)) as client:
        opened(client)
        send(servers, "sync", channel, 1)
        send(servers, "async", channel, 2)
        out = send_event_in_process(servers.a.env, (channel, "message", {"n": "3"}))
        assert out.split() == ["ok", "3"]
        frames = [client.next() for _ in range(3)]
    assert [f.type for f in frames] == ["message"] * 3
    assert [f.json() for f in frames] == [{"n": "1"}, {"n": "2"}, {"n": "3"}]
    # Its data text is what send_event's json.dumps made.
    assert frames[0].data == '{"n": "1"}'
    ids = [f.last_event_id for f in frames]
    assert [i.split(",")[0] for i in ids] == [f"{quote(channel)}:{n}" for n in (1, 2, 3)]
    assert len({epochs_of(i) for i in ids}) == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_rtdelivery_transports_get_send_event(
    servers: Servers, channel: str, transport: str
) -> None:
    topic = channel_to_topic(channel)
    async with make_client(transport, servers.a.base_url, topic) as client:
        out = send_event_in_process(servers.a.env, *[(channel, "note", {"i": i}) for i in (1, 2)])
        assert out.split() == ["ok", "1", "ok", "2"]
        events = await client.next_events(2)
    assert [(e["topic"], e["seq"], e["type"], e["data"]) for e in events] == [
        (topic, 1, "note", {"i": 1}),
        (topic, 2, "note", {"i": 2}),
    ]


def test_resume_by_last_event_id_and_query(servers: Servers, channel: str) -> None:
    other = channel + "-2"
    with ESClient(stream_url(servers, channel, other)) as client:
        opened(client)
        send_event_in_process(servers.a.env, (channel, "message", 1), (other, "message", 2))
        first = [client.next() for _ in range(2)]
    last = first[-1].last_event_id
    assert sorted(last.split(",")[:2]) == sorted([f"{quote(channel)}:1", f"{quote(other)}:1"])
    send_event_in_process(servers.a.env, (channel, "message", 3), (other, "message", 4))
    # The browser's reconnection (Last-Event-ID), on the other server.
    with ESClient(stream_url(servers, channel, other, server="b"), last_event_id=last) as again:
        opened(again)
        resumed = [again.next() for _ in range(2)]
        assert sorted(f.json() for f in resumed) == [3, 4]
        send_event_in_process(servers.a.env, (channel, "message", 5))
        assert again.next().json() == 5
    # ReconnectingEventSource's (?lastEventId=), and get_current_event_id()'s ids (no epochs).
    url = stream_url(servers, channel, other) + "&lastEventId=" + quote(last)
    with ESClient(url) as third:
        opened(third)
        assert sorted(third.next().json() for _ in range(3)) == [3, 4, 5]
    plain = f"{quote(channel)}:2"  # values 1, 3, 5 are its seqs 1, 2, 3
    with ESClient(stream_url(servers, channel), last_event_id=plain) as fourth:
        opened(fourth)
        assert fourth.next().json() == 5


def test_lost_history_is_stream_reset(servers: Servers, channel: str) -> None:
    send_event_in_process(servers.a.env, (channel, "message", 1), (channel, "message", 2))
    # An id from a history this one is not (another epoch), and a seq never reached.
    for last in (f"{quote(channel)}:1,*:zzzz1", f"{quote(channel)}:99"):
        with ESClient(stream_url(servers, channel), last_event_id=last) as client:
            opened(client)
            reset = client.next()
            assert reset.type == "stream-reset"
            assert reset.json() == {"channels": [channel]}
            # The current history from its start: nothing is skipped silently.
            assert [client.next().json() for _ in range(2)] == [1, 2]
    # The bogus seq did not restart the topic's history.
    out = send_event_in_process(servers.a.env, (channel, "message", 3))
    assert out.split() == ["ok", "3"]


def test_url_kwargs_channels_and_format_channels(servers: Servers) -> None:
    obj = uuid4().int % 10**9
    base = servers.a.base_url
    with (
        ESClient(f"{base}/events/objects/{obj}/") as client,
        ESClient(f"{base}/events/test/") as fixed,
    ):
        opened(client)
        opened(fixed)
        send_event_in_process(servers.a.env, (f"object-{obj}", "message", "x"))
        frame = client.next()
        assert frame.json() == "x"
        assert frame.last_event_id.startswith(f"object-{obj}:1,")
        out = send_event_in_process(servers.a.env, ("test", "message", {"k": 1}))
        seq = int(out.split()[1])
        assert fixed.next().last_event_id.startswith(f"test:{seq},")


def test_keep_alive(servers: Servers, channel: str) -> None:
    # The e2e servers beat every second (RTD_SSE_HEARTBEAT).
    with ESClient(stream_url(servers, channel)) as client:
        opened(client)
        assert client.next(skip=()).type == "keep-alive"


def test_channel_manager_refuses_on_every_transport(servers: Servers) -> None:
    refused = f"denied-{uuid4().hex[:6]}"
    with ESClient(stream_url(servers, "open-one", refused)) as client:
        assert client.status == 200
        frame = client.next()
        assert client.ended()
    assert frame.type == "stream-error"
    assert frame.last_event_id == "error"
    assert frame.json() == {
        "condition": "forbidden",
        "text": f"Permission denied to channels: {refused}",
        "channels": [refused],
    }
    topic = channel_to_topic(refused)
    for path in ("poll", "longpoll", "sse"):
        response = httpx.get(
            f"{servers.a.base_url}/rt/{path}", params={"topic": topic}, trust_env=False
        )
        assert response.status_code == 403, (path, response.text)
    # A resume after a stream-error is refused as django-eventstream refuses it.
    with ESClient(stream_url(servers, "open-one"), last_event_id="error") as client:
        assert client.status == 400


async def test_channel_manager_refuses_websocket(servers: Servers) -> None:
    topic = channel_to_topic(f"denied-{uuid4().hex[:6]}")
    client = make_client("ws", servers.a.base_url, topic)
    with pytest.raises(AssertionError, match="forbidden"):
        await client.connect()
    await client.close()


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ("", "Invalid request: No channels specified."),
        ("channel=" + "x" * 90, "Invalid request: Expected a django-eventstream channel"),
        ("channel=a&lastEventId=nonsense", "Invalid request: Failed to parse Last-Event-ID"),
    ],
)
def test_bad_requests_are_stream_errors(servers: Servers, query: str, text: str) -> None:
    with ESClient(f"{servers.a.base_url}/events/multi/?{query}") as client:
        frame = client.next()
    assert frame.type == "stream-error"
    assert frame.json()["condition"] == "bad-request"
    assert frame.json()["text"].startswith(text)


def test_invalid_channel_is_refused_at_send_event(servers: Servers) -> None:
    out = send_event_in_process(servers.a.env, ("y" * 90, "message", 1), ("", "message", 1))
    lines = out.splitlines()
    assert lines[0].startswith("error InvalidChannel Expected a django-eventstream channel")
    assert lines[1].startswith("error InvalidChannel Expected a django-eventstream channel name")


def test_event_type_rtdelivery_refuses_is_an_error(servers: Servers, channel: str) -> None:
    out = send_event_in_process(servers.a.env, (channel, "has space", 1))
    assert out.startswith("error InvalidEvent Expected an event type"), out


def test_data_text_as_sent(servers: Servers, channel: str) -> None:
    """json_encode=False text and multi-line data come out as django-eventstream writes them."""
    with ESClient(stream_url(servers, channel)) as client:
        opened(client)
        send_event_in_process(servers.a.env, (channel, "message", "line one\nline two"))
        frame = client.next()
    assert json.loads(frame.data) == "line one\nline two"


STREAMS = 200
SLACK = 10  # threads allowed above the warmed-up baseline


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no Threads: line for pid {pid}")


async def test_bridge_streams_hold_no_thread(servers: Servers, channel: str) -> None:
    """STREAMS django-eventstream streams on one server: its thread count stays within SLACK
    of what it was before (django-eventstream's own view holds a thread per stream), and
    one send_event reaches every one of them."""
    server = servers.a
    path = "/events/multi/?channel=" + quote(channel)
    with ESClient(server.base_url + path) as warm:  # the loop, the hub, Redis: started
        opened(warm)
    before = threads(server.pid)
    async with open_raw(server.port, [path] * STREAMS) as conns:
        await asyncio.gather(*(raw.read_until(b"event: stream-open") for raw in conns))
        during = threads(server.pid)
        await asyncio.to_thread(
            send_event_in_process, server.env, (channel, "message", {"all": True})
        )
        await asyncio.gather(*(raw.read_until(b'data: {"all": true}') for raw in conns))
    print(f"{server.kind}: {STREAMS} bridge streams, threads {before} -> {during}")
    assert during <= before + SLACK, (before, during)


ORIGINAL = 40


async def test_django_eventstreams_own_view_holds_a_thread_each(servers: Servers) -> None:
    """The contrast, same server: django-eventstream's own view (mounted at /original/)."""
    server = servers.a
    before = threads(server.pid)
    async with open_raw(server.port, ["/original/"] * ORIGINAL) as conns:
        await asyncio.gather(*(raw.read_until(b"event: stream-open") for raw in conns))
        during = threads(server.pid)
    print(f"{server.kind}: {ORIGINAL} django-eventstream streams, threads {before} -> {during}")
    assert during >= before + ORIGINAL // 2, (before, during)
