"""The live engine feeds the watcher's counters, exactly once, and honours the gate in journeys.

A campaign launched through the real lifecycle (SQLite and PostgreSQL registry, real
Redis issuer and ledger) at a 50% gray rollout; its strategy's events go through a real
:class:`~mktlab.live.engine.LiveEngine`. The expected counts are computed independently,
from the rollout and holdout hashes of every user.
"""

from __future__ import annotations

import time

import numpy as np

from mktlab.campaigns.counters import CampaignCounters, LiveTally
from mktlab.campaigns.rollout import CampaignStates, in_rollout
from mktlab.live.bus import Delivery
from mktlab.live.context import LiveContext
from mktlab.live.decisions import DecisionLog
from mktlab.live.effects import EffectExecutor
from mktlab.live.engine import LiveEngine
from mktlab.live.events import Event, partition_of
from mktlab.live.journey import Journey
from mktlab.strategy.eligibility import in_holdout
from tests.campaigns.conftest import ALICE, BOB, make_spec

PARTS = 2


def _strategy(cid: str, budget: dict | None = None) -> dict:
    return {
        "name": cid,
        "campaign_id": cid,
        "policy": {"kind": "rule"},
        "holdout": 0.2,
        "coupon": {"face_value": 5.0, "send_cost": 0.01},
        "budget": budget or {"max_spend": 4_000.0, "max_coupons": 800},
        "rules": {
            "name": f"{cid}-rules",
            "rules": [
                {
                    "id": "cart",
                    "when": {"event": "cart_add"},
                    "then": [{"issue_coupon": {"coupon": cid, "value": 5}}],
                }
            ],
        },
    }


def _launch(lc, rollout: float, budget: dict | None = None, stock: int = 800,
            daily_spend: float = 500.0) -> str:  # fmt: skip
    spec = make_spec(audience=None, plan={"daily_spend": daily_spend})
    cid = spec["campaign_id"]
    spec["strategy"] = _strategy(cid, budget)
    spec["coupon"]["stock"] = stock
    lc.create(spec, ALICE)
    lc.submit(cid, ALICE)
    lc.approve(cid, BOB)
    s = lc.strategy(cid)
    lc.record_simulation(cid, ALICE, {"spend": 100.0, "reach": 50, "roi": 0.2,
                                      "strategy_fingerprint": s.fingerprint()})  # fmt: skip
    lc.launch(cid, ALICE, rollout=rollout)
    return cid


def _deliveries(rows: list[tuple[str, str, float, str]]) -> list[Delivery]:
    out = []
    for i, (eid, user, ts, etype) in enumerate(rows):
        ev = Event(eid, user, ts, etype, {})
        out.append(Delivery(ev, int(partition_of(user, PARTS)), f"{i}-0", False))
    return out


def _engine(lc, strategies, journeys, tmp_path, **kw) -> LiveEngine:
    redis = lc.issuer.redis
    ctx = LiveContext(audiences={}, redis=redis, namespace=f"{lc.namespace}:live")
    return LiveEngine(strategies, journeys, context=ctx, redis=redis,
                      executor=EffectExecutor(lc.issuer, **kw), decisions=DecisionLog(tmp_path / "dec"),
                      namespace=f"{lc.namespace}:live", gate=CampaignStates(redis, lc.namespace))  # fmt: skip


def test_live_decisions_and_conversions_reach_the_counters_once(lifecycle, tmp_path):
    lc = lifecycle
    cid = _launch(lc, rollout=0.5)
    s = lc.strategy(cid)
    salt = CampaignStates(lc.issuer.redis, lc.namespace).get(cid)["salt"]
    users = [f"u{i}" for i in range(400)]
    rng = np.random.default_rng(5)
    buyers = {u for u in users if rng.random() < 0.3}
    early = {u for u in users if rng.random() < 0.1}  # bought before they were decided for
    t0 = time.time()
    rows = [(f"p0-{u}", u, t0, "purchase") for u in sorted(early)]
    rows += [(f"c-{u}", u, t0 + 1, "cart_add") for u in users]
    rows += [(f"p-{u}", u, t0 + 2, "purchase") for u in sorted(buyers)]
    rows += [(f"p2-{u}", u, t0 + 3, "purchase") for u in sorted(buyers)]  # a second order: once
    batch = _deliveries(rows)

    inside = np.array([in_rollout(u, salt, 0.5) for u in users])
    held = in_holdout(s, users)
    treated = {u for u, i, h in zip(users, inside, held, strict=True) if i and not h}
    holdout = {u for u, i, h in zip(users, inside, held, strict=True) if i and h}
    assert 100 < len(treated) < 200  # the hashes split as drawn
    assert 10 < len(holdout) < 80

    crashed = _engine(lc, [s], [], tmp_path)
    crashed.process(batch)  # decided and acted, then the worker dies before its checkpoint
    counters = CampaignCounters(lc.issuer.redis, lc.namespace)
    assert counters.read(cid)["decisions"] == 0

    engine = _engine(lc, [s], [], tmp_path)  # the next owner: the bus redelivers everything
    engine.process(batch)
    engine.checkpoint()
    engine.process(batch)  # a redelivery after the checkpoint is skipped by id
    engine.checkpoint()

    got = counters.read(cid)
    assert got["treated"] == len(treated)
    assert got["holdout"] == len(holdout)
    assert got["decisions"] == len(treated) + len(holdout)
    assert got["conv_treated"] == len(treated & buyers)
    assert got["conv_holdout"] == len(holdout & buyers)
    assert got["errors"] == 0
    some = sorted(holdout)[0]
    assert counters.arm(cid, some) == "holdout"
    assert (
        counters.arm(cid, sorted(set(users) - treated - holdout)[0]) is None
    )  # outside the rollout
    # coupons went to the treated users only, once each (the issuer is idempotent too)
    assert lc.issuer.status(cid)["issued"] == len(treated)


def test_a_paused_campaign_counts_nothing_more(lifecycle, tmp_path):
    lc = lifecycle
    cid = _launch(lc, rollout=1.0)
    s = lc.strategy(cid)
    engine = _engine(lc, [s], [], tmp_path)
    t0 = time.time()
    engine.process(_deliveries([(f"a-{i}", f"u{i}", t0, "cart_add") for i in range(50)]))
    engine.checkpoint()
    before = CampaignCounters(lc.issuer.redis, lc.namespace).read(cid)
    assert before["decisions"] == 50

    lc.pause(cid, ALICE, reason="creative review")
    engine.gate.invalidate()
    engine.process(_deliveries([(f"b-{i}", f"v{i}", t0 + 5, "cart_add") for i in range(50)]))
    engine.checkpoint()
    assert CampaignCounters(lc.issuer.redis, lc.namespace).read(cid) == before
    assert lc.issuer.status(cid)["issued"] == before["treated"]


def test_journeys_obey_the_campaign_gate_and_count_their_arms(lifecycle, tmp_path):
    lc = lifecycle
    cid = _launch(lc, rollout=0.5)
    salt = CampaignStates(lc.issuer.redis, lc.namespace).get(cid)["salt"]
    journey = Journey.from_dict({
        "name": f"{cid}-j", "version": 1, "campaign_id": cid,
        "nodes": [
            {"id": "start", "type": "entry", "event": "cart_add", "next": "hold"},
            {"id": "hold", "type": "split", "by": "holdout", "fraction": 0.25,
             "treated": "wait", "holdout": "done"},
            {"id": "wait", "type": "wait", "event": "app_open", "timeout": "1h",
             "on_event": "coupon", "on_timeout": "done"},
            {"id": "coupon", "type": "coupon", "value": 5, "next": "done"},
            {"id": "done", "type": "exit"},
        ],
    })  # fmt: skip
    engine = _engine(lc, [], [journey], tmp_path)
    users = [f"j{i}" for i in range(200)]
    t0 = time.time()
    engine.process(_deliveries([(f"c-{u}", u, t0, "cart_add") for u in users]))
    engine.checkpoint()
    inside = {u for u in users if in_rollout(u, salt, 0.5)}
    entered = set(engine.decision_log.read().query("action == 'enter'")["user_id"])
    assert entered == inside  # outside the gray traffic nobody enters

    got = CampaignCounters(lc.issuer.redis, lc.namespace).read(cid)
    dec = engine.decision_log.read()
    splits = dec[dec["action"] == "split"]
    assert got["treated"] == int((splits["arm"] == "treated").sum())
    assert got["holdout"] == int((splits["arm"] == "holdout").sum())
    assert got["treated"] + got["holdout"] == len(inside)

    lc.pause(cid, ALICE, reason="stock check")  # the waiting users wake up on a paused campaign
    engine.gate.invalidate()
    waiting = sorted(splits[splits["arm"] == "treated"]["user_id"])
    engine.process(_deliveries([(f"o-{u}", u, t0 + 60, "app_open") for u in waiting]))
    engine.checkpoint()
    dec = engine.decision_log.read()
    coupons = dec[dec["action"] == "coupon"]
    assert len(coupons) == len(waiting)
    assert set(coupons["status"]) == {"campaign_paused"}  # logged with the gate's status ...
    assert lc.issuer.status(cid)["issued"] == 0  # ... and nothing issued
    assert set(dec[dec["action"] == "exit"]["user_id"]) >= set(waiting)  # they walked on


def test_the_tally_leaves_unmanaged_campaigns_alone(redis_client, ns):
    states = CampaignStates(redis_client, ns)
    tally = LiveTally(states, {"s": "nobody-manages-me"}, ns)
    tally.decisions(
        [{"source": "s", "status": "ok", "action": "coupon", "user_id": "u", "ts": 1.0}]
    )
    tally.conversion("u", 2.0)
    tally.error("nobody-manages-me")
    assert not tally  # no published state: not a lifecycle campaign, nothing to count


def test_the_watcher_pauses_a_harmful_campaign_from_live_traffic_alone(lifecycle, tmp_path):
    """Planted harm: treated users buy at 3%, the holdout at 15%; nothing feeds the counters by hand."""
    from prometheus_client import CollectorRegistry

    from mktlab.campaigns.watch import Watcher

    lc = lifecycle
    spec_budget = {"max_spend": 9_000.0, "max_coupons": 1_800}
    # a flash launch: the whole budget planned for the first hours (no budget-burn trip)
    cid = _launch(lc, rollout=1.0, budget=spec_budget, stock=1_800, daily_spend=200_000.0)
    s = lc.strategy(cid)
    engine = _engine(lc, [s], [], tmp_path)
    watcher = Watcher(lc, registry=CollectorRegistry(), interval=0.2)
    users = [f"h{i}" for i in range(6000)]
    held = dict(zip(users, in_holdout(s, users), strict=True))
    rng = np.random.default_rng(11)
    t0, trips, sent = time.time(), [], 0
    for lo in range(
        0, len(users), 500
    ):  # the traffic arrives in batches; the watcher looks between
        chunk = users[lo : lo + 500]
        rows = [(f"c-{u}", u, t0 + lo, "cart_add") for u in chunk]
        rows += [(f"p-{u}", u, t0 + lo + 1, "purchase") for u in chunk
                 if rng.random() < (0.15 if held[u] else 0.03)]  # fmt: skip
        engine.process(_deliveries(rows))
        engine.checkpoint()
        sent += len(chunk)
        trips = watcher.tick()
        if trips:
            break
    assert [t.breaker for t in trips] == ["harmful_effect"]
    assert sent < len(users)  # caught before the traffic ran out
    rec = lc.get(cid)
    assert (rec["state"], rec["state_reason"]) == ("paused", "breaker:harmful_effect")
    issued = lc.issuer.status(cid)["issued"]
    engine.gate.invalidate()  # (within the gate's 1 s cache otherwise)
    engine.process(_deliveries([(f"late-{u}", u, t0 + 9e4, "cart_add") for u in users[sent:]]))
    engine.checkpoint()
    assert lc.issuer.status(cid)["issued"] == issued  # paused: the live loop issues no more


def test_decisions_count_by_the_state_they_were_taken_in_and_redemptions_count(lifecycle, tmp_path):
    lc = lifecycle
    cid = _launch(lc, rollout=1.0)
    engine = _engine(lc, [lc.strategy(cid)], [], tmp_path)
    t0 = time.time()
    rows = [(f"a-{i}", f"u{i}", t0, "cart_add") for i in range(40)]
    engine.process(_deliveries(rows))  # decided while full ...
    lc.pause(cid, ALICE, reason="check")  # ... checkpointed after the pause
    engine.gate.invalidate()
    redeem = [Delivery(Event(f"r-{i}", f"u{i}", t0 + 5, "coupon_redeem", {"campaign_id": cid}),
                       int(partition_of(f"u{i}", PARTS)), f"r{i}-0", False) for i in range(3)]  # fmt: skip
    engine.checkpoint()
    got = CampaignCounters(lc.issuer.redis, lc.namespace).read(cid)
    assert got["decisions"] == 40
    assert got["treated"] + got["holdout"] == 40
    lc.resume(cid, ALICE)
    engine.gate.invalidate()
    engine.process(redeem)
    engine.process(redeem)  # redelivered before the checkpoint: skipped by id
    engine.checkpoint()
    assert CampaignCounters(lc.issuer.redis, lc.namespace).read(cid)["redeemed"] == 3
