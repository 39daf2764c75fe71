"""The bench settings plus django-eventstream: its own storage and pub/sub for the
``eventstream`` target, the bridge's storage for ``bridge`` (bench.eventstream)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from rtdelivery.contrib.eventstream import TOPICS as EVENTSTREAM_TOPICS

from .settings import *  # noqa: F403
from .settings import INSTALLED_APPS, REDIS_URL, RTDELIVERY

INSTALLED_APPS = [*INSTALLED_APPS, "django_eventstream"]
ROOT_URLCONF = "bench.urls_es"
RTDELIVERY = {
    **RTDELIVERY,
    "TOPICS": {
        **RTDELIVERY["TOPICS"],
        "es.*": {**EVENTSTREAM_TOPICS["es.*"], "history_size": 5000},
    },
}

if os.environ.get("RTD_BENCH_ES") == "eventstream":
    _url = urlsplit(REDIS_URL)
    _redis = {
        "host": _url.hostname or "127.0.0.1",
        "port": _url.port or 6379,
        "db": int((_url.path or "/0").lstrip("/") or 0),
    }
    # What django-eventstream's README recommends for several processes.
    EVENTSTREAM_STORAGE_CLASS = "django_eventstream.storage.RedisStorage"
    EVENTSTREAM_STORAGE_CONNECTION = _redis
    EVENTSTREAM_REDIS = _redis
else:
    EVENTSTREAM_STORAGE_CLASS = "rtdelivery.contrib.eventstream.storage.RTDeliveryStorage"
