"""The live engine equals the in-memory simulation, and survives a crash without doubling.

Runs against the real Redis (``MKTLAB_REDIS_URL`` or the embedded server) with a
per-test key namespace.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest

from mktlab.coupons import CouponIssuer, get_redis
from mktlab.coupons.campaign import Campaign
from mktlab.live.bus import Delivery
from mktlab.live.context import LiveContext
from mktlab.live.decisions import DecisionLog
from mktlab.live.effects import EffectExecutor
from mktlab.live.engine import LiveEngine
from mktlab.live.events import Event, partition_of
from mktlab.live.synth import synthetic_events
from mktlab.strategy import Strategy, simulate

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "strategies" / "browse-rescue.yaml"
PARTS = 4


@pytest.fixture
def ns():
    r = get_redis()
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    for k in r.scan_iter(f"{name}*"):
        r.delete(k)


def _deliveries(events: pd.DataFrame) -> list[Delivery]:
    out = []
    for i, row in enumerate(events.itertuples(index=False)):
        ev = Event(
            row.event_id,
            row.user_id,
            float(row.ts),
            row.event,
            {"category": row.category, "amount": float(row.amount)},
        )
        out.append(Delivery(ev, int(partition_of(row.user_id, PARTS)), f"{i}-0", False))
    return out


def _ctx(events, ns):
    users = sorted(events["user_id"].unique())
    return LiveContext(
        audiences={"all": set(users)},
        uplift={u: 0.05 for u in users},
        redis=get_redis(),
        namespace=ns,
    )


def _engine(strategy, ctx, ns, tmp_path, issuer=None):
    return LiveEngine(
        [strategy],
        [],
        context=ctx,
        redis=get_redis(),
        namespace=ns,
        executor=EffectExecutor(issuer),
        decisions=DecisionLog(tmp_path / "dec"),
    )


def _cols(df):
    keep = ["key", "user_id", "ts", "action", "status", "arm", "propensity"]
    return df[keep].sort_values("key").reset_index(drop=True)


def test_live_engine_makes_the_simulations_decisions(ns, tmp_path):
    events = synthetic_events(150, 4000, seed=3)
    s = Strategy.from_yaml(EXAMPLE)
    ctx = _ctx(events, ns)
    sim = simulate(s, events, ctx).decisions_frame()
    assert {"ok", "holdout", "capped", "not_drawn"} <= set(sim["status"])
    eng = _engine(s, ctx, ns, tmp_path)
    eng.process(_deliveries(events))
    eng.checkpoint()
    live = DecisionLog(tmp_path / "dec").read()
    pd.testing.assert_frame_equal(_cols(live), _cols(sim), check_dtype=False)


def test_crash_between_checkpoints_replays_without_doubling(ns, tmp_path):
    """Process, checkpoint, process more, die; the next owner replays: same decisions, one coupon each."""
    events = synthetic_events(120, 3000, seed=5)
    s = Strategy.from_yaml(EXAMPLE)
    ctx = _ctx(events, ns)
    r = get_redis()
    issuer = CouponIssuer(r, namespace=f"{ns}:cp", ledger=f"sqlite:///{tmp_path / 'ledger.db'}")
    issuer.create_campaign(
        Campaign("browse-rescue", stock=100_000, face_value=5.0, per_user_limit=1000)
    )
    dels = _deliveries(events)
    first = _engine(s, ctx, ns, tmp_path, issuer)
    first.process(dels[:1000])
    first.checkpoint()
    first.process(dels[1000:1800])  # effects executed, no checkpoint: then the worker dies
    second = _engine(s, ctx, ns, tmp_path, issuer)
    second.process(dels[1000:])  # the bus redelivers everything after the checkpoint
    second.checkpoint()
    live = DecisionLog(tmp_path / "dec").read()
    sim = simulate(s, events, ctx).decisions_frame()
    pd.testing.assert_frame_equal(_cols(live), _cols(sim), check_dtype=False)
    issued = sim[(sim["action"] == "coupon") & (sim["status"] == "ok")]
    st = issuer.status("browse-rescue")
    assert st["issued"] == len(issued) > 0
    assert issuer.ledger.count("browse-rescue") == len(issued)


def test_replaying_a_checkpointed_batch_is_skipped(ns, tmp_path):
    events = synthetic_events(50, 800, seed=9)
    s = Strategy.from_yaml(EXAMPLE)
    ctx = _ctx(events, ns)
    dels = _deliveries(events)
    a = _engine(s, ctx, ns, tmp_path)
    a.process(dels)
    a.checkpoint()
    b = _engine(s, ctx, ns, tmp_path)  # checkpoint written, ack lost: all redelivered
    rep = b.process(dels)
    assert rep.skipped == len(dels)
    assert rep.events == 0


JOURNEY = Path(__file__).resolve().parents[2] / "examples" / "journeys" / "browse_abandon.yaml"


def _jcols(df):
    keep = ["source", "node", "user_id", "ts", "action", "arm"]
    return df[keep].sort_values(keep).reset_index(drop=True)


def test_journeys_live_equal_the_simulation_across_a_crash(ns, tmp_path):
    from mktlab.live.journey import Journey
    from mktlab.live.journey_runtime import DecisionRecord
    from mktlab.live.journey_sim import simulate as simulate_journeys

    events = synthetic_events(100, 4000, seed=11)
    j = Journey.from_yaml(JOURNEY)
    doc = j.to_dict()  # a variant entered only on two categories (an indexed entry `where`)
    doc["name"] = "browse-abandon-bags"
    for node in doc["nodes"]:
        if node["type"] == "entry":
            node["where"] = [{"field": "event.category", "op": "in", "value": ["bags", "shoes"]}]
    j2 = Journey.from_dict(doc)
    ctx = LiveContext(tz="Europe/Paris")
    sim = simulate_journeys([j, j2], events, ctx)
    fields = list(DecisionRecord.__dataclass_fields__)
    sim_rows = pd.DataFrame(
        [
            DecisionRecord(**{f: r[f] for f in fields}).to_row()
            for r in sim.decisions.to_dict("records")
        ]
    )
    assert {"enter", "coupon", "message", "timeout"} <= set(sim_rows["action"])
    dels = _deliveries(events)

    def mk():
        return LiveEngine(
            [],
            [j, j2],
            context=LiveContext(tz="Europe/Paris", redis=get_redis(), namespace=ns),
            redis=get_redis(),
            namespace=ns,
            decisions=DecisionLog(tmp_path / "dec"),
        )

    a = mk()
    a.process(dels[:1500])
    a.checkpoint()
    a.process(dels[1500:2500])  # dies here: decided and executed, never checkpointed
    b = mk()  # the next owner: state and timers come back from Redis
    b.process(dels[1500:])
    b.flush_timers(float(events["ts"].max()) + b.horizon)
    b.checkpoint()
    live = DecisionLog(tmp_path / "dec").read()
    pd.testing.assert_frame_equal(_jcols(live), _jcols(sim_rows), check_dtype=False)
    sizes = b.journey_state_bytes()
    assert 0 < sizes["value_bytes"] <= 200


def test_a_message_the_gateway_refuses_does_not_take_the_batch_with_it(tmp_path):
    from mktlab.live.effects import EffectExecutor
    from mktlab.messaging import DeliveryLog, Gateway, TemplateCatalog
    from mktlab.strategy import Effect

    templates = TemplateCatalog.from_dict({"hi": {"body": "Hi {name}"}, "plain": {"body": "Hello"}})
    gw = Gateway(DeliveryLog(f"sqlite:///{tmp_path / 'd.db'}"), templates)
    ex = EffectExecutor(gateway=gw)
    effects = [
        Effect("message", "k1", "u1", "n", 1.79e9, {"template": "plain", "channels": ["push"]}),
        Effect("message", "k2", "u2", "n", 1.79e9, {"template": "hi", "channels": ["push"]}),
        Effect("message", "k3", "u3", "n", 1.79e9, {"template": "nope", "channels": ["push"]}),
    ]
    assert ex.execute(effects) == ["message_sent", "message_refused", "message_refused"]
    assert [r.split(":")[0] for r in ex.refused] == ["k2", "k3"]
    assert "name" in ex.refused[0]
    assert list(gw.log.deliveries()["key"]) == ["k1"]
