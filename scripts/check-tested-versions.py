"""Says which Python and Django this test run uses and fails unless setup.cfg declares them.

Both must have their trove classifier (``Programming Language :: Python :: X.Y``,
``Framework :: Django :: X.Y``). With ``--newest-django``, Django must also be the newest major
release that setup.cfg's ``Django>=…,<N`` allows (N - 1), so a CI leg cannot quietly test an
older one, and a new Django release that CI picks up cannot go unlisted.
"""

from __future__ import annotations

import argparse
import configparser
import platform
import re
import sys
from pathlib import Path

import django

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--newest-django", action="store_true")
    args = parser.parse_args()
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    classifiers = set(config["metadata"]["classifiers"].split("\n"))
    requires = config["options"]["install_requires"]
    match = re.search(r"^\s*Django\s*(\S*<\s*(\d+)\S*)\s*$", requires, re.MULTILINE | re.I)
    if match is None:
        print(f"expected a 'Django>=X,<N' line in {SETUP_CFG} install_requires, got: {requires!r}")
        return 1
    python = "{}.{}".format(*sys.version_info[:2])
    django_xy = "{}.{}".format(*django.VERSION[:2])
    print(
        f"Python {platform.python_version()}, Django {django.get_version()} "
        f"(setup.cfg: Django{match.group(1)})"
    )
    errors = [
        f"setup.cfg has no classifier {c!r}, but this run tests it"
        for c in (
            f"Programming Language :: Python :: {python}",
            f"Framework :: Django :: {django_xy}",
        )
        if c not in classifiers
    ]
    newest_major = int(match.group(2)) - 1
    if args.newest_django and django.VERSION[0] != newest_major:
        errors.append(
            f"expected Django {newest_major}.x, the newest that setup.cfg allows, "
            f"but pip installed {django.get_version()}: check requirements.txt's markers"
        )
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
