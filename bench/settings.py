"""Django settings for the benchmark's server and publisher processes (env-driven)."""

from __future__ import annotations

import os

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("RTD_BENCH_PREFIX", "rtdbench:")

SECRET_KEY = os.environ.get("RTD_BENCH_SECRET", "rtdelivery-bench-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "channels",
    "rtdelivery",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
USE_TZ = True
ASGI_APPLICATION = "bench.asgi.application"
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"

_host = {"address": REDIS_URL, "socket_timeout": None}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [_host], "prefix": PREFIX + "layer", "capacity": 1000},
    },
    # The naive baseline: channels-redis defaults (capacity 100), one group_add per socket.
    "naive": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [_host], "prefix": PREFIX + "naive"},
    },
}
RTDELIVERY = {
    "HISTORY_BACKEND": "redis",
    "REDIS_URL": REDIS_URL,
    "KEY_PREFIX": PREFIX,
    "QUEUE_SIZE": 5000,
    "MAX_HELD_REQUESTS": 50000,
    "WS_RATE": 1000.0,
    "WS_BURST": 1000,
    # Every load generator connects and publishes from this one machine.
    "MAX_CONNECTIONS_PER_IP": None,
    "MAX_CONNECTIONS_PER_USER": None,
    "PUBLISH_RATE": None,
    "TOPICS": {"bench*": {"subscribe": "anyone", "publish": "anyone", "history_size": 5000}},
}
SILENCED_SYSTEM_CHECKS = ["rtdelivery.W001", "rtdelivery.W002"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
