"""Django settings for the end-to-end servers (Daphne/Uvicorn processes started by the tests).

The demo site's settings with the real Redis layer and Redis history, isolated by the key
prefix in ``RTD_PREFIX``; limits that the tests exercise come from ``RTD_*`` environment
variables so one module serves every e2e server.
"""

import json
import os

from demo_site.settings import *  # noqa: F403

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
RTD_PREFIX = os.environ.get("RTD_PREFIX", "rtde2e:default:")
# Scale-out faults (tests/faults): RTDELIVERY["REDIS"] (Sentinel, Cluster) and the layer's
# hosts (Sentinel, sharded) as JSON; REDIS_URL is used for neither when they are given.
RTD_REDIS = json.loads(os.environ["RTD_REDIS"]) if os.environ.get("RTD_REDIS") else None
RTD_LAYER_HOSTS = (
    json.loads(os.environ["RTD_LAYER_HOSTS"]) if os.environ.get("RTD_LAYER_HOSTS") else None
)


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.e2e.urls_e2e"
# No background publisher in the measured servers (thread counts, exact deliveries).
DEMO_SIMULATOR = False
# Nothing in the e2e paths needs the database; keep the demo's SQLite file out of it.
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # socket_timeout None: see DESIGN "Known traps" (redis-py 8.1 + channels-redis).
            "hosts": RTD_LAYER_HOSTS or [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": RTD_PREFIX + "layer",
        },
    }
}

RTDELIVERY = {
    "HISTORY_BACKEND": "redis",
    "REDIS_URL": None if RTD_REDIS else REDIS_URL,
    "REDIS": RTD_REDIS,
    "KEY_PREFIX": RTD_PREFIX,
    "TOPICS": {
        "e2e.*": {
            "subscribe": "anyone",
            "publish": "anyone",
            "client_publish": True,
            "history_size": _env_int("RTD_HISTORY_SIZE", 1000),
        },
        "e2esmall.*": {
            "subscribe": "anyone",
            "publish": "anyone",
            "client_publish": True,
            "history_size": 5,
        },
        # Presence on: the presence endpoint of the outage tests.
        "e2epres.*": {"subscribe": "anyone", "publish": "anyone", "presence": True},
        # Refused everywhere: for the policy checks of the bad-input tests.
        "e2edeny.*": {"subscribe": "nobody", "publish": "nobody"},
    },
    # Workaround knob for the thread-count test only (see test_burst_of_concurrent_streams):
    # redis-py 8.1's asyncio pool refuses a 101st concurrent command.
    "REDIS_OPTIONS": (
        {"max_connections": int(os.environ["RTD_REDIS_MAX_CONNECTIONS"])}
        if os.environ.get("RTD_REDIS_MAX_CONNECTIONS")
        else {}
    ),
    "PUBLISH_TOKENS": [t for t in os.environ.get("RTD_PUBLISH_TOKENS", "").split(",") if t],
    "SSE_HEARTBEAT": _env_float("RTD_SSE_HEARTBEAT", 1.0),
    "TAIL_CHECK_INTERVAL": 0.5,
    "LONGPOLL_TIMEOUT": 10.0,
    "WS_RATE": _env_float("RTD_WS_RATE", 1000.0),
    "WS_BURST": _env_int("RTD_WS_BURST", 1000),
    "MAX_REQUEST_BYTES": _env_int("RTD_MAX_REQUEST_BYTES", 128 * 1024),
    "WS_MAX_MESSAGE_BYTES": _env_int("RTD_WS_MAX_MESSAGE_BYTES", 128 * 1024),
    # Every test client is on 127.0.0.1, hundreds at once (test_threads): per-client
    # limits only where a test sets them (RTD_* = an integer/number, or unset: none).
    "MAX_CONNECTIONS_PER_IP": _env_int("RTD_MAX_CONNECTIONS_PER_IP", 0) or None,
    "MAX_CONNECTIONS_PER_USER": _env_int("RTD_MAX_CONNECTIONS_PER_USER", 0) or None,
    "PUBLISH_RATE": _env_float("RTD_PUBLISH_RATE", 0) or None,
    # Polling clients' presence (test_poll_presence_e2e sets it short).
    "PRESENCE_POLL_TTL": _env_int("RTD_PRESENCE_POLL_TTL", 30),
}

# Level and logger on every line: the outage tests count rtdelivery.outage's lines and
# look for per-request ERROR lines (django.request logs every 5xx of a view, under any
# server). Not propagated, so a server's own root handler (Daphne's) does not print them
# twice.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"named": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "named"}},
    "loggers": {
        "rtdelivery": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "django.request": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
}

# The access matrix (tests/e2e/test_access_matrix.py): users, sessions and Django REST
# framework tokens in a migrated SQLite file that the test's setup and every server share
# (an in-memory database is one per process); DRF's TokenAuthentication beside
# rtdelivery's own authenticators; topics for each kind of rule.
if os.environ.get("RTD_E2E_DB"):
    DATABASES = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["RTD_E2E_DB"]}
    }
    INSTALLED_APPS = [*INSTALLED_APPS, "rest_framework", "rest_framework.authtoken"]  # noqa: F405
    RTDELIVERY["AUTHENTICATORS"] = [
        "rest_framework.authentication.TokenAuthentication",
        "rtdelivery.authentication.token_authenticator",
        "rtdelivery.authentication.session_authenticator",
    ]
    RTDELIVERY["TOPICS"] = {
        **RTDELIVERY["TOPICS"],
        "acl.user.*": {
            "subscribe": ["owner", "staff"],
            "publish": ["owner", "staff"],
            "presence": True,
        },
        "acl.staff.*": {"subscribe": "staff", "publish": "staff", "presence": True},
        "acl.public.*": {"subscribe": "anyone", "publish": "anyone", "presence": True},
    }
