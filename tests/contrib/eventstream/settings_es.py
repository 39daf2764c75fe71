"""Settings of the e2e servers: the e2e settings plus a django-eventstream project moved
onto rtdelivery (the two lines of docs/migrating-from-django-eventstream.md)."""

from rtdelivery.contrib.eventstream import TOPICS as EVENTSTREAM_TOPICS
from tests.e2e.settings_e2e import *  # noqa: F403

if "django_eventstream" not in INSTALLED_APPS:  # noqa: F405 - the demo's settings have it
    INSTALLED_APPS = [*INSTALLED_APPS, "django_eventstream"]  # noqa: F405
ROOT_URLCONF = "tests.contrib.eventstream.urls_es"
EVENTSTREAM_STORAGE_CLASS = "rtdelivery.contrib.eventstream.storage.RTDeliveryStorage"
EVENTSTREAM_CHANNELMANAGER_CLASS = "tests.contrib.eventstream.project.ChannelManager"
RTDELIVERY["TOPICS"] = {**RTDELIVERY["TOPICS"], **EVENTSTREAM_TOPICS}  # noqa: F405
