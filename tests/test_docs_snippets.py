"""Every Python snippet of docs/*.md, run as written on a fresh ``startproject``.

README.md (tests/browser/test_readme.py), docs/testing.md and the django-eventstream
migration guide (:data:`OWN_RUNNERS`) have walkthroughs of their own. In the other docs each fenced ``python`` block follows a
marker saying what it is::

    <!-- doc-test: MODE [TARGET] [given=NAME,NAME] -->

- ``settings``: appended to the project's settings module; ``manage.py check`` must pass.
- ``write TARGET`` / ``append TARGET``: a file of the project; its module is imported (with
  Django set up) and ``manage.py check`` must pass.
- ``shell``: run by ``manage.py shell -c``; ``async``: the same, as the body of a coroutine
  (the doc's ``await`` lines), run with ``asyncio.run``.

The project is README's ``mysite`` (its settings snippet, ``urls.py``, ``asgi.py``, views and
template), made with this virtualenv's Django; the docs' ``yourproject``/``myproject`` are
that project. ``given`` names context a fragment assumes and the doc does not show (an app with
an ``Order`` model, a user): :data:`GIVENS` writes it first, so the snippet itself runs as
printed. Nothing here connects to a server the docs name (Sentinels, a cluster): ``check``
must pass without connecting, which is itself a promise (no connection at import).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.browser.test_readme import snippets as readme_snippets

ROOT = Path(__file__).resolve().parents[1]
#: Docs whose snippets form one walkthrough, run by a test of their own.
OWN_RUNNERS = {
    "testing.md": "tests/test_testing_docs.py",
    "migrating-from-django-eventstream.md": "tests/contrib/eventstream/test_migration_doc.py",
}
DOCS = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name not in OWN_RUNNERS)
MARKER = re.compile(r"<!-- doc-test: ([\w-]+)((?: [^\s>]+)*) -->\n```python\n(.*?)```", re.S)
RUN_TIMEOUT = 60.0
PROJECT_NAMES = re.compile(r"\b(?:yourproject|myproject)\b")

#: Context a snippet assumes: files of the project, and lines for the settings module.
GIVENS: dict[str, dict[str, str]] = {
    "shop": {
        "shop/__init__.py": "",
        "shop/models.py": (
            "from django.conf import settings\n"
            "from django.db import models\n\n\n"
            "class Order(models.Model):\n"
            "    customer = models.ForeignKey(\n"
            "        settings.AUTH_USER_MODEL, null=True, on_delete=models.CASCADE\n"
            "    )\n"
            "    total = models.IntegerField(default=0)\n"
        ),
        "shop/rooms.py": "async def user_in_room(user, topic):\n    return True\n",
        "settings+": 'INSTALLED_APPS += ["shop"]\n',
    },
    "accounts": {
        "accounts/__init__.py": "",
        "accounts/models.py": (
            "from django.conf import settings\n"
            "from django.db import models\n\n\n"
            "class ApiKey(models.Model):\n"
            "    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)\n"
            "    key = models.CharField(max_length=64, unique=True)\n"
            "    active = models.BooleanField(default=True)\n"
        ),
        "settings+": 'INSTALLED_APPS += ["accounts"]\n',
    },
    # The rules a settings snippet names (their bodies are the doc's business elsewhere).
    "rules": {
        "shop/policies.py": "def can_see_order(user, topic, action):\n    return False\n",
        "myapp/__init__.py": "",
        "myapp/policy.py": "def can_post(user, topic, action):\n    return False\n",
    },
    "chat": {
        "chat/__init__.py": "",
        "chat/routing.py": "websocket_urlpatterns = []\n",
    },
    "drf": {"settings+": 'INSTALLED_APPS += ["rest_framework", "rest_framework.authtoken"]\n'},
    # A user in the database: ``user`` in a shell snippet.
    "user": {
        "shell+": (
            "from django.contrib.auth import get_user_model\n"
            "user = get_user_model().objects.create_user('doc-user')\n"
        ),
    },
}


@dataclass
class Snippet:
    doc: str
    line: int
    mode: str
    target: str | None
    givens: list[str] = field(default_factory=list)
    text: str = ""

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def doc_snippets() -> list[Snippet]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for m in MARKER.finditer(text):
            args = m[2].split()
            givens = [g for a in args if a.startswith("given=") for g in a[6:].split(",")]
            targets = [a for a in args if not a.startswith("given=")]
            line = text.count("\n", 0, m.start()) + 2
            snippet = Snippet(doc.name, line, m[1], targets[0] if targets else None, givens)
            snippet.text = PROJECT_NAMES.sub("mysite", m[3])
            found.append(snippet)
    return found


def test_every_python_block_is_marked() -> None:
    """No snippet escapes: each ``python`` fence follows a doc-test marker."""
    for runner in OWN_RUNNERS.values():
        assert (ROOT / runner).is_file(), runner
    for doc in DOCS:
        text = doc.read_text()
        fences = len(re.findall(r"^```python$", text, re.M))
        marked = len(MARKER.findall(text))
        assert fences == marked, f"docs/{doc.name}: {fences} python blocks, {marked} marked"
    for snippet in doc_snippets():
        assert snippet.mode in {"settings", "write", "append", "shell", "async"}, snippet.id
        assert (snippet.target is not None) == (snippet.mode in {"write", "append"}), snippet.id
        assert set(snippet.givens) <= set(GIVENS), snippet.id


@pytest.fixture(scope="module")
def base_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """README's ``mysite`` up to its "serve" step (in-memory layer and history)."""
    workdir = tmp_path_factory.mktemp("docs_base")
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "mysite"],
        cwd=workdir,
        env=_env(workdir),
        check=True,
        timeout=RUN_TIMEOUT,
    )
    path = workdir / "mysite"
    for snippet in readme_snippets():
        if snippet.action == "serve":
            break
        if snippet.action not in ("append", "write"):
            continue
        assert snippet.target is not None
        target = path / snippet.target
        target.parent.mkdir(parents=True, exist_ok=True)
        before = target.read_text() + "\n" if snippet.action == "append" else ""
        target.write_text(before + snippet.text)
    return path


def _env(path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "COV_", "PYTEST_"))}
    env.update(
        PYTHONPATH=str(path),
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE="mysite.settings",
        # What the docs' settings read from the environment.
        SECRET_KEY="doc-snippets-secret-key-" + "x" * 40,
        RT_PUBLISH_TOKEN="doc-snippets-publish-token-" + "y" * 20,
    )
    return env


def _run(path: Path, argv: list[str]) -> str:
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=path,
        env=_env(path),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    output = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, f"{argv} exited with {done.returncode}:\n{output}"
    return output


def _module(target: str) -> str | None:
    if not target.endswith(".py"):
        return None
    return target[: -len(".py")].replace("/", ".").removesuffix(".__init__")


ASYNC_RUNNER = """\
import asyncio


async def _snippet():
{body}


asyncio.run(_snippet())
"""


@pytest.mark.parametrize("snippet", doc_snippets(), ids=lambda s: s.id)
def test_snippet_runs_as_written(snippet: Snippet, base_project: Path, tmp_path: Path) -> None:
    path = tmp_path / "mysite"
    shutil.copytree(base_project, path)
    settings = path / "mysite" / "settings.py"
    shell_prelude = ""
    for name in snippet.givens:
        for target, text in GIVENS[name].items():
            if target == "settings+":
                settings.write_text(settings.read_text() + "\n" + text)
            elif target == "shell+":
                shell_prelude += text
            else:
                (path / target).parent.mkdir(parents=True, exist_ok=True)
                (path / target).write_text(text)
    if "user" in snippet.givens:
        # --run-syncdb: the givens' apps have no migrations.
        _run(path, ["manage.py", "migrate", "--run-syncdb", "--noinput", "-v", "0"])

    if snippet.mode == "settings":
        settings.write_text(settings.read_text() + "\n" + snippet.text)
    elif snippet.mode in ("write", "append"):
        assert snippet.target is not None
        target = path / snippet.target
        target.parent.mkdir(parents=True, exist_ok=True)
        before = target.read_text() + "\n" if snippet.mode == "append" else ""
        target.write_text(before + snippet.text)
        module = _module(snippet.target)
        if module is not None:
            _run(
                path,
                [
                    "manage.py",
                    "shell",
                    "-c",
                    f"import importlib; importlib.import_module({module!r})",
                ],
            )
    else:
        code = snippet.text
        if snippet.mode == "async":
            body = "\n".join("    " + line if line else "" for line in code.splitlines())
            code = ASYNC_RUNNER.format(body=body)
        _run(path, ["manage.py", "shell", "-c", shell_prelude + code])
    _run(path, ["manage.py", "check"])
