"""Refusals about one topic name it: ``"topic"`` in the HTTP error object and in the
WebSocket error frame (forbidden, token_topics, invalid_topic, already_subscribed,
not_subscribed, presence_disabled, invalid_cursor); errors about no one topic don't."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from rtdelivery.core.topics import SHOWN_TOPIC_LENGTH
from rtdelivery.tokens import connection_token
from tests.transports.conftest import (
    Identity,
    get,
    open_sse,
    post_json,
    ws_close,
    ws_connect,
    ws_recv,
    ws_request,
)

TOPICS = {
    "t.*": {"subscribe": "anyone", "publish": "anyone"},
    "closed.*": {"subscribe": "nobody", "publish": "nobody"},
    "quiet.*": {"subscribe": "anyone", "publish": "anyone", "client_publish": False},
    "mine.*": {"subscribe": "authenticated", "publish": "authenticated"},
}
HELD = ["poll", "longpoll", "sse"]


@pytest.fixture
def conf(rt: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    def configure(**extra: Any) -> dict[str, Any]:
        return rt(**{"TOPICS": TOPICS, **extra})

    configure()
    return configure


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, (response.status, response.body)
    error: dict[str, Any] = response.json()["error"]
    assert error["message"], error
    return error


@pytest.mark.parametrize("endpoint", [*HELD, "history"])
async def test_forbidden_topic_is_named_and_still_403(
    conf: Any, application: Any, endpoint: str
) -> None:
    params = [("topic", "t.a"), ("topic", "closed.x"), ("timeout", 0)]
    if endpoint == "history":
        params = [("topic", "closed.x")]
    error = error_of(await get(application, endpoint, params), 403)
    assert error == {
        "code": "forbidden",
        "message": "Not allowed to subscribe on topic 'closed.x'.",
        "topic": "closed.x",
    }
    # The client drops the refused topic and asks again at once: the rest is served.
    if endpoint == "poll":
        assert (await get(application, endpoint, [("topic", "t.a")])).status == 200


@pytest.mark.parametrize("endpoint", [*HELD, "history", "presence"])
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("bad topic!", "bad topic!"),
        ("", ""),
        ("a..b", "a..b"),
        ("x" * 81, "x" * 81),
        ("y" * 5000, "y" * SHOWN_TOPIC_LENGTH + "…"),
        ("caf\u00e9", "caf\u00e9"),
    ],
)
async def test_invalid_topic_names_the_value_received(
    conf: Any, application: Any, endpoint: str, value: str, shown: str
) -> None:
    error = error_of(await get(application, endpoint, [("topic", value)]), 400)
    assert (error["code"], error["topic"]) == ("invalid_topic", shown)


@pytest.mark.parametrize("endpoint", [*HELD, "history", "presence"])
async def test_errors_about_no_one_topic_name_none(
    conf: Any, application: Any, endpoint: str
) -> None:
    missing = error_of(await get(application, endpoint, []), 400)
    assert missing["code"] == "invalid_topic"
    assert "topic" not in missing
    if endpoint == "presence":
        return  # no cursor there
    garbage = error_of(await get(application, endpoint, {"topic": "t.a", "cursor": "x"}), 400)
    assert garbage["code"] == "invalid_cursor"
    assert "topic" not in garbage


async def test_presence_disabled_is_named(conf: Any, application: Any) -> None:
    error = error_of(await get(application, "presence", {"topic": "t.a"}), 400)
    assert (error["code"], error["topic"]) == ("presence_disabled", "t.a")
    forbidden = error_of(await get(application, "presence", {"topic": "closed.a"}), 403)
    assert (forbidden["code"], forbidden["topic"]) == ("forbidden", "closed.a")


async def test_publish_refusals_are_named(conf: Any, application: Any) -> None:
    anon = Identity.make("anonymous")
    closed = error_of(await post_json(application, {"topic": "closed.a", "data": 1}, anon), 403)
    assert (closed["code"], closed["topic"]) == ("forbidden", "closed.a")
    quiet = error_of(await post_json(application, {"topic": "quiet.a", "data": 1}, anon), 403)
    assert (quiet["code"], quiet["topic"]) == ("forbidden", "quiet.a")
    bad = error_of(await post_json(application, {"topic": "no way", "data": 1}, anon), 400)
    assert (bad["code"], bad["topic"]) == ("invalid_topic", "no way")
    not_a_string = error_of(await post_json(application, {"topic": 5, "data": 1}, anon), 400)
    assert not_a_string["code"] == "invalid_topic"
    assert "topic" not in not_a_string


@pytest.mark.parametrize("endpoint", HELD)
async def test_token_topics_is_named(
    conf: Any, application: Any, people: dict[str, Identity], endpoint: str
) -> None:
    token = await sync_to_async(connection_token)(people["owner"].user, topics=["mine.a"])
    auth = [(b"authorization", f"Bearer {token}".encode())]
    if endpoint == "sse":
        stream = await open_sse(application, [("topic", "mine.a")], headers=auth)
        assert stream.status == 200
        await stream.close()
    else:
        allowed = await get(
            application, endpoint, [("topic", "mine.a"), ("timeout", 0)], headers=auth
        )
        assert allowed.status == 200
    params = [("topic", "mine.a"), ("topic", "mine.b"), ("timeout", 0)]
    error = error_of(await get(application, endpoint, params, headers=auth), 403)
    assert (error["code"], error["topic"]) == ("token_topics", "mine.b")


# -- WebSocket -------------------------------------------------------------------------------


async def test_websocket_error_frames_name_the_topic(conf: Any, application: Any) -> None:
    ws = await ws_connect(application)
    try:

        async def error(frame: dict[str, Any]) -> dict[str, Any]:
            reply = await ws_request(ws, {**frame, "ref": 1})
            assert reply["op"] == "error", reply
            return reply

        assert await error({"op": "subscribe", "topic": "closed.a"}) == {
            "op": "error",
            "code": "forbidden",
            "message": "Not allowed to subscribe on topic 'closed.a'.",
            "topic": "closed.a",
            "ref": 1,
        }
        bad = await error({"op": "subscribe", "topic": "bad topic"})
        assert (bad["code"], bad["topic"]) == ("invalid_topic", "bad topic")
        long = await error({"op": "subscribe", "topic": "z" * 1000})
        assert (long["code"], long["topic"]) == ("invalid_topic", "z" * SHOWN_TOPIC_LENGTH + "…")
        not_a_string = await error({"op": "subscribe", "topic": ["t.a"]})
        assert not_a_string["code"] == "invalid_topic"
        assert "topic" not in not_a_string
        cursor = await error({"op": "subscribe", "topic": "t.a", "since": "garbage"})
        assert (cursor["code"], cursor["topic"]) == ("invalid_cursor", "t.a")
        unsubscribed = await error({"op": "unsubscribe", "topic": "t.a"})
        assert (unsubscribed["code"], unsubscribed["topic"]) == ("not_subscribed", "t.a")
        presence = await error({"op": "presence", "topic": "t.a"})
        assert (presence["code"], presence["topic"]) == ("presence_disabled", "t.a")
        publish = await error({"op": "publish", "topic": "quiet.a", "data": 1})
        assert (publish["code"], publish["topic"]) == ("forbidden", "quiet.a")

        await ws.send_json_to({"op": "subscribe", "topic": "t.a"})
        assert (await ws_recv(ws))["op"] == "subscribed"
        again = await error({"op": "subscribe", "topic": "t.a"})
        assert (again["code"], again["topic"]) == ("already_subscribed", "t.a")
        # Errors about no one topic carry none.
        unknown = await error({"op": "dance"})
        assert unknown["code"] == "unknown_op"
        assert "topic" not in unknown
    finally:
        await ws_close(ws)
