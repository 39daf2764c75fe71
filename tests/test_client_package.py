"""The npm package of the browser client (client/package.json): what ``npm pack`` ships.

Needs node and npm (as ``make lint`` does); skipped without them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "client"

pytestmark = pytest.mark.skipif(
    shutil.which("npm") is None or not (CLIENT / "node_modules").is_dir(),
    reason="needs npm and client/node_modules (make client-lint installs them)",
)


def test_npm_package_ships_the_licence() -> None:
    # --dry-run still runs prepack (the build), which puts the licence next to package.json.
    result = subprocess.run(
        ["npm", "pack", "--dry-run", "--json", "--ignore-scripts=false"],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    files = {entry["path"] for entry in json.loads(result.stdout)[0]["files"]}
    assert {"LICENSE", "package.json", "dist/rtdelivery.mjs", "dist/rtdelivery.d.ts"} <= files
    assert (CLIENT / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    manifest = json.loads((CLIENT / "package.json").read_text())
    assert manifest["license"] == "BSD-3-Clause"
