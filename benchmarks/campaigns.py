"""Campaign watching: reconciliation delay and time from breach to pause, against a batch job.

K campaigns are launched through the real lifecycle (registry on SQLite, issuer on Redis,
ledger on SQLite), each with issued coupons. Measured in one run:

- **tick**: one watcher pass over the K campaigns (read Redis and the ledger, compare,
  export, run the breakers). The reconciliation delay is at most ``interval + tick``.
- **anchor**: one pass of the repairing reconciliation (:func:`mktlab.coupons.reconcile`)
  over the same K campaigns — what a hand-rolled setup runs as a periodic batch job.
  The ratio is anchor / tick per pass; with the usual once-a-minute job the delay ratio is
  ``60 + anchor`` against ``interval + tick``.
- **reconciliation delay, measured**: a coupon is issued (a ledger write) while the watcher
  thread runs; the time until a finished pass began after it, per trial. Against a
  once-a-minute job, whose delay is uniform over the minute (30 s median) plus its pass.
- **breach → pause**: a watcher thread runs at ``--interval``; a campaign's Redis stock is
  raised behind the issuer's back (over-issue) or its counters turn harmful; the time until
  the campaign is paused in the database *and* Redis says so, over ``--trials`` each.

    .venv/bin/python benchmarks/campaigns.py            # 50 campaigns, 10 trials
    .venv/bin/python benchmarks/campaigns.py --quick    # 10 campaigns, 3 trials
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import describe_machine, write_results


def spec(cid: str, audience: str) -> dict:
    now = time.time()
    return {
        "campaign_id": cid,
        "window": {"start": now - 60, "end": now + 7 * 86400},
        "coupon": {"stock": 100_000, "stackable": True},
        "plan": {"daily_spend": 1e9},
        "strategy": {"name": cid, "policy": {"kind": "all"}, "audience": audience, "holdout": 0.1,
                     "coupon": {"face_value": 1.0}, "budget": {"max_spend": 100_000.0}},
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--campaigns", type=int, default=50)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--issued", type=int, default=2000, help="coupons issued per campaign")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.campaigns, args.trials, args.issued = 10, 3, 200

    from prometheus_client import CollectorRegistry
    from pyroaring import BitMap

    from mktlab.campaigns.checks import CampaignSettings
    from mktlab.campaigns.db import CampaignDB
    from mktlab.campaigns.lifecycle import Lifecycle
    from mktlab.campaigns.roles import Principal
    from mktlab.campaigns.rollout import read_state
    from mktlab.campaigns.watch import CampaignCounters, Watcher
    from mktlab.config import settings
    from mktlab.coupons import CouponIssuer
    from mktlab.coupons.connection import get_redis
    from mktlab.coupons.ledger import Ledger
    from mktlab.coupons.reconcile import reconcile
    from mktlab.strategy import StrategyCatalog

    tmp = Path(tempfile.mkdtemp(prefix="mktlab-bench-campaigns-"))
    ns = f"bench-{uuid.uuid4().hex[:8]}"
    redis = get_redis(settings().redis_url)
    issuer = CouponIssuer(
        redis=redis, ledger=Ledger(f"sqlite:///{tmp / 'ledger.db'}"), namespace=ns
    )
    lc = Lifecycle(CampaignDB(f"sqlite:///{tmp / 'campaigns.db'}"), issuer=issuer, namespace=ns,
                   catalog=StrategyCatalog(tmp / "strategies"), audiences={"all": BitMap(range(1000))},
                   settings=CampaignSettings(two_approvals_above=1e9))  # fmt: skip
    ops, appr = Principal("ops", "operator"), Principal("appr", "approver")
    print(
        f"launching {args.campaigns} campaigns with {args.issued} issued coupons each ...",
        flush=True,
    )
    ids = []
    for k in range(args.campaigns):
        cid = f"b{k:03d}-{uuid.uuid4().hex[:4]}"
        lc.create(spec(cid, "all"), ops)
        lc.submit(cid, ops)
        lc.approve(cid, appr)
        fp = lc.strategy(cid).fingerprint()
        lc.record_simulation(
            cid, ops, {"spend": 10.0, "reach": 1, "roi": 0.1, "strategy_fingerprint": fp}
        )
        lc.launch(cid, ops, rollout=1.0)
        for i in range(0, args.issued, 500):
            issuer.issue_many(
                cid, [(f"u{j}", f"r{j}") for j in range(i, min(i + 500, args.issued))]
            )
        ids.append(cid)

    w = Watcher(lc, interval=args.interval, registry=CollectorRegistry())
    ticks = []
    for _ in range(5):
        t0 = time.perf_counter()
        assert w.tick() == [], "a healthy campaign tripped"
        ticks.append(time.perf_counter() - t0)
    anchors = []
    for _ in range(3):
        t0 = time.perf_counter()
        for cid in ids:
            reconcile(cid, issuer=issuer)
        anchors.append(time.perf_counter() - t0)
    tick, anchor = statistics.median(ticks), statistics.median(anchors)

    counters = CampaignCounters(redis, ns)
    rng = random.Random(7)
    w.start()
    delays: dict[str, list[float]] = {"over_issue": [], "harmful": []}
    recon: list[float] = []
    try:
        for trial in range(args.trials):
            # a ledger write, then the first finished pass that began after it
            healthy = ids[-1 - trial]
            issuer.issue_many(healthy, [(f"d{trial}", f"rd{trial}")])
            t_w = time.time()
            while w.last_tick.get("started", 0.0) < t_w:
                if time.time() - t_w > 60:
                    raise SystemExit(f"no pass compared {healthy} within 60 s")
                time.sleep(0.002)
            recon.append(time.time() - t_w)
            for kind in delays:
                cid = ids[2 * trial + (kind == "harmful")]
                # plant at a random phase of the watcher's cycle: right after a pause the
                # same pass may still be walking towards this campaign, which would flatter us
                time.sleep(rng.uniform(0.0, args.interval))
                if kind == "over_issue":
                    redis.hincrby(issuer._keys(cid, 0)["meta"], "stock", 100)
                else:
                    counters.add(
                        cid,
                        decisions=20_000,
                        treated=18_000,
                        holdout=2_000,
                        conv_treated=900,
                        conv_holdout=240,
                    )
                t0 = time.perf_counter()
                while not (
                    lc.get(cid)["state"] == "paused"
                    and read_state(redis, ns, cid)["state"] == "paused"
                ):
                    if time.perf_counter() - t0 > 60:
                        raise SystemExit(f"{kind}: campaign {cid} not paused after 60 s")
                    time.sleep(0.005)
                delays[kind].append(time.perf_counter() - t0)
    finally:
        w.stop()

    def q(xs, p):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, round(p * (len(xs) - 1)))]

    fig = {
        "campaigns": args.campaigns, "issued_per_campaign": args.issued, "interval_s": args.interval,
        "tick_ms": tick * 1000, "anchor_pass_ms": anchor * 1000, "pass_ratio": anchor / tick,
        "delay_bound_s": args.interval + tick, "anchor_delay_bound_s": 60 + anchor,
        "delay_ratio": (60 + anchor) / (args.interval + tick),
        "reconcile_delay_p50_s": q(recon, 0.5), "reconcile_delay_p99_s": q(recon, 0.99),
        "reconcile_delay_max_s": max(recon),
        # a once-a-minute job: a write waits 30 s on average (uniform), 60 s at worst, plus its pass
        "batch_delay_p50_s": 30 + anchor, "batch_delay_p99_s": 0.99 * 60 + anchor,
        **{f"{k}_p50_s": q(v, 0.5) for k, v in delays.items()}, **{f"{k}_p99_s": q(v, 0.99) for k, v in delays.items()},
        **{f"{k}_max_s": max(v) for k, v in delays.items()},
        "trials": args.trials,
    }  # fmt: skip
    print(f"\ncampaign watching ({describe_machine()}):")
    print(f"  one watcher pass over {args.campaigns} campaigns: {fig['tick_ms']:.1f} ms; "
          f"the repairing reconcile of all of them: {fig['anchor_pass_ms']:.1f} ms ({fig['pass_ratio']:.1f}x)")  # fmt: skip
    print(f"  reconciliation delay: <= {fig['delay_bound_s']:.2f} s at a {args.interval:g} s interval "
          f"(target < 60 s); a once-a-minute batch job: <= {fig['anchor_delay_bound_s']:.1f} s "
          f"({fig['delay_ratio']:.1f}x longer)")  # fmt: skip
    print(f"  reconciliation delay measured (ledger write -> a finished pass compared it): "
          f"p50 {fig['reconcile_delay_p50_s']:.2f} s, p99 {fig['reconcile_delay_p99_s']:.2f} s; "
          f"once-a-minute batch: p50 {fig['batch_delay_p50_s']:.1f} s, p99 {fig['batch_delay_p99_s']:.1f} s "
          f"({fig['batch_delay_p50_s'] / fig['reconcile_delay_p50_s']:.0f}x at p50)")  # fmt: skip
    for k in delays:
        print(
            f"  breach -> paused ({k}): p50 {fig[f'{k}_p50_s']:.2f} s, p99 {fig[f'{k}_p99_s']:.2f} s, "
            f"max {fig[f'{k}_max_s']:.2f} s over {args.trials} trials "
            f"(a batch job: ~{fig['batch_delay_p50_s']:.0f} s, {fig['batch_delay_p50_s'] / fig[f'{k}_p50_s']:.0f}x)"
        )
    write_results("campaigns", fig)
    keys = list(redis.scan_iter(match=f"{ns}:*", count=1000))
    for i in range(0, len(keys), 500):
        redis.delete(*keys[i : i + 500])


if __name__ == "__main__":
    main()
