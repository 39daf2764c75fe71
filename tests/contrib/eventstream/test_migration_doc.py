"""docs/migrating-from-django-eventstream.md's Python blocks, run as written.

Each block follows an ``<!-- eventstream-doc: KIND -->`` marker: ``settings`` blocks go into
a fresh project's settings (after what any rtdelivery project has, before this test points
Redis at its own key prefix), the ``urls`` block is its URLconf, ``code`` blocks run after
``django.setup()``. Then the switch must do what the doc says: the URLs resolve to the
bridge with their kwargs, send_event stores through rtdelivery, the async helper works,
and ``manage.py check`` finds nothing to say about the bridge.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx

from tests.conftest import delete_prefixed_keys, find_free_port

from .esclient import ESClient, Frame

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


# -- the guide's steps on a small project written the django-eventstream way ---------------

ES_SETTINGS = """
SECRET_KEY = "es-project"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "django_eventstream",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "urls"
ASGI_APPLICATION = "asgi.application"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
STATIC_URL = "static/"
"""

ES_URLS = """
import django_eventstream
from django.urls import include, path

from views import send

urlpatterns = [
    path("events/", include(django_eventstream.urls), {"channels": ["test"]}),
    path("send/", send),
]
"""

ES_VIEWS = """
from django.http import JsonResponse
from django_eventstream import send_event


def send(request):
    send_event("test", "message", {"n": int(request.GET["n"])})
    return JsonResponse({"ok": True})
"""

ES_ASGI = """
from django.core.asgi import get_asgi_application

application = get_asgi_application()
"""

#: "Have rtdelivery set up as for any project" (the guide's first step, README).
RTDELIVERY_SETUP = """
import os

INSTALLED_APPS = [*INSTALLED_APPS, "channels", "rtdelivery"]
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

RTDELIVERY_ASGI = """
from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from rtdelivery.asgi import rtdelivery_application  # noqa: E402

application = rtdelivery_application(django_asgi_app)
"""


def guide_url_change() -> tuple[str, str]:
    """The guide's urls.py line: what it was, and what it becomes."""
    (block,) = blocks("urls")
    lines = [line.strip() for line in block.splitlines()]
    at = next(i for i, line in enumerate(lines) if line.startswith("# was: "))
    return lines[at].removeprefix("# was: "), lines[at + 1]


@contextlib.contextmanager
def serving(project: Path, env: dict[str, str]) -> Iterator[str]:
    """The project on Daphne (django-eventstream's ASGI server), on a free loopback port."""
    port = find_free_port()
    log = project / f"daphne-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "asgi:application",
            ],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)  # polling a port that is not open yet: nothing to await
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def stream_gets_send_event(base: str, n: int) -> Frame:
    """The project's front-end request (an EventSource on /events/) gets stream-open, then
    the event a view sends with send_event."""
    with ESClient(f"{base}/events/") as client:
        assert client.status == 200, client.raw
        assert client.next().type == "stream-open"
        sent = httpx.get(f"{base}/send/", params={"n": str(n)}, trust_env=False, timeout=30)
        assert sent.status_code == 200, sent.text
        frame = client.next()
    assert frame.type == "message"
    assert frame.json() == {"n": n}
    return frame


def test_guide_moves_a_django_eventstream_project(tmp_path: Path, redis_url: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "settings.py").write_text(ES_SETTINGS)
    (project / "urls.py").write_text(ES_URLS)
    (project / "views.py").write_text(ES_VIEWS)
    (project / "asgi.py").write_text(ES_ASGI)
    prefix = f"rtddoc:{uuid4().hex[:12]}:"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "settings",
        "PYTHONPATH": os.pathsep.join([str(project), str(ROOT)]),
        "REDIS_URL": redis_url,
        "DOC_PREFIX": prefix,
    }
    try:
        # As written, the project streams with django-eventstream itself.
        with serving(project, env) as base:
            frame = stream_gets_send_event(base, 1)
        assert ",*:" not in frame.last_event_id  # django-eventstream's own view

        # The guide: rtdelivery set up, then its two lines (settings, urls).
        settings = project / "settings.py"
        settings.write_text(
            "\n".join([settings.read_text(), RTDELIVERY_SETUP, *blocks("settings"), AFTER_SETTINGS])
        )
        (project / "asgi.py").write_text(RTDELIVERY_ASGI)
        was, now = guide_url_change()
        urls = (project / "urls.py").read_text()
        assert was in urls
        (project / "urls.py").write_text(urls.replace(was, now))

        with serving(project, env) as base:
            frame = stream_gets_send_event(base, 2)
        assert frame.last_event_id.startswith("test:1,*:")  # the bridge's id: rtdelivery's seq
        check = subprocess.run(
            [sys.executable, "-m", "django", "check", "--fail-level", "WARNING"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=100,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr
        assert "no issues" in check.stdout, check.stdout
    finally:
        delete_prefixed_keys(redis_url, prefix)
