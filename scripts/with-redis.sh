#!/usr/bin/env bash
# Usage: scripts/with-redis.sh COMMAND [ARGS...]
#
# Runs COMMAND with a Redis it can reach, exported as REDIS_URL:
#   1. REDIS_URL (default redis://127.0.0.1:6379/0) if it answers PING;
#   2. otherwise a private redis-server on a free loopback port, stopped on exit;
#   3. otherwise fails, explaining how to provide Redis.
# Exits with COMMAND's status.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv_python="$root/.venv/bin/python"
url="${REDIS_URL:-redis://127.0.0.1:6379/0}"

# redis_ping URL -> status 0 if that Redis answers PING within ~2 s.
redis_ping() {
    if [ -x "$venv_python" ] && "$venv_python" -c 'import redis' 2>/dev/null; then
        "$venv_python" - "$1" <<'PY'
import sys

import redis

try:
    client = redis.Redis.from_url(sys.argv[1], socket_connect_timeout=2, socket_timeout=2)
    with client:
        ok = client.ping()
except Exception:
    ok = False
sys.exit(0 if ok else 1)
PY
    elif command -v redis-cli >/dev/null 2>&1; then
        [ "$(timeout 3 redis-cli -u "$1" ping 2>/dev/null)" = "PONG" ]
    else
        return 1
    fi
}

if redis_ping "$url"; then
    export REDIS_URL="$url"
    echo "with-redis: using $REDIS_URL" >&2
    exec "$@"
fi

if ! command -v redis-server >/dev/null 2>&1; then
    cat >&2 <<MSG
with-redis: no Redis answers at $url and redis-server is not installed.
Provide Redis in one of these ways, then re-run:
  - start one locally:     redis-server            (Debian/Ubuntu: apt-get install redis-server)
  - or in a container:     docker run --rm -p 6379:6379 redis:7
  - or point at yours:     REDIS_URL=redis://host:port/db $*
MSG
    exit 1
fi

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
workdir="$(mktemp -d "${TMPDIR:-/tmp}/with-redis.XXXXXX")"
redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --daemonize no \
    --dir "$workdir" --logfile "$workdir/redis.log" &
redis_pid=$!

cleanup() {
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

private_url="redis://127.0.0.1:$port/0"
for _ in $(seq 1 50); do
    if redis_ping "$private_url"; then
        break
    fi
    if ! kill -0 "$redis_pid" 2>/dev/null; then
        echo "with-redis: redis-server exited early; its log:" >&2
        cat "$workdir/redis.log" >&2 || true
        exit 1
    fi
    sleep 0.1
done
if ! redis_ping "$private_url"; then
    echo "with-redis: private redis-server on port $port did not answer in time" >&2
    exit 1
fi

export REDIS_URL="$private_url"
echo "with-redis: no Redis at $url; started a private redis-server (pid $redis_pid) at $REDIS_URL" >&2
status=0
"$@" || status=$?
exit "$status"
