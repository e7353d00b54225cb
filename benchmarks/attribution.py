"""Benchmark: mktlab attribution vs brute-force coalition-enumeration Shapley.

Anchor: the Shapley code most tutorials ship — enumerate every coalition of channels,
compute its worth by summing the conversions of every observed channel set inside it,
then apply the Shapley weights channel by channel (≈ 3^n work). It is run on the same
journeys as mktlab's closed form for growing channel counts until one run exceeds
``--brute-budget`` seconds; both answers are compared and the speed ratio printed.

Then the issue's target: 1M journeys over 20 channels, Markov (first order, exact
linear solve) + simplified Shapley together in under 10 s.

    .venv/bin/python benchmarks/attribution.py            # full sizes
    .venv/bin/python benchmarks/attribution.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import itertools
import time
from math import factorial

import pandas as pd
from _results import write_results  # benchmarks/_results.py

from mktlab.attribution import MarkovAttribution, Paths, ShapleyAttribution, simulate_paths

TARGET_SECONDS = 10.0


def brute_force_shapley(paths: Paths) -> dict[str, float]:
    """Tutorial-style Shapley: string-keyed channel sets, every coalition enumerated."""
    # 1. each journey's channel set as a sorted, comma-joined string, conversions summed
    df = paths.to_frame(sep=",", aggregate=False)
    df["set"] = df["path"].map(lambda p: ",".join(sorted(set(p.split(",")))))
    worth_of_set = df.groupby("set")["conversions"].sum().to_dict()
    channels = sorted(paths.channels)
    n = len(channels)

    def subsets(coalition):
        for r in range(1, len(coalition) + 1):
            yield from itertools.combinations(coalition, r)

    # 2. v(S) for every coalition S: sum over every subset of S that was observed
    v = {(): 0.0}
    for r in range(1, n + 1):
        for coalition in itertools.combinations(channels, r):
            v[coalition] = sum(worth_of_set.get(",".join(sub), 0.0) for sub in subsets(coalition))
    # 3. Shapley weights over coalitions without the channel
    phi = {}
    for c in channels:
        others = [x for x in channels if x != c]
        total = 0.0
        for r in range(0, n):
            w = factorial(r) * factorial(n - r - 1) / factorial(n)
            for s in itertools.combinations(others, r):
                with_c = tuple(sorted((*s, c)))
                total += w * (v[with_c] - v[s])
        phi[c] = total
    return phi


def _shapley_values(paths: Paths) -> pd.Series:
    return ShapleyAttribution().fit(paths).shapley_values_


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--journeys", type=int, default=1_000_000, help="journeys for the target run")
    ap.add_argument("--channels", type=int, default=20, help="channels for the target run")
    ap.add_argument(
        "--brute-journeys",
        type=int,
        default=100_000,
        help="journeys for the brute-force comparison",
    )
    ap.add_argument(
        "--brute-max-channels", type=int, default=20, help="largest channel count to try"
    )
    ap.add_argument(
        "--brute-budget",
        type=float,
        default=60.0,
        help="stop growing once brute force takes this long (s)",
    )
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats for mktlab (best of)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = ap.parse_args(argv)
    if args.quick:
        args.journeys, args.brute_journeys = 50_000, 10_000
        args.brute_max_channels, args.brute_budget, args.repeats = 8, 5.0, 1

    print(
        f"== Shapley: brute-force enumeration vs mktlab closed form ({args.brute_journeys:,} journeys)"
    )
    rows = []
    for n in range(4, args.brute_max_channels + 1, 2):
        paths, _ = simulate_paths(args.brute_journeys, n, random_state=args.seed)
        fast = min((timed(_shapley_values, paths) for _ in range(args.repeats)), key=lambda r: r[1])
        brute, t_brute = timed(brute_force_shapley, paths)
        diff = max(abs(brute[c] - fast[0][c]) for c in paths.channels)
        rows.append(
            {
                "channels": n,
                "brute_s": t_brute,
                "mktlab_s": fast[1],
                "ratio": t_brute / fast[1],
                "max_abs_diff": diff,
            }
        )
        print(
            f"  n={n:2d}  brute {t_brute:9.3f} s   mktlab {fast[1]:7.4f} s   "
            f"ratio {t_brute / fast[1]:10.1f}x   max |diff| {diff:.2e}",
            flush=True,
        )
        if t_brute > args.brute_budget:
            print(f"  (brute force passed the {args.brute_budget:g} s budget; stopping at n={n})")
            break
    table = pd.DataFrame(rows)
    assert (table["max_abs_diff"] < 1e-6).all(), "closed form disagrees with enumeration"

    print(f"\n== Target: {args.journeys:,} journeys x {args.channels} channels, Markov + Shapley")
    paths, _ = simulate_paths(args.journeys, args.channels, random_state=args.seed)
    print(f"  {paths!r}")
    agg = paths.to_frame()
    _, t_parse = timed(Paths.from_frame, agg)
    best = None
    for _ in range(args.repeats):
        m, t_m = timed(MarkovAttribution().fit, paths)
        s, t_s = timed(ShapleyAttribution().fit, paths)
        if best is None or t_m + t_s < best[0] + best[1]:
            best = (t_m, t_s)
    t_m, t_s = best
    total = t_m + t_s
    print(f"  markov  (exact solve, {len(m.states_)} states): {t_m:6.3f} s")
    print(f"  shapley (closed form, {len(s.coalitions_):,} channel sets): {t_s:6.3f} s")
    print(
        f"  total: {total:.3f} s   target < {TARGET_SECONDS:g} s: {'MET' if total < TARGET_SECONDS else 'NOT MET'}"
    )
    print(
        f"  (parsing the {len(agg):,}-row aggregated path table with Paths.from_frame: {t_parse:.3f} s)"
    )
    last = table.iloc[-1]
    print(
        f"\nsummary: brute-force Shapley finished up to n={int(last['channels'])} channels "
        f"({last['brute_s']:.1f} s); mktlab was {last['ratio']:.0f}x faster there with the same "
        f"answer; {args.journeys:,} x {args.channels} Markov+Shapley {total:.2f} s ({'target met' if total < TARGET_SECONDS else 'target NOT met'})"
    )
    write_results(
        "attribution",
        {"journeys": args.journeys, "channels": args.channels, "markov_s": t_m,
         "shapley_s": t_s, "total_s": total, "brute_journeys": args.brute_journeys,
         "brute_channels": int(last["channels"]), "brute_s": float(last["brute_s"]),
         "brute_ratio": float(last["ratio"]),
         "max_abs_diff": float(table["max_abs_diff"].max()),
         "brute_force": table.to_dict("records")},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
