"""Settings of the Daphne server the browser tests start (see tests/browser/conftest.py).

The demo site's settings with Redis forced for the channel layer and the history, every key
under the prefix in ``RTD_BROWSER_PREFIX`` (deleted after the session), DEBUG on so Django
serves rtdelivery.js, and ``harness.*`` topics anyone may use besides the demo site's own
topics (chat, feed, announcements, user notifications, dashboard: tests/browser/test_demo.py).
``RTD_BROWSER_DB`` names the SQLite file of the demo tests' server (in memory otherwise).
"""

import os

from demo_site.settings import *  # noqa: F403
from demo_site.settings import RTDELIVERY as _DEMO_RTDELIVERY

DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
_PREFIX = os.environ.get("RTD_BROWSER_PREFIX", "rtdbrowser:")
PUBLISH_TOKEN = os.environ.get("RTD_BROWSER_TOKEN", "browser-tests-token")

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("RTD_BROWSER_DB", ":memory:"),
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # socket_timeout None: see DESIGN "Known traps" (redis-py 8.1 + channels-redis).
            "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": _PREFIX + "layer",
        },
    }
}

_origins = os.environ.get("RTD_BROWSER_ALLOWED_ORIGINS", "")

RTDELIVERY = {
    "HISTORY_BACKEND": "redis",
    "REDIS_URL": REDIS_URL,
    "KEY_PREFIX": _PREFIX,
    "PUBLISH_TOKENS": [PUBLISH_TOKEN],
    # Only these origins may open WebSockets (the fallback test loads the page from another).
    "ALLOWED_ORIGINS": [o for o in _origins.split(",") if o] or None,
    "LONGPOLL_TIMEOUT": 10.0,
    "SSE_HEARTBEAT": 5.0,
    "TOPICS": {
        # A tiny history, so a client that was away loses its place (the reset test).
        "harness.small.*": {
            "subscribe": "anyone",
            "publish": "anyone",
            "presence": True,
            "history_size": 3,
        },
        "harness.*": {"subscribe": "anyone", "publish": "anyone", "presence": True},
        # The demo site's topics, as it declares them (its "demo.*" rule included).
        **_DEMO_RTDELIVERY["TOPICS"],
    },
}
