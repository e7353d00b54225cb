"""The whole live loop through a real broker and worker processes.

Events are published to the real bus (Redis Streams on ``MKTLAB_REDIS_URL`` / the
embedded Redis, and RabbitMQ at 127.0.0.1:5672 when it answers), ``run_workers`` starts
real processes, coupons go through the real Redis issuer and ledger, messages through
the gateway's delivery log. The checks: decisions equal the in-memory simulation, and a
worker SIGKILLed mid-stream loses and duplicates nothing.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from mktlab.coupons import Campaign, CouponIssuer, get_redis
from mktlab.live.bus import open_bus
from mktlab.live.context import LiveContext
from mktlab.live.decisions import DecisionLog
from mktlab.live.journey_runtime import DecisionRecord
from mktlab.live.journey_sim import simulate as simulate_journeys
from mktlab.live.producer import publish_frame
from mktlab.live.runner import definitions, load_spec
from mktlab.live.synth import synthetic_events
from mktlab.live.worker import run_workers, stop_workers
from mktlab.strategy import simulate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytestmark = pytest.mark.integration


def _rabbit_up() -> bool:
    try:
        import pika

        from mktlab.config import settings

        pika.BlockingConnection(pika.URLParameters(settings().amqp_url)).close()
        return True
    except Exception:
        return False


BACKENDS = [
    "redis",
    pytest.param(
        "rabbitmq",
        marks=pytest.mark.skipif(
            not _rabbit_up(), reason="RabbitMQ is not running at MKTLAB_AMQP_URL (127.0.0.1:5672)"
        ),
    ),
]


def _spec(tmp_path: Path, backend: str) -> dict:
    tag = uuid.uuid4().hex[:8]
    spec = load_spec(EXAMPLES / "live.yaml")
    spec.update(
        backend=backend,
        namespace=f"tl{tag}",
        partitions=4,
        group="live",
        issuer_namespace=f"tl{tag}:cp",
        ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        delivery_url=f"sqlite:///{tmp_path / 'deliveries.db'}",
        decisions_dir=str(tmp_path / "decisions"),
        idle_exit=3.0,
        checkpoint_every=0.1,
        tz="Europe/Paris",
    )
    return spec


def _issuer(spec) -> CouponIssuer:
    iss = CouponIssuer(get_redis(), spec["ledger_url"], namespace=spec["issuer_namespace"])
    for cid in ("browse-rescue", "spring-c10"):
        iss.create_campaign(Campaign(cid, stock=1_000_000, face_value=5.0, per_user_limit=10_000))
    return iss


def _expected(spec, events):
    strategies, journeys, _ = definitions(spec)
    ctx = LiveContext(tz="Europe/Paris")
    s = simulate(strategies, events, ctx).decisions_frame()
    sim = simulate_journeys(journeys, events, ctx, until=float(events["ts"].max()))
    fields = list(DecisionRecord.__dataclass_fields__)
    j = pd.DataFrame(
        [
            DecisionRecord(**{f: r[f] for f in fields}).to_row()
            for r in sim.decisions.to_dict("records")
        ]
    )
    return pd.concat([s, j], ignore_index=True)


def _cols(df):
    keep = ["source", "node", "user_id", "ts", "action", "status", "arm"]
    return df[keep].astype(str).sort_values(keep).reset_index(drop=True)


def _cleanup(spec):
    r = get_redis()
    for k in r.scan_iter(f"{spec['namespace']}*"):
        r.delete(k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_events_through_the_bus_equal_the_simulation(tmp_path, backend):
    spec = _spec(tmp_path, backend)
    issuer = _issuer(spec)
    events = synthetic_events(120, 3000, seed=21)
    bad = pd.DataFrame(
        [
            {"user_id": "", "event": "view", "ts": 1.79e9},
            {"user_id": "u1", "event": "view", "ts": "yesterday"},
        ]
    )
    try:
        with open_bus(backend, partitions=4, namespace=spec["namespace"], groups=("live",)) as bus:
            rep = publish_frame(bus, pd.concat([events, bad], ignore_index=True), tick=True)
            assert rep == {"published": len(events), "dead_lettered": 2}
            results = run_workers(spec, 2, wait=True)
            assert sum(r["events"] for r in results) == len(events) + 4  # + one tick per partition
            assert bus.stats("live")["dead_letters"] == 2
        live = DecisionLog(spec["decisions_dir"]).read()
        exp = _expected(spec, events)
        pd.testing.assert_frame_equal(_cols(live), _cols(exp))
        coupons = live[(live["action"] == "coupon") & (live["status"] == "ok")]
        ledger = sum(issuer.ledger.count(c) for c in ("browse-rescue", "spring-c10"))
        assert ledger == len(coupons) > 0
        from mktlab.messaging import DeliveryLog

        sent = DeliveryLog(spec["delivery_url"]).deliveries()
        msgs = live[(live["action"] == "message") & (live["status"] == "ok")]
        assert len(sent) == len(msgs) > 0 and sent["key"].is_unique
    finally:
        _cleanup(spec)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_a_worker_mid_stream_loses_and_duplicates_nothing(tmp_path, backend):
    spec = _spec(tmp_path, backend)
    spec.update(idle_exit=None, stop_file=str(tmp_path / "stop"))
    issuer = _issuer(spec)
    events = synthetic_events(300, 12_000, seed=33)
    procs = []
    try:
        with open_bus(backend, partitions=4, namespace=spec["namespace"], groups=("live",)) as bus:
            procs = run_workers({**spec, "worker_prefix": "a"}, 2, wait=False)
            publish_frame(bus, events.iloc[:6000], rate=4000)
            os.kill(procs[0].pid, signal.SIGKILL)  # mid-stream, between checkpoints
            procs[0].join(10)
            publish_frame(bus, events.iloc[6000:], rate=4000, tick=True)
            deadline, quiet = time.time() + 120, 0
            while time.time() < deadline:  # until nothing is waiting for a while
                st = bus.stats("live")  # (RabbitMQ reports no pending count: None)
                left = sum((p["pending"] or 0) + (p["lag"] or 0) for p in st["partitions"].values())
                quiet = quiet + 1 if left == 0 else 0
                if quiet >= 4:
                    break
                time.sleep(0.5)
            else:
                pytest.fail(f"the bus did not drain: {bus.stats('live')}")
        Path(spec["stop_file"]).touch()
        for p in procs[1:]:
            p.join(30)
        live = DecisionLog(spec["decisions_dir"]).read()
        exp = _expected(spec, events)
        pd.testing.assert_frame_equal(_cols(live), _cols(exp))
        coupons = live[(live["action"] == "coupon") & (live["status"] == "ok")]
        assert sum(issuer.ledger.count(c) for c in ("browse-rescue", "spring-c10")) == len(coupons)
        from mktlab.messaging import DeliveryLog

        sent = DeliveryLog(spec["delivery_url"]).deliveries()
        msgs = live[(live["action"] == "message") & (live["status"] == "ok")]
        assert len(sent) == len(msgs) and sent["key"].is_unique
    finally:
        stop_workers(procs)
        _cleanup(spec)
