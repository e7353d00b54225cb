"""A real Redis Cluster on loopback: N masters with R replicas each, started and torn down here.

Used by ``tests/coupons/test_cluster.py`` and ``benchmarks/coupons.py``. Every node is a
``redis-server --cluster-enabled yes`` process on a free port (its bus port, +10000, free
too) with no persistence; ``redis-cli --cluster create ... --cluster-replicas R`` assigns
the slots and the replicas, and :meth:`LocalCluster.start` returns once every node says
``cluster_state:ok``, all 16384 slots are assigned and every replica's link is up.

    with LocalCluster(tmp_path, masters=3, replicas=1) as lc:
        lc.url                    # "redis+cluster://127.0.0.1:PORT"
        lc.kill(lc.master_of(key))  # SIGKILL a master
        lc.wait_failover(port)    # its replica took over, the cluster is ok again
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

SLOTS = 16384


def cluster_binaries() -> tuple[str, str] | None:
    """``(redis-server, redis-cli)`` when both are installed, else None."""
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
    if Path(server).exists() and Path(cli).exists():
        return server, cli
    return None


MISSING = (
    "redis-server and redis-cli are not installed (Debian's redis-server package): "
    "no local Redis Cluster can be started"
)


def _free_port_pair(taken: set[int]) -> int:
    """A free loopback port below 55000 whose cluster-bus twin (port + 10000) is free too."""
    for _ in range(500):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 55_000 or port in taken or port + 10_000 in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port pair for a cluster node")


def _client(port: int, timeout: float = 1.0) -> redis.Redis:
    return redis.Redis(
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


class LocalCluster:
    """A throwaway Redis Cluster of ``masters`` x (1 + ``replicas``) loopback processes."""

    def __init__(
        self,
        workdir: Path,
        *,
        masters: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
    ):
        found = cluster_binaries()
        if found is None:
            raise RuntimeError(MISSING)
        self.server, self.cli = found
        self.workdir = Path(workdir)
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.ports: list[int] = []
        self.procs: dict[int, subprocess.Popen] = {}
        self._successor: dict[int, int | None] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 30.0) -> LocalCluster:
        taken: set[int] = set()
        for _ in range(self.masters * (1 + self.replicas)):
            port = _free_port_pair(taken)
            taken.update((port, port + 10_000))
            self.ports.append(port)
        try:
            for port in self.ports:
                self._spawn(port)
            for port in self.ports:
                self._wait_ping(port, time.time() + 20)
            subprocess.run(
                [self.cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                check=True, capture_output=True, text=True, timeout=timeout,
            )  # fmt: skip
            self.wait_ok(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, port: int) -> None:
        d = self.workdir / str(port)
        d.mkdir(parents=True, exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [self.server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d),
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(self.node_timeout_ms), "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def _wait_ping(self, port: int, deadline: float) -> None:
        c = _client(port, 0.5)
        try:
            while True:
                try:
                    c.ping()
                    return
                except redis.exceptions.ConnectionError:
                    proc = self.procs[port]
                    if proc.poll() is not None or time.time() > deadline:
                        raise RuntimeError(
                            f"redis-server on port {port} did not start (exit {proc.poll()})"
                        ) from None
                    time.sleep(0.05)
        finally:
            c.close()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            proc.wait()
        self.procs.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ views
    @property
    def url(self) -> str:
        """``redis+cluster://`` URL of the live nodes, for ``MKTLAB_REDIS_URL`` / ``get_redis``."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.alive())

    def alive(self) -> list[int]:
        """Ports of the node processes still running."""
        return [p for p in self.ports if p in self.procs and self.procs[p].poll() is None]

    def nodes(self, via: int | None = None) -> list[dict]:
        """``CLUSTER NODES`` as dicts: ``port``, ``id``, ``role``, ``master_id``, ``failed``,
        ``slots`` (count), as one live node sees them."""
        c = _client(via or self.alive()[0])
        try:
            parsed = c.cluster("nodes")  # redis-py parses CLUSTER NODES: "ip:port" -> fields
        finally:
            c.close()
        out = []
        for addr, f in parsed.items():
            flags = f["flags"].split(",")
            out.append(
                {
                    "id": f["node_id"],
                    "port": int(addr.rsplit(":", 1)[1]),
                    "role": "master" if "master" in flags else "replica",
                    "failed": "fail" in flags or "fail?" in flags,
                    "master_id": None if f["master_id"] == "-" else f["master_id"],
                    "slots": sum(int(r[-1]) - int(r[0]) + 1 for r in f["slots"]),
                }
            )
        return out

    def master_ports(self) -> list[int]:
        """Ports of the healthy masters that own slots."""
        return sorted(
            n["port"]
            for n in self.nodes()
            if n["role"] == "master" and n["slots"] and not n["failed"]
        )

    def master_of(self, key: str) -> int:
        """Port of the master that owns ``key``'s slot."""
        c = _client(self.alive()[0])
        try:
            slot = int(c.execute_command("CLUSTER KEYSLOT", key))
            for lo, hi, primary, *_ in c.execute_command("CLUSTER SLOTS"):
                if int(lo) <= slot <= int(hi):
                    return int(primary[1])
        finally:
            c.close()
        raise RuntimeError(f"no master owns the slot of {key!r}")

    def replica_of(self, master_port: int, *, healthy: bool = True) -> int | None:
        nodes = self.nodes()
        mid = next(n["id"] for n in nodes if n["port"] == master_port)
        for n in nodes:
            if n["master_id"] == mid and not (healthy and n["failed"]):
                return n["port"]
        return None

    # ------------------------------------------------------------------ state
    def healthy(self) -> bool:
        """Every live node: ``cluster_state:ok``, all slots assigned and ok, every live
        replica's link to its master up."""
        for port in self.alive():
            c = _client(port)
            try:
                info = c.cluster("info")
                if (
                    info.get("cluster_state") != "ok"
                    or int(info.get("cluster_slots_ok", 0)) != SLOTS
                ):
                    return False
                repl = c.info("replication")
                if repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                    return False
            except redis.exceptions.RedisError:
                return False
            finally:
                c.close()
        return True

    def wait_ok(self, timeout: float = 30.0) -> None:
        deadline = time.time() + timeout
        while not self.healthy():
            if time.time() > deadline:
                raise RuntimeError(f"the cluster on ports {self.ports} did not become ok")
            time.sleep(0.1)

    def kill(self, port: int) -> None:
        """SIGKILL one node: no shutdown, no goodbye to the cluster."""
        is_master = port in self.master_ports()
        with_replica = self.replica_of(port, healthy=False) if is_master else None
        self._successor[port] = with_replica
        proc = self.procs[port]
        proc.kill()
        proc.wait()

    def freeze(self, port: int) -> None:
        """SIGSTOP one node: it holds its sockets but reads and answers nothing."""
        self.procs[port].send_signal(signal.SIGSTOP)

    def thaw(self, port: int) -> None:
        """SIGCONT a frozen node."""
        self.procs[port].send_signal(signal.SIGCONT)

    def wait_failover(self, dead_port: int, timeout: float = 20.0) -> int:
        """Wait until the replica of the master killed on ``dead_port`` owns its slots and
        the cluster is ok again; return the new master's port."""
        successor = self._successor.get(dead_port)
        if successor is None:
            raise RuntimeError(f"port {dead_port} was not a master with a replica when killed")
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                nodes = {n["port"]: n for n in self.nodes(via=successor)}
            except redis.exceptions.RedisError:
                nodes = {}
            new, dead = nodes.get(successor), nodes.get(dead_port)
            if (
                new is not None and new["role"] == "master" and new["slots"]
                and dead is not None and dead["failed"] and self.healthy()
            ):  # fmt: skip
                return successor
            time.sleep(0.1)
        raise RuntimeError(f"the replica on port {successor} did not take over from {dead_port}")
