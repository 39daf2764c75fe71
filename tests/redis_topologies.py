"""Private Redis topologies on loopback for the scale-out tests: a Redis Cluster of three
masters, and a master + replica watched by three Sentinels.

Every process is a ``redis-server`` started here on free ports, with its own directory and
log, no persistence, and is stopped by its PID (SIGTERM, then SIGKILL if it lingers). Every
wait polls a condition under a deadline. ``redis-sentinel`` is not needed: Sentinels run as
``redis-server <config> --sentinel``.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import find_free_port

#: Upper bound for one wait on a Redis process (seconds); healthy runs need far less.
WAIT = 20.0
SERVICE = "rtdmaster"
#: Sentinel timing: a master not answering for this long is down (short: a test).
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


def redis_server_path() -> str:
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail(
            "redis-server is not installed; these tests start private ones "
            "(Debian/Ubuntu: apt-get install redis-server).",
            pytrace=False,
        )
    return executable


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``predicate`` until it returns something truthy (errors count as not yet)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            result = predicate()
        except (redis.RedisError, OSError) as exc:
            result, last = None, exc
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(0.05)  # polling a condition, bounded by the deadline


class RedisProcess:
    """One ``redis-server`` (or Sentinel) on a loopback port."""

    def __init__(self, name: str, port: int, workdir: Path, args: list[str]) -> None:
        self.name = name
        self.port = port
        self.workdir = workdir
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, **kwargs: Any) -> redis.Redis:
        kwargs.setdefault("socket_connect_timeout", 2)
        kwargs.setdefault("socket_timeout", 2)
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def start(self) -> None:
        assert self.process is None, f"{self.name} already running"
        self.process = subprocess.Popen(
            [redis_server_path(), *self.args],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ready(self) -> None:
        with self.client() as client:

            def answers() -> bool:
                if self.process is not None and self.process.poll() is not None:
                    pytest.fail(f"{self.name} exited early; its log:\n{self.log()}", pytrace=False)
                return bool(client.ping())

            wait_until(answers, f"{self.name} to answer PING")

    def kill(self) -> None:
        """SIGKILL: the process dies at once, with whatever it had not replicated."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(WAIT)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=WAIT)


def server_args(port: int, workdir: Path, *extra: str) -> list[str]:
    return [
        "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--daemonize", "no", "--dir", str(workdir), "--logfile", str(workdir / "redis.log"),
        *extra,
    ]  # fmt: skip


# -- Redis Cluster ------------------------------------------------------------------------------


class Cluster:
    """Three masters, no replicas: every slot on exactly one node."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.nodes = []
        for index in range(size):
            port, bus = find_free_port(), find_free_port()
            node_dir = workdir / f"cluster-{index}"
            node_dir.mkdir(parents=True, exist_ok=True)
            args = server_args(
                port, node_dir,
                "--cluster-enabled", "yes", "--cluster-port", str(bus),
                "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", "2000",
            )  # fmt: skip
            self.nodes.append(RedisProcess(f"cluster node {index}", port, node_dir, args))

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_ready()
        cli = shutil.which("redis-cli")
        assert cli is not None, "redis-cli is needed to create the cluster"
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        done = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            timeout=WAIT,
            check=False,
        )
        assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
        for node in self.nodes:
            with node.client() as client:
                wait_until(
                    lambda c=client: c.cluster("info")["cluster_state"] == "ok",
                    f"{node.name}: cluster_state ok",
                )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def slot_owner(self, key: str) -> int:
        """Index of the node that holds ``key``'s slot."""
        with self.nodes[0].client() as client:
            slot = client.cluster("keyslot", key)
            for start, end, (_host, port, *_), *_ in client.cluster("slots"):
                if start <= slot <= end:
                    return next(i for i, n in enumerate(self.nodes) if n.port == int(port))
        raise AssertionError(f"no node owns slot {slot}")


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A running 3-master cluster, shared by a module's tests (isolate them by key prefix)."""
    cluster = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# -- Sentinel -----------------------------------------------------------------------------------


class SentinelGroup:
    """A master and a replica, watched by three Sentinels (quorum 2) under ``SERVICE``."""

    def __init__(self, workdir: Path) -> None:
        master_port, replica_port = find_free_port(), find_free_port()
        self.master = RedisProcess(
            "master", master_port, workdir / "master", server_args(master_port, workdir / "master")
        )
        self.replica = RedisProcess(
            "replica",
            replica_port,
            workdir / "replica",
            server_args(
                replica_port, workdir / "replica", "--replicaof", "127.0.0.1", str(master_port)
            ),
        )
        self.sentinels = []
        for index in range(3):
            port = find_free_port()
            sentinel_dir = workdir / f"sentinel-{index}"
            sentinel_dir.mkdir(parents=True, exist_ok=True)
            config = sentinel_dir / "sentinel.conf"  # Sentinel rewrites its config file
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndaemonize no\n"
                f"dir {sentinel_dir}\nlogfile {sentinel_dir / 'redis.log'}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self.sentinels.append(
                RedisProcess(f"sentinel {index}", port, sentinel_dir, [str(config), "--sentinel"])
            )

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", s.port) for s in self.sentinels]

    @property
    def processes(self) -> list[RedisProcess]:
        return [self.master, self.replica, *self.sentinels]

    def start(self) -> None:
        for process in self.processes:
            process.start()
        for process in self.processes:
            process.wait_ready()
        with self.replica.client() as replica:
            wait_until(
                lambda: replica.info("replication").get("master_link_status") == "up",
                "the replica to sync with the master",
            )
        for sentinel in self.sentinels:
            with sentinel.client() as client:

                def ready(c: redis.Redis = client) -> bool:
                    state = c.sentinel_master(SERVICE)
                    return int(state["num-slaves"]) == 1 and int(state["num-other-sentinels"]) == 2

                wait_until(ready, f"{sentinel.name} to know the replica and the other Sentinels")

    def master_address(self) -> tuple[str, int] | None:
        """The master as the first Sentinel that answers sees it."""
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError, OSError), sentinel.client() as client:
                host, port = client.sentinel_get_master_addr_by_name(SERVICE)
                return str(host), int(port)
        return None

    def wait_promoted(self, timeout: float = WAIT) -> float:
        """Wait until every Sentinel names the replica as master and it accepts writes;
        returns when (monotonic)."""

        def promoted() -> bool:
            for sentinel in self.sentinels:
                with sentinel.client() as client:
                    _, port = client.sentinel_get_master_addr_by_name(SERVICE)
                    if int(port) != self.replica.port:
                        return False
            with self.replica.client() as client:
                return client.info("replication")["role"] == "master"

        wait_until(promoted, "the replica to be promoted", timeout)
        return time.monotonic()

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


@pytest.fixture(scope="module")
def sentinel_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """A running master + replica + 3 Sentinels, shared by a module's tests: a test that
    kills the master must be the module's only user of it."""
    group = SentinelGroup(tmp_path_factory.mktemp("sentinel"))
    try:
        group.start()
        yield group
    finally:
        group.stop()
