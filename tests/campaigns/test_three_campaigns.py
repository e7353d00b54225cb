"""Three campaigns at once through their whole lives on the real stack, with the watcher running.

One is healthy and is reviewed; one has its stock raised behind the issuer's back; one
harms its treated users. The watcher (a background thread, 0.3 s interval) must pause the
two faulty ones by itself within the stated delay (two intervals plus a tick), and leave
the healthy one alone.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry

from mktlab.campaigns.watch import CampaignCounters, Watcher
from mktlab.strategy import in_holdout
from tests.campaigns.conftest import ALICE, BOB, CAROL, make_spec

INTERVAL = 0.3


def wait_for(pred, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_three_campaigns_concurrently_with_two_planted_faults(lifecycle):
    lc = lifecycle
    specs = {
        "healthy": make_spec("e2e-healthy", audience="young", max_spend=20_000.0),  # two approvers
        "overissue": make_spec("e2e-overissue", audience="seniors"),
        "harmful": make_spec("e2e-harmful", audience="vip", stackable=True),
    }
    specs["healthy"]["coupon"]["stackable"] = True  # young and vip share 100 users; both stack
    errors: list[BaseException] = []

    def life(name):
        try:
            cid = lc.create(specs[name], ALICE)["campaign_id"]
            lc.submit(cid, ALICE)
            lc.approve(cid, BOB)
            if name == "healthy":
                lc.approve(cid, CAROL)
            s = lc.strategy(cid)
            lc.record_simulation(
                cid,
                ALICE,
                {"spend": 300.0, "roi": 0.5, "reach": 200, "strategy_fingerprint": s.fingerprint()},
            )
            lc.launch(cid, ALICE, rollout=0.1)
            lc.ramp(cid, ALICE, 0.5)
            lc.ramp(cid, ALICE, 1.0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=life, args=(n,)) for n in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = {n: s["campaign_id"] for n, s in specs.items()}
    assert {lc.get(c)["state"] for c in ids.values()} == {"full"}

    watcher = Watcher(lc, interval=INTERVAL, registry=CollectorRegistry())
    counters = CampaignCounters(lc.issuer.redis, lc.namespace)
    watcher.start()
    try:
        for n in ("healthy", "overissue", "harmful"):
            lc.issuer.issue_many(ids[n], [(f"{n}-u{i}", f"{n}-r{i}") for i in range(5)])
        time.sleep(3 * INTERVAL)
        assert {lc.get(c)["state"] for c in ids.values()} == {"full"}  # nothing trips on health

        meta = lc.issuer._keys(ids["overissue"], 0)["meta"]
        lc.issuer.redis.hincrby(meta, "stock", 250)  # the planted over-issue
        took = wait_for(lambda: lc.get(ids["overissue"])["state"] == "paused", 2 * INTERVAL + 5)
        assert took < 2 * INTERVAL + 2.0
        assert lc.get(ids["overissue"])["state_reason"] == "breaker:reconciliation"

        counters.add(
            ids["harmful"],
            decisions=10000,
            treated=9000,
            holdout=1000,
            conv_treated=450,
            conv_holdout=120,
        )
        wait_for(lambda: lc.get(ids["harmful"])["state"] == "paused", 2 * INTERVAL + 5)
        assert lc.get(ids["harmful"])["state_reason"] == "breaker:harmful_effect"
        counters.add(
            ids["healthy"],
            decisions=4000,
            treated=3600,
            holdout=400,
            conv_treated=432,
            conv_holdout=32,
        )
        time.sleep(3 * INTERVAL)
        assert lc.get(ids["healthy"])["state"] == "full"
    finally:
        watcher.stop()

    # the healthy one ends and is reviewed from its decision log
    from mktlab.campaigns.review import review_campaign

    lc.end(ids["healthy"], ALICE, why="window over")
    lc.archive(ids["healthy"], ALICE)
    s = lc.strategy(ids["healthy"])
    rng = np.random.default_rng(3)
    users = [f"h{i}" for i in range(4000)]
    hold = in_holdout(s, users)
    ts = time.time() + rng.uniform(0, 60, len(users))
    dec = pd.DataFrame({"source": s.name, "user_id": users, "ts": ts, "action": "coupon",
                        "status": np.where(hold, "holdout", "ok"), "holdout": hold})  # fmt: skip
    conv = rng.random(len(users)) < np.where(hold, 0.08, 0.12)
    ev = pd.DataFrame(
        {"user_id": np.array(users)[conv], "ts": ts[conv] + 30, "event": "purchase", "amount": 40.0}
    )
    r = review_campaign(lc, ids["healthy"], dec, ev, rollout=None)
    assert r.summary["lift_lo"] < 0.04 < r.summary["lift_hi"]
    for cid in ids.values():
        log = lc.history(cid)
        assert log.iloc[0]["action"] == "campaign.create"
        assert log["ok"].all()  # no refused step in these lives
