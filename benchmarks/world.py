"""Benchmark: synthetic world generation, users per second.

Anchor (same run): a plain per-user Python loop that emits identity records, events and
a campaign row per person with ``random`` and writes them to Parquet through pandas —
the way most hand-written generators work — timed on a sample. The two emit different
numbers of rows per user, so the ratio is taken on rows written per second. Targets (issue 2): 1M users in under 60 s on
2 cores; 10M users must fit in memory (peak RSS is printed).

    .venv/bin/python benchmarks/world.py            # 1M users
    .venv/bin/python benchmarks/world.py --users 10000000
    .venv/bin/python benchmarks/world.py --quick    # 100k users
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from pathlib import Path

from _results import write_results  # benchmarks/_results.py

from mktlab.datasets import make_world


def naive_world(n_users: int, seed: int) -> int:
    """Per-user loop: identities, events and a campaign row per person (rows generated)."""
    rnd = random.Random(seed)
    out = []
    for pid in range(n_users):
        uid = f"U{pid:010d}"
        devices = [f"{rnd.getrandbits(128):032x}" for _ in range(rnd.choice([1, 1, 2, 3]))]
        phone = f"1{rnd.randrange(10**10):010d}" if rnd.random() < 0.8 else None
        for _ in range(1 + int(rnd.expovariate(1 / 4))):
            rec = [("user_id", uid), ("device", rnd.choice(devices))]
            if phone and rnd.random() < 0.3:
                rec.append(("phone", phone))
            out.extend((pid, t, v, rnd.random()) for t, v in rec)
        for _ in range(int(rnd.expovariate(1 / 6))):
            out.append((pid, "view", rnd.choice(devices), rnd.random()))
        t = rnd.random() < 0.5
        out.append((pid, "campaign", str(t), rnd.random() < (0.3 if t else 0.2)))
    import pandas as pd

    df = pd.DataFrame(out, columns=["pid", "kind", "value", "x"]).astype({"value": str, "x": float})
    with tempfile.TemporaryDirectory() as tmp:
        df.to_parquet(Path(tmp) / "naive.parquet")
    return len(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--quick", action="store_true", help="100k users")
    ap.add_argument(
        "--naive-users", type=int, default=50_000, help="sample size for the per-user loop"
    )
    args = ap.parse_args()
    n = 100_000 if args.quick else args.users

    t0 = time.perf_counter()
    naive_rows = naive_world(args.naive_users, args.seed)
    naive_s = time.perf_counter() - t0
    naive_ups = args.naive_users / naive_s

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        w = make_world(n, args.seed, out_dir=Path(tmp) / "world", progress=True)
        secs = time.perf_counter() - t0
        rows = int(w.summary().rows.sum())
    ups = n / secs
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(
        f"\nmktlab make_world : {n:>12,} users in {secs:7.2f} s = {ups:>12,.0f} users/s ({rows:,} rows, all tables)"
    )
    print(
        f"naive Python loop : {args.naive_users:>12,} users in {naive_s:7.2f} s = {naive_ups:>12,.0f} users/s ({naive_rows:,} rows, far fewer tables)"
    )
    print(f"rows/s            : mktlab {rows / secs:,.0f} vs naive {naive_rows / naive_s:,.0f}")
    print(
        f"ratio             : mktlab writes {rows / secs / (naive_rows / naive_s):.1f}x the rows/s of the per-user loop"
    )
    print(f"peak RSS          : {peak_gb:.2f} GB")
    proj = secs * 1_000_000 / n
    if n >= 1_000_000:
        print(
            f"target 1M users < 60 s: {'MET' if proj < 60 else 'MISSED'} ({proj:.1f} s per 1M users)"
        )
    write_results(
        "world",
        {"users": n, "seconds": secs, "users_per_s": ups, "rows": rows,
         "naive_users": args.naive_users, "naive_users_per_s": naive_ups,
         "rows_ratio": rows / secs / (naive_rows / naive_s), "peak_gb": peak_gb,
         "seconds_per_1m_users": proj},
        variant="quick" if args.quick else ("full" if n == 1_000_000 else f"users-{n}"),
    )  # fmt: skip


if __name__ == "__main__":
    main()
