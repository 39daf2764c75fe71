"""Says which Python and Django this leg runs, and fails unless the Django is the newest major
release that setup.cfg's ``Django>=…,<N`` allows (N - 1), so the leg cannot quietly test an
older one."""

from __future__ import annotations

import configparser
import platform
import re
import sys
from pathlib import Path

import django

setup_cfg = Path(__file__).resolve().parents[1] / "setup.cfg"
config = configparser.ConfigParser()
config.read(setup_cfg)
requires = config["options"]["install_requires"]
match = re.search(r"^\s*Django\s*(\S*<\s*(\d+)\S*)\s*$", requires, re.MULTILINE | re.IGNORECASE)
if match is None:
    sys.exit(f"expected a 'Django>=X,<N' line in {setup_cfg} install_requires, got: {requires!r}")
newest_major = int(match.group(2)) - 1
print(
    f"Python {platform.python_version()}, Django {django.get_version()} (setup.cfg: Django{match.group(1)})"
)
if django.VERSION[0] != newest_major:
    sys.exit(
        f"expected Django {newest_major}.x, the newest that setup.cfg allows, "
        f"but pip installed {django.get_version()}: check requirements.txt's markers"
    )
