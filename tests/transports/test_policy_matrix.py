"""The policy is enforced the same way on every transport.

transport x identity x topic kind: allowed or denied exactly as the rules say. Denied is
HTTP 403 ``{"error": {"code": "forbidden", ...}}`` or a WebSocket error frame with code
"forbidden"; allowed is 200/201, ``subscribed`` or ``ack``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from rtdelivery.hub import get_hub
from tests.transports.conftest import (
    Identity,
    Response,
    get,
    open_sse,
    post_json,
    wait_until,
    ws_close,
    ws_connect,
    ws_request,
)

TOPICS = {
    # Private per-user topics: the owner, and staff through a list rule.
    "user.*": {"subscribe": ["owner", "staff"], "publish": ["owner", "staff"], "presence": True},
    "staff.*": {"subscribe": "staff", "publish": "staff", "presence": True},
    "public.*": {"subscribe": "anyone", "publish": "anyone", "presence": True},
}

IDENTITIES = ("anonymous", "other", "owner", "staff")

ALLOWED = {
    "user": {"owner", "staff"},
    "staff": {"staff"},
    "public": set(IDENTITIES),
}


def _http_verdict(response: Response, ok: int) -> bool:
    if response.status == 403:
        assert response.error_code() == "forbidden"
        return False
    assert response.status == ok, (response.status, response.body)
    return True


def _ws_verdict(frame: dict[str, Any], ok: str, topic: str) -> bool:
    if frame["op"] == "error":
        assert frame["code"] == "forbidden", frame
        assert frame["ref"] == "r1", frame
        assert frame["message"]
        return False
    assert frame["op"] == ok, frame
    assert (frame["topic"], frame["ref"]) == (topic, "r1"), frame
    return True


async def poll(app: Any, who: Identity, topic: str) -> bool:
    response = await get(app, "poll", {"topic": topic}, who)
    if _http_verdict(response, 200):
        assert response.json()["events"] == []
        return True
    return False


async def longpoll(app: Any, who: Identity, topic: str) -> bool:
    response = await get(app, "longpoll", {"topic": topic, "timeout": 0}, who)
    if _http_verdict(response, 200):
        assert response.json()["events"] == []
        return True
    return False


async def sse(app: Any, who: Identity, topic: str) -> bool:
    stream = await open_sse(app, {"topic": topic}, who)
    if stream.status == 403:
        assert Response(403, stream.headers, stream.body, []).error_code() == "forbidden"
        return False
    assert stream.status == 200
    opening = await stream.next_event()
    assert opening["event"] == "rt.open"
    await stream.close()
    return True


async def ws(app: Any, who: Identity, topic: str) -> bool:
    comm = await ws_connect(app, who)
    try:
        frame = await ws_request(comm, {"op": "subscribe", "topic": topic, "ref": "r1"})
        return _ws_verdict(frame, "subscribed", topic)
    finally:
        await ws_close(comm)


async def history(app: Any, who: Identity, topic: str) -> bool:
    return _http_verdict(await get(app, "history", {"topic": topic}, who), 200)


async def publish_http(app: Any, who: Identity, topic: str) -> bool:
    response = await post_json(app, {"topic": topic, "type": "note", "data": {"x": 1}}, who)
    if _http_verdict(response, 201):
        body = response.json()
        assert body["topic"] == topic
        assert body["seq"] == 1
        assert body["id"]
        return True
    return False


async def publish_ws(app: Any, who: Identity, topic: str) -> bool:
    comm = await ws_connect(app, who)
    try:
        frame = await ws_request(
            comm, {"op": "publish", "topic": topic, "data": {"x": 1}, "ref": "r1"}
        )
        if _ws_verdict(frame, "ack", topic):
            assert frame["seq"] == 1
            return True
        return False
    finally:
        await ws_close(comm)


async def presence(app: Any, who: Identity, topic: str) -> bool:
    response = await get(app, "presence", {"topic": topic}, who)
    if _http_verdict(response, 200):
        assert response.json()["topic"] == topic
        return True
    return False


TRANSPORTS: dict[str, Callable[[Any, Identity, str], Awaitable[bool]]] = {
    "poll": poll,
    "longpoll": longpoll,
    "sse": sse,
    "ws": ws,
    "history": history,
    "publish-http": publish_http,
    "publish-ws": publish_ws,
    "presence": presence,
}


@pytest.mark.parametrize("kind", sorted(ALLOWED))
@pytest.mark.parametrize("identity", IDENTITIES)
@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_policy_matrix(
    rt: Callable[..., dict[str, Any]],
    application: Any,
    people: dict[str, Identity],
    transport: str,
    identity: str,
    kind: str,
) -> None:
    rt(TOPICS=TOPICS)
    topic = f"user.{people['owner'].pk}" if kind == "user" else f"{kind}.room"
    allowed = await TRANSPORTS[transport](application, people[identity], topic)
    assert allowed == (identity in ALLOWED[kind]), (
        f"{transport}: {identity} on {topic} {'allowed' if allowed else 'denied'}"
    )
    # Whatever happened, nothing stays subscribed.
    hub = get_hub()
    await wait_until(lambda: hub.local_subscribers(topic) == 0, what="subscriptions released")


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_unconfigured_topic_denied_everywhere(
    rt: Callable[..., dict[str, Any]],
    application: Any,
    people: dict[str, Identity],
    transport: str,
) -> None:
    """Deny by default: no pattern matches, so even staff is refused."""
    rt(TOPICS=TOPICS)
    for identity in ("anonymous", "staff"):
        assert not await TRANSPORTS[transport](application, people[identity], "feed")


@pytest.mark.parametrize("transport", ["publish-http", "publish-ws"])
async def test_client_publish_false_denied_for_staff(
    rt: Callable[..., dict[str, Any]],
    application: Any,
    people: dict[str, Identity],
    transport: str,
) -> None:
    rt(TOPICS={"news.*": {"subscribe": "anyone", "publish": "staff", "client_publish": False}})
    assert not await TRANSPORTS[transport](application, people["staff"], "news.x")


async def test_other_users_topic_with_owner_suffix_trick(
    rt: Callable[..., dict[str, Any]], application: Any, people: dict[str, Identity]
) -> None:
    """``owner`` compares the whole last part: user.<pk>0 or user.<pk>.x are not the owner's."""
    rt(TOPICS={"user.**": {"subscribe": "owner"}})
    owner = people["owner"]
    assert await poll(application, owner, f"user.{owner.pk}")
    assert not await poll(application, owner, f"user.{owner.pk}0")
    assert not await poll(application, owner, f"user.{owner.pk}.x")
