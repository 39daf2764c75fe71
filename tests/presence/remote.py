"""A separate process for the cross-process tests: joins a presence topic, then waits.

Run as ``python -m tests.presence.remote TOPIC`` with ``RT_PRESENCE_CONFIG`` holding
``{"RTDELIVERY": {...}, "LAYER": {...}}`` (the test's settings). Prints
``joined <connection id>`` once the entry is stored, then refreshes it until killed.

With ``--poll CLIENT`` it sees polling client ``CLIENT`` once instead (as a poll request
would), prints ``seen <connection id>`` and lives on (its timer sweeps the entry when due).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any


class RemoteUser:
    is_authenticated = True
    pk = 7

    def get_full_name(self) -> str:
        return "Remote Rita"

    def get_username(self) -> str:
        return "rita"


async def main(topic: str, poll: str | None = None) -> None:
    from rtdelivery.conf import get_settings
    from rtdelivery.presence import connection_id, get_presence, poll_connection_id

    if poll is not None:
        conn_id = poll_connection_id(poll, RemoteUser())
        ttl = get_settings().presence_poll_ttl
        await get_presence().seen([(topic, RemoteUser())], conn_id, ttl)
        print("seen", conn_id, flush=True)
        await asyncio.Event().wait()
    conn_id = connection_id()
    await get_presence().join(topic, conn_id, RemoteUser())
    print("joined", conn_id, flush=True)
    await asyncio.Event().wait()  # until killed; the refresh task keeps the entry alive


def configure() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.conf import settings

    django.setup()
    config: dict[str, Any] = json.loads(os.environ["RT_PRESENCE_CONFIG"])
    settings.RTDELIVERY = config["RTDELIVERY"]
    settings.CHANNEL_LAYERS = {"default": config["LAYER"]}


if __name__ == "__main__":
    configure()
    asyncio.run(main(sys.argv[1], sys.argv[3] if sys.argv[2:3] == ["--poll"] else None))
