"""docs/migrating-from-django-eventstream.md's Python blocks, run as written.

Each block follows an ``<!-- eventstream-doc: KIND -->`` marker: ``settings`` blocks go into
a fresh project's settings (after what any rtdelivery project has, before this test points
Redis at its own key prefix), the ``urls`` block is its URLconf, ``code`` blocks run after
``django.setup()``. Then the switch must do what the doc says: the URLs resolve to the
bridge with their kwargs, send_event stores through rtdelivery, the async helper works,
and ``manage.py check`` finds nothing to say about the bridge.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from uuid import uuid4

from tests.conftest import delete_prefixed_keys

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "migrating-from-django-eventstream.md"
MARKER = re.compile(r"<!-- eventstream-doc: (\w+) -->\n```python\n(.*?)```", re.S)

BASE_SETTINGS = """
import os

SECRET_KEY = "doc-test"
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "channels",
    "rtdelivery",
    "django_eventstream",
]
ROOT_URLCONF = "urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
STATIC_URL = "static/"
# No asgi.py in this project: the doc is about settings and URLs.
SILENCED_SYSTEM_CHECKS = ["rtdelivery.W006"]
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [{"address": os.environ["REDIS_URL"], "socket_timeout": None}],
            "prefix": os.environ["DOC_PREFIX"] + "layer",
        },
    }
}
"""

AFTER_SETTINGS = """
RTDELIVERY["REDIS_URL"] = os.environ["REDIS_URL"]
RTDELIVERY["KEY_PREFIX"] = os.environ["DOC_PREFIX"]
"""

CHECKS = """
import asyncio

from django.core.management import call_command
from django.urls import resolve
from django_eventstream import get_current_event_id, send_event
from django_eventstream.utils import get_storage

from rtdelivery.connections import aclose_redis
from rtdelivery.contrib.eventstream.storage import RTDeliveryStorage
from rtdelivery.contrib.eventstream.views import events
from rtdelivery.history import get_history

match = resolve("/events/")
assert match.func is events and match.kwargs == {"channels": ["test"]}, match
match = resolve("/objects/7/events/")
assert match.kwargs == {"obj_id": 7, "format-channels": ["object-{obj_id}"]}, match
assert resolve("/feed/").func is events
assert isinstance(get_storage(), RTDeliveryStorage)
send_event("test", "message", {"a": 1})
assert get_current_event_id(["test"]) == "test:1"


async def main():
    await notify(42)
    latest = await get_history().latest("es.orders", 5)
    await aclose_redis()
    return [(e.type, e.data) for e in latest.events]


assert asyncio.run(main()) == [("created", {"id": 42})]
call_command("check", "--fail-level", "WARNING", verbosity=0)
print("doc ok")
"""


def blocks(kind: str) -> list[str]:
    return [m[2] for m in MARKER.finditer(DOC.read_text()) if m[1] == kind]


def test_doc_blocks_run_as_written(tmp_path: Path, redis_url: str) -> None:
    assert len(blocks("settings")) == 2
    assert len(blocks("urls")) == 1
    assert len(blocks("code")) == 3
    (tmp_path / "settings.py").write_text(
        "\n".join([BASE_SETTINGS, *blocks("settings"), AFTER_SETTINGS])
    )
    (tmp_path / "urls.py").write_text(blocks("urls")[0])
    script = "import django\ndjango.setup()\n" + "\n".join(blocks("code")) + textwrap.dedent(CHECKS)
    prefix = f"rtddoc:{uuid4().hex[:12]}:"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "REDIS_URL": redis_url,
        "DOC_PREFIX": prefix,
        "PYTHONWARNINGS": "error::DeprecationWarning",
    }
    try:
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=100,
            check=False,
        )
    finally:
        delete_prefixed_keys(redis_url, prefix)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("doc ok")
