"""The bridge's view (runserver, WSGI, Django's test client: not the fast path) and the
TOPICS rule that asks the project's ChannelManager, in process on the real Redis."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.test import AsyncClient, Client
from django_eventstream import send_event

from rtdelivery import metrics
from rtdelivery.access import aunsubscribe
from rtdelivery.connections import get_redis
from rtdelivery.contrib.eventstream import aget_current_event_id, asend_event, get_current_event_id
from rtdelivery.contrib.eventstream.names import channel_to_topic
from rtdelivery.history import get_history
from rtdelivery.policy import allowed
from rtdelivery.tokens import connection_token

from . import project

pytestmark = [pytest.mark.urls("tests.contrib.eventstream.urls_es")]


@pytest.mark.django_db(transaction=True)
def test_view_streams_under_wsgi(es_settings: dict[str, Any]) -> None:
    response = Client().get("/events/test/")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    chunks = iter(response.streaming_content)
    first = next(chunks).decode()
    assert first == ":" + " " * 2048 + "\n\nevent: stream-open\ndata:\n\n"
    send_event("test", "message", {"hello": "wsgi"})
    text = next(chunks).decode()
    response.close()
    assert text.startswith("event: message\nid: test:1,*:")
    assert text.endswith('\ndata: {"hello": "wsgi"}\n\n')


@pytest.mark.usefixtures("closing")
async def test_view_streams_under_asgi_without_the_fast_path() -> None:
    response = await AsyncClient().get("/events/multi/?channel=one&channel=two")
    assert response.status_code == 200
    chunks = aiter(response.streaming_content)
    assert b"event: stream-open" in await anext(chunks)
    await asyncio.to_thread(send_event, "two", "message", [2])
    text = (await anext(chunks)).decode()
    assert text.startswith("event: message\nid: one:0,two:1,*:")
    assert text.endswith("\ndata: [2]\n\n")
    await response.streaming_content.aclose()  # type: ignore[union-attr]


def test_bad_request_answer(es_settings: dict[str, Any]) -> None:
    response = Client().get("/events/multi/")
    assert response.status_code == 200
    assert response.content == (
        b'event: stream-error\nid: error\ndata: {"condition": "bad-request", '
        b'"text": "Invalid request: No channels specified."}\n\n'
    )


@pytest.mark.django_db(transaction=True)
async def test_topics_rule_asks_the_channel_manager(es_settings: dict[str, Any]) -> None:
    alice = await User.objects.acreate(username="alice")
    bob = await User.objects.acreate(username="bob")
    topic = channel_to_topic("private.alice")
    assert await allowed(alice, topic, "subscribe")
    assert not await allowed(bob, topic, "subscribe")
    assert not await allowed(AnonymousUser(), topic, "subscribe")
    assert project.ASKED["private.alice"] is None  # anonymous, as django-eventstream says it
    assert await allowed(AnonymousUser(), channel_to_topic("open"), "subscribe")
    assert not await allowed(AnonymousUser(), channel_to_topic("denied.x"), "subscribe")
    assert not await allowed(alice, topic, "publish")
    assert not await allowed(alice, "es.a_41", "subscribe")  # not a channel's topic


async def _first_frames(url: str) -> tuple[bytes, Any]:
    response = await AsyncClient().get(url)
    assert response.status_code == 200
    if not response.streaming:  # a refusal: answered whole
        return response.content, response
    chunks = aiter(response.streaming_content)
    return await asyncio.wait_for(anext(chunks), 10), response


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("closing")
async def test_token_topic_limits_apply_to_the_bridge() -> None:
    # A token limited to es.open is anonymous on private.alice's topic, as on /rt/poll.
    alice = await User.objects.acreate(username=f"alice{uuid4().hex[:8]}")
    private = f"private.{alice.username}"
    before = metrics.value("refusals", transport="eventstream", code="token_topics")
    token = connection_token(alice, topics=["es.open"])
    first, response = await _first_frames(f"/events/multi/?channel={private}&access_token={token}")
    assert first.startswith(b"event: stream-error\nid: error\n")
    assert b'"condition": "forbidden"' in first
    assert private.encode() in first
    assert metrics.value("refusals", transport="eventstream", code="token_topics") == before + 1
    # The same limits covering the channel's topic: the stream opens.
    token = connection_token(alice, topics=[channel_to_topic(private)])
    first, response = await _first_frames(f"/events/multi/?channel={private}&access_token={token}")
    assert b"event: stream-open" in first
    await response.streaming_content.aclose()  # type: ignore[union-attr]


@pytest.mark.usefixtures("closing")
async def test_topics_rule_for_es_topics_applies_to_the_bridge(
    settings: Any, es_settings: dict[str, Any]
) -> None:
    settings.RTDELIVERY = {**es_settings, "TOPICS": {"es.*": {"subscribe": "nobody"}}}
    first, _ = await _first_frames("/events/multi/?channel=open")
    assert first.startswith(b"event: stream-error\nid: error\n")
    assert metrics.value("refusals", transport="eventstream", code="forbidden") >= 1
    # No pattern for es.*: the ChannelManager alone decides.
    settings.RTDELIVERY = {**es_settings, "TOPICS": {"other.*": {"subscribe": "anyone"}}}
    first, response = await _first_frames("/events/multi/?channel=open")
    assert b"event: stream-open" in first
    await response.streaming_content.aclose()  # type: ignore[union-attr]
    first, _ = await _first_frames("/events/multi/?channel=denied.x")
    assert first.startswith(b"event: stream-error\nid: error\n")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("closing")
async def test_unsubscribe_ends_the_stream_after_its_stream_error() -> None:
    alice = await User.objects.acreate(username=f"alice{uuid4().hex[:8]}")
    private = f"private.{alice.username}"
    token = connection_token(alice)
    first, response = await _first_frames(f"/events/multi/?channel={private}&access_token={token}")
    assert b"event: stream-open" in first
    chunks = aiter(response.streaming_content)
    await aunsubscribe(alice, channel_to_topic(private))
    error = await asyncio.wait_for(anext(chunks), 10)
    assert error.startswith(b"event: stream-error\nid: error\n")
    rest = [chunk async for chunk in _until_end(chunks)]
    assert b"".join(rest) == b""  # django-eventstream ends the response: no keep-alive


async def _until_end(chunks: Any) -> Any:
    while True:
        try:
            yield await asyncio.wait_for(anext(chunks), 10)
        except StopAsyncIteration:
            return


@pytest.mark.usefixtures("closing")
async def test_current_event_id_resumes_with_a_reset_after_lost_history() -> None:
    channel = f"lost-{uuid4().hex[:8]}"
    topic = channel_to_topic(channel)
    for n in range(3):
        await asend_event(channel, "message", n)
    current = await aget_current_event_id([channel, "never-sent"])
    assert current.startswith(f"{channel}:3,never-sent:0,*:")
    assert await asyncio.to_thread(get_current_event_id, [channel, "never-sent"]) == current
    # Redis loses the topic's history, and the new one passes seq 3 before the page
    # resumes from the id it rendered: a reset, then the new history, nothing skipped.
    await get_redis().delete(*get_history().keys(topic))  # type: ignore[attr-defined]
    for n in range(10, 15):
        await asend_event(channel, "message", n)
    response = await AsyncClient().get(
        f"/events/multi/?channel={channel}", headers={"last-event-id": current}
    )
    text = ""
    async for chunk in _until_end(aiter(response.streaming_content)):
        text += chunk.decode()
        if text.count("event: message") == 5:
            break
    await response.streaming_content.aclose()  # type: ignore[union-attr]
    assert f"event: stream-reset\nid: {channel}:0,*:" in text
    assert [line for line in text.splitlines() if line.startswith("data: ")][-5:] == [
        f"data: {n}" for n in range(10, 15)
    ]
