"""``bentoml serve`` stopped with SIGTERM leaves no embedded redis-server behind.

Before, the daemonised ``redis-server`` a worker had started outlived the service (under
PID 1) and the next start silently reused it. Now the worker that started it stops it
when the service shuts down; one started by another process is left to that process.
"""

from __future__ import annotations

import pytest

from tests.coupons.test_embedded_redis import servers_of, wait_gone


@pytest.fixture
def embedded_env(tmp_path, served_models):
    data = tmp_path / "data"
    # MKTLAB_REDIS_URL empty = unset: the service starts the embedded server itself
    yield {"MKTLAB_DATA_DIR": str(data), "MKTLAB_REDIS_URL": "",
           "MKTLAB_SERVICE_NAMESPACE": "test:embedded:cp"}, data  # fmt: skip
    from mktlab.coupons.connection import stop_embedded

    stop_embedded(data / "redis" / "coupons.rdb")


def test_sigterm_to_bentoml_serve_stops_the_embedded_redis(embedded_env):
    from mktlab.service.server import ServiceProcess
    from tests.service.conftest import HTTP

    env, data = embedded_env
    sp = ServiceProcess(env=env, log_path=data / "serve.log")
    sp.start(timeout=180)
    try:
        status, health = HTTP(sp.url).get("/healthz")  # the worker connects: starts Redis
        assert status == 200, health
        assert health["redis"] == "ok"
        assert servers_of(data / "redis"), "the service did not start an embedded server"
    finally:
        sp.stop()  # SIGTERM to the process group, as Ctrl+C / a supervisor would
    assert sp.proc.returncode is not None
    left = wait_gone(data / "redis")
    assert not left, f"redis-server {left} outlived bentoml serve:\n{sp.log_tail(20)}"
