"""docs/testing.md's examples, run as written on a fresh ``startproject``.

Each fenced block of the doc follows a ``<!-- testing-doc: ACTION [target] -->`` marker:
``write``/``append`` put it into a file of the project (test settings, ``pytest.ini``, test
modules, ``conftest.py``), ``run`` is the doc's "Running the tests" commands. The project is
the one README.md's "Use it in your project" builds (``mysite``: its settings snippet,
``urls.py``, ``asgi.py``, ``views.py`` and template, read from README.md), made with this
virtualenv's Django, where rtdelivery is installed.

The doc's commands run in that project, outside this repository's configuration: ``pytest``
with the doc's ``pytest.ini`` only (``-c``, so nothing of this repository's ``setup.cfg``
applies, and pytest-asyncio runs in the mode the doc asks for), and ``python manage.py test``.
Every example test must pass, and each runner must run exactly the doc's tests: pytest all of
them, Django's runner the ``TestCase`` classes (it ignores test functions).
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.browser.test_readme import snippets as readme_snippets

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "testing.md"
MARKER = re.compile(r"<!-- testing-doc: (\w+)(?: (\S+))? -->\n```\w*\n(.*?)```", re.S)
# Each run must finish within this (seconds), well inside pytest-timeout's 120.
RUN_TIMEOUT = 100.0


@dataclass
class Snippet:
    action: str
    target: str | None
    text: str


def doc_snippets() -> list[Snippet]:
    return [Snippet(m[1], m[2], m[3]) for m in MARKER.finditer(DOC.read_text())]


def doc_files() -> dict[str, str]:
    """The files the doc's ``write``/``append`` blocks make, in the doc's order."""
    files: dict[str, str] = {}
    for snippet in doc_snippets():
        if snippet.action == "write":
            assert snippet.target is not None, snippet
            assert snippet.target not in files, f"{snippet.target} is written twice"
            files[snippet.target] = snippet.text
        elif snippet.action == "append":
            assert snippet.target in files, f"append to {snippet.target} before it is written"
            files[snippet.target] += "\n\n" + snippet.text
    return files


def count_tests(files: dict[str, str]) -> tuple[int, int]:
    """(test functions and methods, methods of test classes) in the doc's test modules:
    what pytest and Django's runner should each run."""
    functions = methods = 0
    for name, text in files.items():
        if not Path(name).name.startswith("test_"):
            continue
        for node in ast.parse(text).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions += node.name.startswith("test")
            elif isinstance(node, ast.ClassDef):
                methods += sum(
                    isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                    and item.name.startswith("test")
                    for item in node.body
                )
    return functions + methods, methods


def test_every_example_is_marked() -> None:
    """No block of the doc escapes the suite: every opening fence follows a marker."""
    text = DOC.read_text()
    fences = re.findall(r"^```\w+$", text, re.M)
    parts = doc_snippets()
    assert len(parts) == len(fences), (
        f"{len(fences)} code blocks in docs/testing.md, {len(parts)} with a testing-doc marker"
    )
    assert [s.action for s in parts].count("run") == 1
    assert {"pytest.ini", "mysite/test_settings.py", "mysite/conftest.py"} <= set(doc_files())


def _commands(text: str) -> list[list[str]]:
    lines = []
    for line in text.splitlines():
        line = line.split("  #", 1)[0].strip()  # the doc's trailing comments
        if line:
            lines.append(shlex.split(line))
    return lines


@dataclass
class Project:
    path: Path
    env: dict[str, str]

    def run(self, argv: list[str]) -> str:
        """``argv`` as the doc writes it, with this interpreter; its stdout and stderr."""
        if argv[0] == "pytest":
            # Only the doc's pytest.ini (never this repository's setup.cfg), no cache files.
            options = ["-c", "pytest.ini", "-p", "no:cacheprovider", "-rA"]
            argv = [sys.executable, "-m", "pytest", *options, *argv[1:]]
        else:
            assert argv[:3] == ["python", "manage.py", "test"], argv
            argv = [sys.executable, *argv[1:]]
        try:
            done = subprocess.run(
                argv,
                cwd=self.path,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"{argv} did not finish within {RUN_TIMEOUT}s:\n{exc.stdout}\n{exc.stderr}"
            ) from exc
        output = f"{done.stdout}\n{done.stderr}"
        assert done.returncode == 0, f"{argv} exited with {done.returncode}:\n{output}"
        return output


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """README's ``mysite`` on a fresh ``startproject``, with the doc's files."""
    workdir = tmp_path_factory.mktemp("testing_docs")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "COV_", "PYTEST_"))}
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "mysite"],
        cwd=workdir,
        env=env,
        check=True,
        timeout=RUN_TIMEOUT,
    )
    path = workdir / "mysite"
    env["PYTHONPATH"] = str(path)
    env["PYTHONUNBUFFERED"] = "1"
    # README's files and settings up to its "serve" step: "In production" (Redis) follows.
    for snippet in readme_snippets():
        if snippet.action == "serve":
            break
        if snippet.action not in ("append", "write"):
            continue
        assert snippet.target is not None
        target = path / snippet.target
        target.parent.mkdir(parents=True, exist_ok=True)
        if snippet.action == "append":
            target.write_text(target.read_text() + "\n" + snippet.text)
        else:
            target.write_text(snippet.text)
    for name, text in doc_files().items():
        (path / name).write_text(text)
    return Project(path, env)


def _run_commands() -> dict[str, list[str]]:
    (run,) = (s for s in doc_snippets() if s.action == "run")
    return {argv[0]: argv for argv in _commands(run.text)}


def test_examples_pass_under_pytest(project: Project) -> None:
    expected, _ = count_tests(doc_files())
    output = project.run(_run_commands()["pytest"])
    # Only passes: nothing failed, skipped, xfailed or warned.
    summary = rf"^=+ {expected} passed in [\d.]+s( \([\d:]+\))? =+$"
    assert re.search(summary, output, re.M), output


def test_examples_pass_under_manage_py_test(project: Project) -> None:
    _, expected = count_tests(doc_files())
    output = project.run(_run_commands()["python"])
    assert re.search(rf"^Ran {expected} tests? in ", output, re.M), output
    assert re.search(r"^OK$", output, re.M), output  # not "OK (skipped=...)"
