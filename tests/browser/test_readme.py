"""README's "Use it in your project", run as written on a fresh ``startproject``.

The snippets are read from README.md (each fenced block after a ``<!-- readme: ACTION -->``
marker), so the README cannot drift from what works: a fresh virtualenv installs the
package from this checkout with the README's pip line, ``django-admin startproject`` makes
the project, the file snippets are applied, ``check`` must be clean, ``runserver`` serves the
page, and Chromium must receive what ``publish()`` sends, first on the embedded default and
then, after the "In production" snippet, on Redis from another process.

The only changes made to the commands: ``./rtdelivery`` is this checkout, ``runserver`` gets
a free loopback port, and the Redis URL is a private ``redis-server`` started for the test.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import find_free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKER = re.compile(r"<!-- readme: (\w+)(?: (\S+))? -->\n```\w*\n(.*?)```", re.S)
WAIT = 30.0


@dataclass
class Snippet:
    action: str
    target: str | None
    text: str


def snippets() -> list[Snippet]:
    return [Snippet(m[1], m[2], m[3]) for m in MARKER.finditer(README.read_text())]


def test_readme_has_the_walkthrough() -> None:
    actions = [(s.action, s.target) for s in snippets()]
    assert actions == [
        ("run", None),
        ("append", "mysite/settings.py"),
        ("write", "mysite/urls.py"),
        ("write", "mysite/asgi.py"),
        ("write", "mysite/views.py"),
        ("write", "templates/live.html"),
        ("serve", None),
        ("append", "mysite/settings.py"),
        ("shell", None),
    ], actions


def _commands(text: str) -> list[list[str]]:
    lines = []
    for line in text.splitlines():
        line = line.split("  #", 1)[0].strip()  # the README's trailing comments
        if line:
            lines.append(shlex.split(line))
    return lines


class Project:
    """The fresh project: its virtualenv, folder and server."""

    def __init__(self, workdir: Path, redis_url: str) -> None:
        self.workdir = workdir
        self.venv = workdir / "venv"
        self.cwd = workdir
        self.redis_url = redis_url
        self.server: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.log = workdir / "server.log"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "COV_"))}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env['PATH']}"
        env["VIRTUAL_ENV"] = str(self.venv)
        env.pop("PYTHONPATH", None)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def run(self, argv: list[str], timeout: float = 600) -> str:
        if argv[:1] == ["cd"]:
            self.cwd = self.cwd / argv[1]
            return ""
        if argv[:4] == ["python", "-m", "pip", "install"]:
            argv = [str(ROOT) if a == "./rtdelivery" else a for a in argv]
            argv[4:4] = ["--quiet", "--disable-pip-version-check"]
        done = subprocess.run(
            argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    def apply(self, snippet: Snippet) -> None:
        assert snippet.target is not None
        path = self.cwd / snippet.target
        text = snippet.text.replace("redis://127.0.0.1:6379/0", self.redis_url)
        if snippet.action == "append":
            path.write_text(path.read_text() + "\n" + text)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def serve(self, argv: list[str]) -> None:
        """``runserver``, on a free port, until it answers."""
        assert argv[-1] == "runserver", argv
        self.port = find_free_port()
        with self.log.open("ab") as log:  # the child keeps its own copy
            self.server = subprocess.Popen(
                [*argv, f"127.0.0.1:{self.port}", "--noreload"],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + WAIT
        while True:
            assert self.server.poll() is None, self.log.read_text()
            try:
                httpx.get(self.url("/rt/poll?topic=feed"), timeout=2)
                return
            except httpx.TransportError:
                assert time.monotonic() < deadline, self.log.read_text()
                time.sleep(0.1)

    def stop(self) -> None:
        if self.server is not None:
            self.server.send_signal(signal.SIGINT)
            try:
                self.server.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(WAIT)
            self.server = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of the test's own, on a free loopback port."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    port = find_free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_connect_timeout=1)
    deadline = time.monotonic() + WAIT
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        process.terminate()
        process.wait(WAIT)


def _live_page(browser: Any, project: Project) -> Any:
    context = browser.new_context()
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(project.url("/"))
    # Live once the server confirmed the subscription, which gives the client a cursor
    # (`client` is the page's own top-level const).
    page.wait_for_function("() => typeof client !== 'undefined' && client.cursor('feed')")
    return context, page, errors


def test_readme_walkthrough(browser: Any, tmp_path: Path, private_redis: str) -> None:
    parts = snippets()
    project = Project(tmp_path, private_redis)
    # The virtualenv is the one thing a reader already has.
    subprocess.run([sys.executable, "-m", "venv", str(project.venv)], check=True, timeout=120)
    try:
        for snippet in parts:
            if snippet.action == "run":
                for argv in _commands(snippet.text):
                    project.run(argv)
            elif snippet.action in ("append", "write"):
                project.apply(snippet)
                if snippet.target == "templates/live.html":
                    # Embedded default: check, migrate, serve, and a page receives publish().
                    check = project.run(["python", "manage.py", "check"])
                    assert "System check identified no issues" in check, check
            elif snippet.action == "serve":
                *setup, serve = _commands(snippet.text)
                for argv in setup:
                    project.run(argv)
                project.serve(serve)
                context, page, errors = _live_page(browser, project)
                answer = httpx.get(project.url("/hello/"), timeout=WAIT)
                assert answer.status_code == 200, answer.text
                page.wait_for_selector("#events li")
                assert page.inner_text("#events li") == "1: hello from Django"
                assert not errors, errors
                context.close()
            elif snippet.action == "shell":
                # "In production": Redis; the server restarts on the new settings.
                project.stop()
                check = project.run(["python", "manage.py", "check"])
                assert "System check identified no issues" in check, check
                project.serve(["python", "manage.py", "runserver"])
                context, page, errors = _live_page(browser, project)
                for argv in _commands(snippet.text):
                    project.run(argv)
                page.wait_for_selector("#events li")
                assert page.inner_text("#events li") == "1: hi"
                assert not errors, errors
                context.close()
    finally:
        project.stop()
