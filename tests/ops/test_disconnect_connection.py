"""The live page's "disconnect one connection": a connection of a signed-in user is listed
in its process's snapshot (id, transport) and ends alone, with the usual access-ended
close (WebSocket 4004, SSE rt.close); the user's other connections stay."""

# ruff: noqa: F811  (the fixtures imported from tests/transports/conftest.py are used by name)
from __future__ import annotations

from typing import Any

import rtdelivery
from rtdelivery.ops import reporter
from tests.test_disconnect import TOPICS, _sse_until, _subscribe, _ws, _ws_until
from tests.transports.conftest import (  # noqa: F401  (fixtures used by name)
    Identity,
    _close_hub_after_test,
    application,
    open_sse,
    people,
    rt,
    ws_close,
    ws_closed_with,
    ws_recv,
)


async def test_one_connection_ends_alone(
    rt: Any, application: Any, people: dict[str, Identity]
) -> None:
    rt(TOPICS=TOPICS)
    owner = people["owner"]
    topic = f"user.{owner.pk}"
    first = await _ws(application, owner)
    await _subscribe(first, topic)
    second = await _ws(application, owner)
    await _subscribe(second, topic)
    stream = await open_sse(application, {"topic": topic}, owner)
    assert (await stream.next_event())["event"] == "rt.open"

    # The snapshot lists them (no session keys), with their ids and transports.
    listed = [c for c in reporter.snapshot()["user_connections"] if c["user"] == str(owner.pk)]
    assert sorted(c["transport"] for c in listed) == ["sse", "ws", "ws"]
    assert all(set(c) == {"id", "user", "transport", "topics", "opened"} for c in listed)
    assert all(c["topics"] == 1 for c in listed)
    ws_ids = [c["id"] for c in listed if c["transport"] == "ws"]
    (sse_id,) = [c["id"] for c in listed if c["transport"] == "sse"]

    # Addressed to another process: nothing ends here.
    await rtdelivery.adisconnect(owner.user, connection=sse_id, process="elsewhere:1")
    # The SSE stream, on this process: it alone ends, with rt.close.
    await rtdelivery.adisconnect(owner.user, connection=sse_id, process=reporter.process_id())
    await rtdelivery.apublish(topic, "after-sse")
    events, close = await _sse_until(stream, "rt.close")
    assert events == []  # ended before the event
    assert close["json"]["reason"] == "disconnected"
    for ws in (first, second):
        assert (await ws_recv(ws))["data"] == "after-sse"

    # One WebSocket (its id, no process given): 4004; the other one stays. (Listed by
    # age: the first socket's id comes first.)
    first_id = ws_ids[0]
    await rtdelivery.adisconnect(owner.user, connection=first_id)
    ended, kept = first, second
    _, error = await _ws_until(ended, "error")
    assert error["code"] == "disconnected"
    assert await ws_closed_with(ended) == 4004
    await rtdelivery.apublish(topic, "after-ws")
    assert (await ws_recv(kept))["data"] == "after-ws"
    remaining = [c for c in reporter.snapshot()["user_connections"] if c["user"] == str(owner.pk)]
    assert [c["transport"] for c in remaining] == ["ws"]
    assert remaining[0]["id"] != first_id
    await ws_close(kept)
