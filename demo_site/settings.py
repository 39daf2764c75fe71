"""Settings for the rtdelivery demo site.

Embedded default: in-memory channel layer, in-memory history and SQLite (one process).
Set REDIS_URL (e.g. redis://127.0.0.1:6379/0) to use Redis for both instead.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

DEBUG = os.environ.get("DJANGO_DEBUG", "1").lower() in {"1", "true", "yes", "on"}
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-insecure-secret-key-change-me")
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rtdelivery",
    "demo_site.demo",
    "django_eventstream",  # its static ReconnectingEventSource, for the /eventstream/ page
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

ASGI_APPLICATION = "demo_site.asgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

REDIS_URL = os.environ.get("REDIS_URL", "")
DEMO_PUBLISH_TOKEN = os.environ.get("DEMO_PUBLISH_TOKEN", "demo-only-publish-token-change-me")

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # socket_timeout None: with redis-py 8.1 the default socket timeout equals
                # channels-redis's blocking read, and idle consumers die with TimeoutError.
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

RTDELIVERY = {
    "HISTORY_BACKEND": "redis" if REDIS_URL else "memory",
    "REDIS_URL": REDIS_URL or None,
    # Lets `manage.py demo_feed` publish through the running server (Authorization: Bearer).
    "PUBLISH_TOKENS": [DEMO_PUBLISH_TOKEN],
    # Who may subscribe to / publish on which topics: deny by default, first match wins.
    "TOPICS": {
        # Chat rooms: signed-in users watch and see who is there; messages are posted
        # through a Django view (stored, then published on commit), not by clients.
        "chat.*": {
            "subscribe": "authenticated",
            "publish": "nobody",
            "presence": True,
            "history_size": 200,
        },
        "feed": {"subscribe": "anyone", "publish": "staff", "history_size": 100},
        "announcements": {"subscribe": "anyone", "publish": "staff", "history_size": 20},
        # Private notifications: only the user whose id ends the topic may watch it.
        "user.*": {"subscribe": "owner", "publish": "nobody", "history_size": 50},
        "dashboard.*": {"subscribe": "anyone", "publish": "staff", "history_size": 300},
        # Anyone may watch the demo topics; only staff may publish on them.
        "demo.*": {"subscribe": "anyone", "publish": "staff"},
        # django-eventstream channels (the /eventstream/ page): its ChannelManager decides.
        "es.*": {
            "subscribe": "rtdelivery.contrib.eventstream.policy.can_read_channel",
            "publish": "nobody",
            "history_size": 50,
        },
    },
}
# send_event() publishes through rtdelivery (docs/migrating-from-django-eventstream.md).
EVENTSTREAM_STORAGE_CLASS = "rtdelivery.contrib.eventstream.storage.RTDeliveryStorage"

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/chat/"

# The dashboard's simulated sensors and delivery stats, published by the server process.
DEMO_SIMULATOR = os.environ.get("DEMO_SIMULATOR", "1").lower() in {"1", "true", "yes", "on"}
