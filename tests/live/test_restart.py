"""Restart the broker mid-stream: no action lost, none duplicated.

Redis: our own ``redis-server --appendonly yes`` (bus, checkpoints, caps and the issuer all
live there) is shut down and started again while workers run. RabbitMQ: a private node's
application is stopped and started (``rabbitmqctl stop_app / start_app``). The decision
log must equal the simulation, the coupon ledger and the delivery log must hold each
action exactly once.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from mktlab.live.bus import open_bus
from mktlab.live.decisions import DecisionLog
from mktlab.live.producer import publish_frame
from mktlab.live.synth import synthetic_events
from mktlab.live.worker import run_workers, stop_workers
from tests.live.test_loop import _cleanup, _cols, _expected, _issuer, _spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _drain(bus, timeout=180):
    deadline, quiet = time.time() + timeout, 0
    while time.time() < deadline:
        st = bus.stats("live")
        left = sum((p["pending"] or 0) + (p["lag"] or 0) for p in st["partitions"].values())
        quiet = quiet + 1 if left == 0 else 0
        if quiet >= 4:
            return
        time.sleep(0.5)
    pytest.fail(f"the bus did not drain: {bus.stats('live')}")


def _check(spec, issuer, events):
    from mktlab.messaging import DeliveryLog

    live = DecisionLog(spec["decisions_dir"]).read()
    pd.testing.assert_frame_equal(_cols(live), _cols(_expected(spec, events)))
    coupons = live[(live["action"] == "coupon") & (live["status"] == "ok")]
    assert sum(issuer.ledger.count(c) for c in ("browse-rescue", "spring-c10")) == len(coupons) > 0
    sent = DeliveryLog(spec["delivery_url"]).deliveries()
    msgs = live[(live["action"] == "message") & (live["status"] == "ok")]
    assert len(sent) == len(msgs) > 0 and sent["key"].is_unique


def _run(tmp_path, backend, restart):
    spec = _spec(tmp_path, backend)
    spec.update(idle_exit=None, stop_file=str(tmp_path / "stop"))
    issuer = _issuer(spec)
    events = synthetic_events(250, 8000, seed=44)
    procs = []
    try:
        with open_bus(backend, partitions=4, namespace=spec["namespace"], groups=("live",)) as bus:
            procs = run_workers(spec, 2, wait=False)
            publish_frame(bus, events.iloc[:4000], rate=4000)
            t = threading.Thread(target=restart)
            t.start()  # the broker goes down while the rest is published and handled
            publish_frame(bus, events.iloc[4000:], rate=4000, tick=True)
            t.join()
            _drain(bus)
        Path(spec["stop_file"]).touch()
        for p in procs:
            p.join(60)
        assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
        _check(spec, issuer, events)
    finally:
        stop_workers(procs)
        _cleanup(spec)


def test_redis_restart_mid_stream(tmp_path, fresh_redis_server, monkeypatch):
    monkeypatch.setenv("MKTLAB_REDIS_URL", fresh_redis_server.url)  # the workers inherit it
    _run(tmp_path, "redis", lambda: fresh_redis_server.restart(graceful=True, down_s=1.0))


def test_rabbitmq_restart_mid_stream(tmp_path, fresh_rabbitmq_server, monkeypatch):
    monkeypatch.setenv("MKTLAB_AMQP_URL", fresh_rabbitmq_server.url)

    def bounce():
        fresh_rabbitmq_server.stop_app()
        time.sleep(1.0)
        fresh_rabbitmq_server.start_app()

    _run(tmp_path, "rabbitmq", bounce)
