"""django-eventstream and the bridge as bench targets (``eventstream``, ``bridge``).

``eventstream`` is django-eventstream's own view on Daphne with what it recommends for
more than one process: ``RedisStorage`` for its events and ``EVENTSTREAM_REDIS`` for its
pub/sub between processes. ``bridge`` is the same URL shape on
``rtdelivery.contrib.eventstream.urls`` with the bridge's storage class. The publisher
calls ``django_eventstream.send_event()`` for both, as a project does.

    python -m bench.eventstream eventstream daphne 8123   # a server (the runner starts it)
"""

from __future__ import annotations

import os
import sys

TARGETS = ("eventstream", "bridge")
#: The URL path of each target's stream (``?channel=`` follows).
PATHS = {"eventstream": "/es/events/", "bridge": "/es/bridge/"}
ENV = "RTD_BENCH_ES"


def channel() -> str:
    """This run's channel: named after the run's key prefix, so runs never share one."""
    prefix = os.environ.get("RTD_BENCH_PREFIX", "rtdbench:")
    return "bench-" + prefix.strip(":").replace(":", "-")


def configure(target: str) -> None:
    """Point this process's Django at the target's settings (before django.setup())."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings_es"
    os.environ[ENV] = target


def forget_storage(redis_url: str) -> None:
    """Delete what django-eventstream's RedisStorage kept for this run's channel (its keys
    are not under the run's key prefix, which the runner deletes)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        name = channel()
        keys = [f"event_counter:{name}", *client.scan_iter(match=f"event:{name}:*", count=1000)]
        client.delete(*keys)
    finally:
        client.close()


def main(argv: list[str]) -> None:
    target, server, port = argv
    configure(target)
    try:
        serve(server, port)
    finally:
        if target == "eventstream":
            forget_storage(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


def serve(server: str, port: str) -> None:
    if server == "daphne":
        from daphne.cli import CommandLineInterface

        CommandLineInterface().run(
            ["-b", "127.0.0.1", "-p", port, "-v", "0", "bench.asgi:application"]
        )
    else:
        import uvicorn

        uvicorn.run(
            "bench.asgi:application",
            host="127.0.0.1",
            port=int(port),
            lifespan="off",
            log_level="warning",
            access_log=False,
            backlog=4096,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
