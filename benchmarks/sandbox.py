"""Benchmark: replaying logged events through a strategy's rules, events per second.

Anchor (same run): the naive approach — a plain per-event Python loop in which every
rule tests each of its own predicates and re-scans the user's history for its window
pattern (``benchmarks/_naive_rules.py``) — timed on a sample of the same events. Also timed:
the online engine (per-event Python, but on the shared network). Target (issue 7): 10M
logged events through 50 rules in under 60 s on this machine. The scaling section shows
how batch time grows with the number of rules drawing on one pool of predicates.

    .venv/bin/python benchmarks/sandbox.py            # 10M events, 50 rules
    .venv/bin/python benchmarks/sandbox.py --quick    # 500k events
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import pandas as pd
from _naive_rules import naive_loop  # beside this script: the anchor, not library code
from _results import write_results

from mktlab.rules import OnlineEngine, RuleSet, compile_rules
from mktlab.rules.caps import Budget

CATEGORIES = np.array(["apparel", "beauty", "electronics", "food", "home", "sports"])
CHANNELS = np.array(["app", "web", "mini_program"])
CITIES = np.array(["SH", "BJ", "GZ", "SZ", "CD", "HZ"])


def make_events(n: int, n_users: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp("2026-08-01") + pd.to_timedelta(
        np.sort(rng.integers(0, 30 * 86400, n)), unit="s"
    )
    event = rng.choice(np.array(["view", "cart", "order"]), n, p=[0.7, 0.2, 0.1])
    events = pd.DataFrame(
        {
            "user_id": rng.integers(0, n_users, n),
            "ts": ts,
            "event": pd.array(event, dtype="str"),
            "channel": pd.array(CHANNELS[rng.integers(0, 3, n)], dtype="str"),
            "category": pd.array(CATEGORIES[rng.integers(0, 6, n)], dtype="str"),
            "amount": np.where(event == "order", np.round(rng.lognormal(4.5, 0.7, n), 2), 0.0),
        }
    )
    profiles = pd.DataFrame(
        {
            "user_id": np.arange(n_users),
            "tier_level": rng.integers(1, 6, n_users),
            "city": CITIES[rng.integers(0, len(CITIES), n_users)],
        }
    )
    return events, profiles


# A pool of 16 predicates; rules draw 2-3 of them, so they share heavily.
POOL = [
    {"field": "event.amount", "op": ">", "value": 50},
    {"field": "event.amount", "op": ">", "value": 150},
    {"field": "event.amount", "op": "<=", "value": 300},
    {"field": "event.channel", "op": "==", "value": "app"},
    {"field": "event.channel", "op": "in", "value": ["web", "mini_program"]},
    {"field": "event.category", "op": "==", "value": "beauty"},
    {"field": "event.category", "op": "in", "value": ["electronics", "home"]},
    {"field": "event.category", "op": "!=", "value": "food"},
    {"field": "profile.tier_level", "op": ">=", "value": 3},
    {"field": "profile.tier_level", "op": "<", "value": 2},
    {"field": "profile.city", "op": "in", "value": ["SH", "BJ"]},
    {"field": "context.hour", "op": "between", "value": [9, 21]},
    {"field": "context.is_weekend", "op": "==", "value": True},
    {"field": "context.hour", "op": "<", "value": 7},
    {"audience": "vip"},
    {"audience": "vip", "negate": True},
]
PATTERNS = [
    {
        "pattern": {
            "event": "view",
            "count": 3,
            "within": "30m",
            "same": ["category"],
            "absent": "order",
        }
    },
    {"pattern": {"event": "cart", "count": 2, "within": "1h", "absent": "order"}},
]


def make_rules(n_rules: int, seed: int = 1, n_patterns: int = 2) -> RuleSet:
    rng = np.random.default_rng(seed)
    rules = []
    for i in range(n_rules):
        if i < n_patterns:
            when = PATTERNS[i % len(PATTERNS)]
        else:
            when = {"event": str(rng.choice(["view", "cart", "order"], p=[0.3, 0.3, 0.4]))}
        conds = [
            POOL[j] for j in rng.choice(len(POOL), size=int(rng.integers(2, 4)), replace=False)
        ]
        if rng.random() < 0.5:
            then = [{"issue_coupon": {"coupon": f"C{5 * (1 + i % 4)}", "value": 5.0 * (1 + i % 4)}}]
        else:
            then = [
                {
                    "send_message": {
                        "channel": str(rng.choice(["push", "sms", "email"])),
                        "template": f"t{i}",
                    }
                }
            ]
        rules.append(
            {
                "id": f"r{i:03d}",
                "when": when,
                "if": conds,
                "then": then,
                "priority": int(rng.integers(0, 3)),
            }
        )
    caps = [
        {"channel": "push", "max": 1, "per": "1d"},
        {"channel": "*", "max": 3, "per": "7d"},
        {"channel": "coupon", "max": 2, "per": "7d"},
    ]
    rs = RuleSet.from_dict({"name": f"bench{n_rules}", "rules": rules, "caps": caps})
    return rs


def valid_rules(n_rules: int, seed: int = 1) -> RuleSet:
    """``n_rules`` reachable rules: random draws can contradict, so draw extra and drop those."""
    from mktlab.rules import problems

    rs = make_rules(n_rules + 20, seed=seed)
    bad = {p.split("'")[1] for p in problems(rs) if "unreachable" in p}
    keep = tuple(r for r in rs.rules if r.id not in bad)[:n_rules]
    return RuleSet(f"bench{n_rules}", keep, rs.caps)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--rules", type=int, default=50)
    ap.add_argument(
        "--naive-sample", type=int, default=100_000, help="events timed for the per-event loops"
    )
    ap.add_argument("--scaling-events", type=int, default=1_000_000)
    ap.add_argument(
        "--quick", action="store_true", help="500k events, 100k users, 20k-event loop sample"
    )
    args = ap.parse_args()
    if args.quick:
        args.events, args.users, args.naive_sample, args.scaling_events = (
            500_000,
            100_000,
            20_000,
            200_000,
        )

    t = time.perf_counter()
    events, profiles = make_events(args.events, args.users)
    vip = np.flatnonzero(np.random.default_rng(3).random(args.users) < 0.1)
    audiences = {"vip": vip}
    print(
        f"generated {len(events):,} events for {args.users:,} users in {time.perf_counter() - t:.1f}s"
    )
    rs = valid_rules(args.rules)
    net = compile_rules(rs)
    print(f"strategy: {net.describe()}")

    # warm-up: numba kernels compile (cached on disk after the first run)
    net.run_batch(
        events.head(5000), profiles=profiles, audiences=audiences, budget=Budget(max_spend=1e9)
    )
    t, c = time.perf_counter(), time.process_time()
    firings = net.run_batch(
        events, profiles=profiles, audiences=audiences, budget=Budget(max_spend=5e6)
    )
    batch_s, batch_cpu = time.perf_counter() - t, time.process_time() - c
    batch_eps = len(events) / batch_s
    status = firings["status"].value_counts().to_dict()
    print(
        f"batch:  {len(events):,} events through {len(rs.rules)} rules in {batch_s:.1f}s wall "
        f"({batch_cpu:.1f}s CPU) = {batch_eps:,.0f} events/s"
    )
    print(f"        {len(firings):,} candidate actions; status {status}")

    sample = events.head(args.naive_sample)
    t = time.perf_counter()
    n_naive = naive_loop(rs, sample, profiles=profiles, audiences=audiences)
    naive_s = time.perf_counter() - t
    naive_eps = len(sample) / naive_s
    eng = OnlineEngine(net, profiles=profiles, audiences=audiences)
    t0 = time.perf_counter()
    for ev in sample.to_dict("records"):
        eng.process(ev)
    online_eps = len(sample) / (time.perf_counter() - t0)
    check = net.run_batch(sample, profiles=profiles, audiences=audiences)
    assert n_naive == len(check), (n_naive, len(check))  # same rule matches as the batch
    print(
        f"naive per-event loop (anchor): {naive_eps:,.0f} events/s on {len(sample):,} events ({n_naive:,} matches, = batch)"
    )
    print(f"online engine (shared network, per event): {online_eps:,.0f} events/s")
    print(
        f"ratio batch / naive loop: {batch_eps / naive_eps:,.0f}x;  online / naive: {online_eps / naive_eps:.1f}x"
    )

    print(
        f"\nscaling on {args.scaling_events:,} events (rules drawn from one pool of {len(POOL)} predicates):"
    )
    sub = events.head(args.scaling_events)
    loop_sub = events.head(min(args.naive_sample, 20_000))
    print(
        f"{'rules':>6} {'distinct preds':>15} {'pred refs':>10} {'batch s':>8} {'batch ev/s':>12} {'naive ev/s':>11}"
    )
    for k in (5, 10, 25, 50, 100, 200):
        r = valid_rules(k, seed=11)
        nk = compile_rules(r)
        t = time.perf_counter()
        nk.run_batch(sub, profiles=profiles, audiences=audiences)
        s = time.perf_counter() - t
        t = time.perf_counter()
        naive_loop(r, loop_sub, profiles=profiles, audiences=audiences)
        ns = time.perf_counter() - t
        d = nk.describe()
        print(f"{len(r.rules):>6} {d['distinct_predicates']:>15} {d['predicate_references']:>10} {s:>8.2f} "
              f"{len(sub) / s:>12,.0f} {len(loop_sub) / ns:>11,.0f}")  # fmt: skip

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    target = args.events >= 10_000_000 and args.rules >= 50
    verdict = "MET" if batch_s < 60 else "NOT MET"
    label = (
        "target (10M events x 50 rules < 60 s)"
        if target
        else "target (scaled run; full target needs --events 10000000)"
    )
    load = os.getloadavg()[0]
    print(
        f"\npeak RSS {rss:,.0f} MB; 1-min load average {load:.1f} on {os.cpu_count()} cores (shared machine)"
    )
    print(f"{label}: {verdict} ({batch_s:.1f}s wall, {batch_cpu:.1f}s CPU)")
    write_results(
        "sandbox",
        {"events": len(events), "users": args.users, "rules": len(rs.rules),
         "batch_s": batch_s, "batch_cpu_s": batch_cpu, "batch_events_per_s": batch_eps,
         "naive_events_per_s": naive_eps, "online_events_per_s": online_eps,
         "ratio_naive": batch_eps / naive_eps, "ratio_online_naive": online_eps / naive_eps,
         "peak_rss_mb": rss, "load_average": load},
    )  # fmt: skip


if __name__ == "__main__":
    main()
