#!/usr/bin/env bash
# Usage: scripts/find-python.sh X.Y
#
# Prints the path of a working Python X.Y interpreter: `pythonX.Y` on PATH if it runs
# (a pyenv shim of a version that is not active does not), else the newest X.Y that pyenv
# has installed. Fails, saying how to get one, when there is none.
set -euo pipefail

if [ "$#" -ne 1 ]; then
    echo "usage: $0 X.Y" >&2
    exit 2
fi
want="$1"

works() {
    [ -x "$1" ] && [ "$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ]
}

if candidate="$(command -v "python$want" 2>/dev/null)" && works "$candidate"; then
    echo "$candidate"
    exit 0
fi
if command -v pyenv >/dev/null 2>&1 && version="$(pyenv latest "$want" 2>/dev/null)"; then
    candidate="$(pyenv root)/versions/$version/bin/python$want"
    if works "$candidate"; then
        echo "$candidate"
        exit 0
    fi
fi
echo "No Python $want found (neither python$want on PATH nor in pyenv)." >&2
echo "Install one (pyenv install $want, or your OS's python$want), or set PYTHON$(tr -d . <<<"$want")=/path/to/python$want." >&2
exit 1
