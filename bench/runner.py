"""Runs the benchmark scenarios and prints a markdown table (and writes JSON).

Every process is started here on loopback and stopped here by PID: the servers
(rtdelivery on Uvicorn or Daphne, the naive Channels consumer on Daphne, the raw
floor), the load generators and the publisher. Every wait has a deadline.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

from . import procstat, publishing
from .eventstream import TARGETS as ES_TARGETS

PY = sys.executable
#: The repository root: the subprocesses import ``bench`` from here whatever their cwd.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Case:
    scenario: str
    target: str  # rtdelivery | naive | floor
    transport: str  # ws | sse | longpoll | poll | get
    clients: int
    events: int
    rate: float = 0.0
    server: str = "uvicorn"  # uvicorn | daphne | floor
    workers: int = 1
    loadgens: int = 1
    path: str = ""
    requests: int = 0
    poll_interval: float = 1.0
    timeout: float = 120.0
    note: str = ""
    #: Uvicorn's --ws implementation ("" = RTD_BENCH_UVICORN_WS, else RECOMMENDED_WS).
    ws: str = ""
    #: Separate server processes (each on its own port, one Redis): subscribers spread
    #: evenly over them, one load generator or more per process.
    servers: int = 1


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log: Any = None

    def pids(self) -> list[int]:
        pids = [self.proc.pid, *procstat.children(self.proc.pid)]
        for p in self.extra:
            pids += [p.pid, *procstat.children(p.pid)]
        return pids

    def stop(self) -> None:
        for p in [self.proc, *self.extra]:
            _stop(p)
        if self.log is not None:
            self.log.close()


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _env(prefix: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    env["RTD_BENCH_PREFIX"] = prefix
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


#: The WebSocket protocol docs/deployment.md recommends, which rtdelivery's rows run on
#: unless a case names another (RTD_BENCH_UVICORN_WS="" for Uvicorn's own default).
RECOMMENDED_WS = "rtdelivery.contrib.uvicorn:WebSocketProtocol"


def _uvicorn_ws(case: Case) -> str:
    """The ``--ws`` a Uvicorn server of ``case`` runs with ("": Uvicorn's default)."""
    return case.ws or os.environ.get("RTD_BENCH_UVICORN_WS", RECOMMENDED_WS)


def _server_cmd(case: Case, port: int) -> list[str]:
    if case.target in ES_TARGETS:  # settings of their own: bench.eventstream
        return [PY, "-m", "bench.eventstream", case.target, case.server, str(port)]
    if case.target == "floor":
        kind = "sse" if case.transport == "sse" else "ws"
        redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        return [PY, "-m", "bench.floor", "--kind", kind, "--port", str(port), "--redis", redis_url]
    if case.server == "daphne" or case.target == "naive":
        return [
            PY,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "-v",
            "0",
            "bench.asgi:application",
        ]
    cmd = [
        PY,
        "-m",
        "uvicorn",
        "bench.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--lifespan",
        "off",
        "--log-level",
        "warning",
        "--no-access-log",
        "--backlog",
        "4096",
    ]
    if case.workers > 1:
        cmd += ["--workers", str(case.workers)]
    ws = _uvicorn_ws(case)
    if ws:
        cmd += ["--ws", ws]
    return cmd


def _wait_port(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start in time")


def start_server(case: Case, prefix: str) -> Server:
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - Server.stop() closes it
    proc = subprocess.Popen(
        _server_cmd(case, port), env=_env(prefix), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_port(port, proc, time.monotonic() + 30)
    except RuntimeError as exc:
        _stop(proc)
        log.seek(0)
        output = log.read()[-1500:].decode(errors="replace")
        log.close()
        raise RuntimeError(f"{exc}: {output}") from None
    if case.workers > 1:
        # Let every worker finish importing before measuring.
        deadline = time.monotonic() + 30
        while len(procstat.children(proc.pid)) < case.workers and time.monotonic() < deadline:
            time.sleep(0.05)
    if case.target != "floor":
        # Warm up: first request imports views, opens Redis pools.
        for _ in range(3):
            try:
                urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/rt/poll?topic=bench.warm", timeout=5
                )
            except OSError:
                time.sleep(0.2)
    return Server(proc, port, log=log)


def _loadgen_cmd(case: Case, port: int, clients: int, extra: list[str]) -> list[str]:
    cmd = [
        PY,
        "-m",
        "bench.loadgen",
        "--target",
        case.target,
        "--transport",
        case.transport,
        "--url",
        f"http://127.0.0.1:{port}",
        "--topic",
        "bench",
        "--clients",
        str(clients),
        "--expect",
        str(case.events),
        "--timeout",
        str(case.timeout),
        "--poll-interval",
        str(case.poll_interval),
        "--longpoll-timeout",
        "20",
    ]
    if case.transport == "get":
        cmd += ["--path", case.path, "--requests", str(case.requests)]
    return cmd + extra


def _read_line(proc: subprocess.Popen[str], prefix: str, deadline: float) -> str:
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise RuntimeError(f"load generator exited ({proc.returncode}) before {prefix}")
            continue
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    raise RuntimeError(f"no {prefix} line in time")


def _server_label(case: Case) -> str:
    if case.target == "floor":
        return "floor"
    if case.target == "naive" or case.server == "daphne":
        return "daphne"
    # An import string (--ws module:Class) is labelled by its module; a WebSocket row
    # names the protocol it ran on.
    ws = _uvicorn_ws(case) if case.transport == "ws" and case.target == "rtdelivery" else ""
    label = case.server if not ws else f"{case.server}/{ws.split(':')[0]}"
    return label if case.servers == 1 else f"{label} x{case.servers}"


def run_case(case: Case) -> dict[str, Any]:
    prefix = f"rtdbench:{uuid.uuid4().hex[:8]}:"
    fleet: list[Server] = []
    gens: list[subprocess.Popen[str]] = []
    outdir = ""
    try:
        for _ in range(case.servers):
            fleet.append(start_server(case, prefix))
        server = fleet[0]
        if case.path == "<unchanged-poll>":
            case.path = _poll_cursor_path(server.port)
        all_pids = [pid for s in fleet for pid in s.pids()]
        base = procstat.total(all_pids)
        deadline = time.monotonic() + case.timeout + 120
        loadgens = max(case.loadgens, case.servers)
        per = [
            case.clients // loadgens + (1 if i < case.clients % loadgens else 0)
            for i in range(loadgens)
        ]
        outdir = tempfile.mkdtemp(prefix="rtdbench-")
        for n, clients in enumerate(per):
            out = os.path.join(outdir, f"loadgen-{n}.json")
            gens.append(
                subprocess.Popen(
                    _loadgen_cmd(case, fleet[n % len(fleet)].port, clients, ["--out", out]),
                    env=_env(prefix),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            )
        ready = sum(int(_read_line(g, "READY ", deadline)) for g in gens)
        connected = procstat.total(all_pids)
        connected_each = [procstat.total(s.pids()) for s in fleet]
        started = time.monotonic()
        if case.transport != "get":
            pub = subprocess.run(
                [
                    PY,
                    "-m",
                    "bench.publisher",
                    "--target",
                    case.target,
                    "--count",
                    str(case.events),
                    "--rate",
                    str(case.rate),
                ],
                env=_env(prefix),
                capture_output=True,
                text=True,
                timeout=case.timeout + 60,
                check=True,
            )
            if "RESULT" not in pub.stdout:
                raise RuntimeError(f"publisher failed: {pub.stderr[-500:]}")
        results = [_load_result(_read_line(g, "RESULT ", deadline)) for g in gens]
        elapsed = time.monotonic() - started
        end = procstat.total(all_pids)
        end_each = [procstat.total(s.pids()) for s in fleet]
    finally:
        for g in gens:
            _stop(g)
            if g.stdout is not None:
                g.stdout.close()
        for s in fleet:
            s.stop()
        if outdir:
            shutil.rmtree(outdir, ignore_errors=True)
        _cleanup(prefix)
    received = sum(r["received"] for r in results)
    latencies = sorted(lat for r in results for lat in r["latencies"])
    expected = case.clients * case.events if case.transport != "get" else 0
    deliveries = received if case.transport != "get" else sum(r["requests"] for r in results)
    cpu = end.cpu - connected.cpu if case.transport != "get" else end.cpu - base.cpu

    # Per server process: its CPU over what its own subscribers received.
    per_process = []
    for i, (c, e) in enumerate(zip(connected_each, end_each, strict=True)):
        got = sum(r["received"] for n, r in enumerate(results) if n % len(fleet) == i)
        per_process.append(
            {
                "deliveries": got,
                "cpu_s": round(e.cpu - c.cpu, 3),
                "cpu_us_per_delivery": round((e.cpu - c.cpu) * 1e6 / got, 2) if got else None,
            }
        )

    def pct(p: float) -> float | None:
        if not latencies:
            return None
        return float(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))])

    return {
        "scenario": case.scenario,
        "target": case.target,
        "transport": case.transport,
        "server": _server_label(case),
        "workers": case.workers,
        "servers": case.servers,
        "ws": case.ws,
        "per_process": per_process,
        "clients": case.clients,
        "ready": ready,
        "events": case.events,
        "expected": expected,
        "delivered": received,
        "loss_pct": round(100 * (1 - received / expected), 2) if expected else 0.0,
        "duplicates": sum(r["duplicates"] for r in results),
        "out_of_order": sum(r["out_of_order"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "first_error": next((r["first_error"] for r in results if r["first_error"]), None),
        "requests": sum(r["requests"] for r in results),
        "empty": sum(r["empty"] for r in results),
        "bytes": sum(r["bytes"] for r in results),
        "seconds": round(elapsed, 3),
        "deliveries_per_s": round(deliveries / elapsed, 1) if elapsed else None,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "max_ms": latencies[-1] if latencies else None,
        "cpu_us_per_delivery": round(cpu * 1e6 / deliveries, 2) if deliveries else None,
        "rss_base_mb": round(base.rss / 2**20, 1),
        "rss_per_conn_kb": round((connected.rss - base.rss) / 1024 / max(ready, 1), 2),
        "threads_base": base.threads,
        "threads_connected": connected.threads,
        "threads_per_conn": round((connected.threads - base.threads) / max(ready, 1), 4),
        "mean_latency_ms": round(statistics.fmean(latencies), 3) if latencies else None,
        "note": case.note,
    }


def _load_result(text: str) -> dict[str, Any]:
    if text.startswith("@"):
        with open(text[1:]) as f:
            result: dict[str, Any] = json.load(f)
        os.unlink(text[1:])
        return result
    return dict(json.loads(text))


def _cleanup(prefix: str) -> None:
    try:
        import redis

        client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    except Exception:  # pragma: no cover - best effort
        pass


def _poll_cursor_path(port: int) -> str:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}/rt/poll?topic=bench.idle", timeout=5
    ) as r:
        cursor = json.loads(r.read())["cursor"]
    return f"/rt/poll?topic=bench.idle&cursor={cursor}"


#: The ws-servers scenario's servers: (server, Uvicorn --ws: a name or an import string,
#: rtdelivery's lighter protocol); wsproto only if installed.
WS_SERVERS = [
    ("uvicorn", "websockets-sansio"),
    ("uvicorn", "rtdelivery.contrib.uvicorn:WebSocketProtocol"),
    ("uvicorn", "websockets"),
    *([("uvicorn", "wsproto")] if importlib.util.find_spec("wsproto") else []),
    ("daphne", ""),
    ("floor", ""),
]


def scenarios(quick: bool, only: set[str] | None) -> list[Case]:
    n = 1000 if not quick else 20
    burst = 200 if not quick else 10
    cases: list[Case] = []
    if only is None or "burst" in only:
        for target, transport in [
            ("rtdelivery", "ws"),
            ("naive", "ws"),
            ("floor", "ws"),
            ("rtdelivery", "sse"),
            ("floor", "sse"),
        ]:
            cases.append(Case("burst", target, transport, n, burst, loadgens=1 if quick else 2))
    cases += _eventstream_cases(quick, only)
    if only is None or "steady" in only:
        steady = 100 if not quick else 5
        for target, transport in [("rtdelivery", "ws"), ("rtdelivery", "sse"), ("floor", "ws")]:
            cases.append(
                Case("steady", target, transport, n, steady, rate=5.0, loadgens=1 if quick else 2)
            )
    if only is None or "idle" in only:
        sizes = [5000, 10000] if not quick else [30]
        for size in sizes:
            for transport in ("ws", "sse"):
                cases.append(
                    Case(
                        "idle",
                        "rtdelivery",
                        transport,
                        size,
                        3,
                        rate=1.0,
                        loadgens=1 if quick else 4,
                        timeout=240,
                    )
                )
    if only is None or "transports" in only:
        clients = 200 if not quick else 10
        count = 20 if not quick else 4
        for transport in ("poll", "longpoll", "sse", "ws"):
            cases.append(
                Case("transports", "rtdelivery", transport, clients, count, rate=2.0, timeout=60)
            )
    if only is None or "workers" in only:
        # Scaling with processes: 1, 2 and 4 server processes behind one Redis (each on
        # its own port, as behind a load balancer), the same subscribers spread evenly.
        for k in (1, 2, 4):
            cases.append(
                Case(
                    "workers",
                    "rtdelivery",
                    "ws",
                    n,
                    burst,
                    servers=k,
                    loadgens=k if quick else 4,
                    note=f"{k} server processes",
                )
            )
    if only is None or "ws-servers" in only:
        # Uvicorn's WebSocket implementations and Daphne side by side, with the raw floor:
        # CPU per delivery in the burst, RSS per idle connection.
        idle = 5000 if not quick else 30
        for scenario, clients, events, rate, gens in [
            ("ws-servers burst", n, burst, 0.0, 1 if quick else 2),
            ("ws-servers idle", idle, 3, 1.0, 1 if quick else 4),
        ]:
            for server, ws in WS_SERVERS:
                target = "floor" if server == "floor" else "rtdelivery"
                cases.append(
                    Case(
                        scenario,
                        target,
                        "ws",
                        clients,
                        events,
                        rate=rate,
                        server=server,
                        ws=ws,
                        loadgens=gens,
                        timeout=240,
                        note="ws-servers",
                    )
                )
    if only is None or "poll-cost" in only:
        reqs = 2000 if not quick else 20
        cases.append(
            Case(
                "poll-cost",
                "rtdelivery",
                "get",
                20,
                0,
                path="/bare",
                requests=reqs,
                note="bare async Django view returning {}",
            )
        )
        cases.append(
            Case(
                "poll-cost",
                "rtdelivery",
                "get",
                20,
                0,
                path="<unchanged-poll>",
                requests=reqs,
                note="unchanged short poll",
            )
        )
    return cases


def _eventstream_cases(quick: bool, only: set[str] | None) -> list[Case]:
    """django-eventstream's own view (Daphne, its RedisStorage and EVENTSTREAM_REDIS) and
    the bridge, SSE, in the burst and idle scenarios; ``--only eventstream`` runs these
    with rtdelivery's SSE rows of the same sizes, so the three compare in one run."""
    alone = only is not None and "eventstream" in only
    targets = [("rtdelivery", "uvicorn")] if alone else []
    targets += [("eventstream", "daphne"), ("bridge", "uvicorn")]
    gens = 1 if quick else 2
    cases: list[Case] = []
    if only is None or alone or "burst" in only:
        n, burst = (1000, 200) if not quick else (20, 10)
        for target, server in targets:
            cases.append(
                Case("burst", target, "sse", n, burst, server=server, loadgens=gens, note="es")
            )
    if only is None or alone or "idle" in only:
        idle = 5000 if not quick else 30
        for target, server in targets:
            cases.append(
                Case(
                    "idle",
                    target,
                    "sse",
                    idle,
                    3,
                    rate=1.0,
                    server=server,
                    loadgens=gens * 2,
                    timeout=240,
                    note="es",
                )
            )
    return cases


def _eventstream_ratios(results: list[dict[str, Any]]) -> list[str]:
    rows = {
        (r["scenario"], r["target"]): r
        for r in results
        if r.get("transport") == "sse"
        and "error" not in r
        and r.get("scenario") in ("burst", "idle")
    }
    out = []
    for scenario in ("burst", "idle"):
        parts = []
        for target in ("eventstream", "bridge", "rtdelivery"):
            r = rows.get((scenario, target))
            if r is None:
                continue
            parts.append(
                f"{target} {r['loss_pct']}% lost, {r['cpu_us_per_delivery']} µs CPU/delivery, "
                f"{r['rss_per_conn_kb']} KB RSS/conn, {r['threads_connected']} threads"
            )
        if len(parts) > 1 and (scenario, "eventstream") in rows:
            out.append(
                f"django-eventstream vs bridge vs rtdelivery SSE, {scenario}: " + "; ".join(parts)
            )
    return out


def run_all(cases: list[Case], verbose: bool = True) -> list[dict[str, Any]]:
    results = []
    for case in cases:
        if verbose:
            print(
                f"# {case.scenario}: {case.target}/{case.transport} x{case.clients} ...",
                file=sys.stderr,
                flush=True,
            )
        try:
            results.append(run_case(case))
        except Exception as exc:
            results.append(
                {
                    "scenario": case.scenario,
                    "target": case.target,
                    "transport": case.transport,
                    "clients": case.clients,
                    "error": f"{type(exc).__name__}: {exc}",
                }
            )
    return results


def versions() -> dict[str, str]:
    names = ["django", "channels", "channels-redis", "daphne", "uvicorn", "websockets", "redis"]
    out = {
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover
            out[name] = "-"
    return out


COLUMNS = [
    ("scenario", "scenario"),
    ("target", "target"),
    ("transport", "transport"),
    ("server", "server"),
    ("clients", "conns"),
    ("delivered", "delivered"),
    ("expected", "expected"),
    ("loss_pct", "loss %"),
    ("deliveries_per_s", "deliv/s"),
    ("p50_ms", "p50 ms"),
    ("p95_ms", "p95 ms"),
    ("p99_ms", "p99 ms"),
    ("max_ms", "max ms"),
    ("cpu_us_per_delivery", "CPU µs/deliv"),
    ("rss_per_conn_kb", "RSS KB/conn"),
    ("threads_connected", "threads"),
    ("requests", "requests"),
    ("empty", "empty"),
    ("bytes", "bytes"),
]


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in results:
        if "error" in r:
            lines.append(
                f"| {r['scenario']} | {r['target']} | {r['transport']} | ERROR: {r['error']} |"
            )
            continue
        cells = []
        for key, _ in COLUMNS:
            v = r.get(key)
            cells.append("-" if v is None else (f"{v:g}" if isinstance(v, float) else str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(results: list[dict[str, Any]]) -> list[str]:
    def find(scenario: str, target: str, transport: str, note: str = "") -> dict[str, Any] | None:
        for r in results:
            if (
                (r.get("scenario"), r.get("target"), r.get("transport"))
                == (scenario, target, transport)
                and (not note or r.get("note") == note)
                and "error" not in r
            ):
                return r
        return None

    out = []

    def cpu(r: dict[str, Any] | None) -> float:
        value = r.get("cpu_us_per_delivery") if r else None
        return float(value) if value else 0.0

    rt_ws, floor_ws, naive_ws = (find("burst", t, "ws") for t in ("rtdelivery", "floor", "naive"))
    rt_sse, floor_sse = find("burst", "rtdelivery", "sse"), find("burst", "floor", "sse")
    if cpu(rt_ws) and cpu(floor_ws):
        out.append(
            f"WebSocket CPU/delivery vs raw floor: {cpu(rt_ws) / cpu(floor_ws):.2f}x (target <= 1.5x)"
        )
    if cpu(rt_ws) and cpu(naive_ws):
        out.append(
            f"rtdelivery WebSocket is {cpu(naive_ws) / cpu(rt_ws):.1f}x cheaper per delivery than naive Channels (target >= 15x)"
        )
    if cpu(rt_sse) and cpu(floor_sse):
        out.append(
            f"SSE CPU/delivery vs raw SSE floor: {cpu(rt_sse) / cpu(floor_sse):.2f}x (target <= 1.5x)"
        )
    bare = find("poll-cost", "rtdelivery", "get", "bare async Django view returning {}")
    poll = find("poll-cost", "rtdelivery", "get", "unchanged short poll")
    if cpu(bare) and cpu(poll):
        out.append(
            f"unchanged poll vs bare async Django view, CPU/request: {cpu(poll) / cpu(bare):.2f}x (target <= 1.1x)"
        )
    steady = find("steady", "rtdelivery", "ws")
    if steady and steady.get("p99_ms") is not None:
        out.append(
            f"steady p99 publish->receive (WebSocket): {steady['p99_ms']} ms (target <= 20 ms)"
        )
    out += _ws_server_ratios(results) + _worker_ratios(results) + _eventstream_ratios(results)
    for r in results:
        if r.get("scenario") == "idle" and "error" not in r and r.get("target") == "rtdelivery":
            out.append(
                f"idle {r['transport']} x{r['clients']}: {r['rss_per_conn_kb']} KB RSS/conn, "
                f"{r['threads_connected']} server threads (target <= 20 KB, no thread per conn)"
            )
    return out


def _ws_server_ratios(results: list[dict[str, Any]]) -> list[str]:
    ok = [r for r in results if r.get("note") == "ws-servers" and "error" not in r]
    floor = {r["scenario"]: r for r in ok if r["target"] == "floor"}
    out = []
    for r in ok:
        if r["target"] == "floor":
            continue
        limit = floor.get(r["scenario"])
        if r["scenario"].endswith("burst") and limit and limit.get("cpu_us_per_delivery"):
            ratio = (r["cpu_us_per_delivery"] or 0) / limit["cpu_us_per_delivery"]
            out.append(
                f"ws-servers {r['server']}: CPU/delivery {r['cpu_us_per_delivery']} µs = "
                f"{ratio:.2f}x the raw floor (target <= 1.2x)"
            )
        elif r["scenario"].endswith("idle"):
            extra = f" (raw floor: {limit['rss_per_conn_kb']} KB)" if limit else ""
            out.append(
                f"ws-servers {r['server']}: {r['rss_per_conn_kb']} KB RSS per idle "
                f"connection{extra} (target <= 18 KB)"
            )
    return out


def _worker_ratios(results: list[dict[str, Any]]) -> list[str]:
    rows = [r for r in results if r.get("scenario") == "workers" and "error" not in r]
    one = next((r for r in rows if r.get("servers") == 1), None)
    out = []
    for r in rows:
        each = ", ".join(
            f"{p['cpu_us_per_delivery']} µs ({p['deliveries']} deliveries)"
            for p in r.get("per_process", [])
        )
        line = (
            f"workers x{r['servers']}: {r['deliveries_per_s']} deliveries/s, "
            f"{r['cpu_us_per_delivery']} µs CPU/delivery over all; per process: {each}"
        )
        if one and r is not one and r.get("cpu_us_per_delivery") and one.get("cpu_us_per_delivery"):
            # Every process receives every event from the backplane: the CPU the extra
            # processes add, per event and per added process.
            total = r["cpu_us_per_delivery"] * r["delivered"]
            base = one["cpu_us_per_delivery"] * one["delivered"]
            per = (total - base) / (r["events"] * (r["servers"] - 1))
            line += f"; +{per:.0f} µs CPU per event per added process vs 1 process"
        out.append(line)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        choices=[
            "burst",
            "steady",
            "idle",
            "transports",
            "workers",
            "ws-servers",
            "poll-cost",
            "publish",
            "eventstream",
        ],
        help="run only these scenarios (repeatable; eventstream: django-eventstream, the "
        "bridge and rtdelivery SSE in the burst and idle scenarios)",
    )
    parser.add_argument("--json", help="write the results as JSON to this file")
    parser.add_argument(
        "--server",
        choices=["uvicorn", "daphne"],
        default="uvicorn",
        help="server for rtdelivery (the baselines always run as documented)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    cases = scenarios(args.quick, set(args.only) if args.only else None)
    for case in cases:
        if case.target in ("rtdelivery", "bridge") and case.note != "ws-servers":
            case.server = args.server
            if args.server == "daphne":
                case.workers = 1  # one Daphne process per port; scale with more processes
    results = run_all(cases)
    if cases:
        print(markdown(results))
        print()
        for line in ratios(results):
            print("- " + line)
    publish_results: list[dict[str, Any]] = []
    if args.only is None or "publish" in args.only:
        publish_results = run_publish(args.quick)
        print()
        print(publishing.markdown(publish_results))
        print()
        for line in publishing.ratios(publish_results):
            print("- " + line)
    info = versions()
    print()
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "versions": info,
                    "results": results,
                    "ratios": ratios(results),
                    "publish": publish_results,
                },
                f,
                indent=2,
            )
    return 1 if any("error" in r for r in [*results, *publish_results]) else 0


def run_publish(quick: bool) -> list[dict[str, Any]]:
    """The publish-throughput scenario (bench.publishing), each case on its own key prefix."""
    results = []
    for case in publishing.cases(quick):
        print(
            f"# publish: {case.target} x{case.concurrency} subscribers={case.subscribers} ...",
            file=sys.stderr,
            flush=True,
        )
        prefix = f"rtdbench:{uuid.uuid4().hex[:8]}:"
        try:
            results.append(publishing.run_case(case, _env(prefix)))
        except Exception as exc:
            results.append({**asdict(case), "error": f"{type(exc).__name__}: {exc}"})
        finally:
            _cleanup(prefix)
    return publishing.with_ratios(results)
