"""Benchmark: A/B experiments — assignment throughput, analysis speed, peeking error rates.

1. Assignment: ids/s of ``mktlab.experiments`` (compiled MurmurHash3 over the Arrow
   buffer) against the naive anchor, a per-id Python loop of ``hashlib.blake2b`` over
   ``f"{salt}:{uid}"``, on the same ids in the same run.
2. Analysis: time per call of mktlab's tests against statsmodels / scipy for the same
   tests (pooled z, Welch t, Holm/BH, sample size, the whole Hillstrom analysis), and
   whether the numbers agree to 4 significant figures.
3. Sequential: false-positive rate of A/A tests peeked 1..56 times, naive z-test vs the
   anytime-valid confidence sequence.

Issue 11 sets correctness targets (4 significant figures, FPR <= alpha under daily
peeking), not speed targets; the ratios are printed for the record.

    .venv/bin/python benchmarks/experiments.py            # 10M ids, 2000 simulations
    .venv/bin/python benchmarks/experiments.py --quick    # 1M ids, 500 simulations
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
from _results import write_results  # benchmarks/_results.py
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest, samplesize_proportions_2indep_onetail

from mktlab.datasets import load_hillstrom
from mktlab.experiments import (
    Experiment,
    adjust_pvalues,
    analyze,
    compare_means,
    compare_proportions,
    hash_buckets,
    peeking_table,
    sample_size_proportion,
)
from mktlab.experiments._hash import warm_up


def naive_assign(ids: list[str], salt: str, n_buckets: int = 10_000) -> np.ndarray:
    """The anchor: one hashlib call per id in a Python loop."""
    out = np.empty(len(ids), dtype=np.int32)
    for i, uid in enumerate(ids):
        h = int.from_bytes(
            hashlib.blake2b(f"{salt}:{uid}".encode(), digest_size=8).digest(), "little"
        )
        out[i] = (h * n_buckets) >> 64
    return out


def per_call(fn: Callable[[], object], min_seconds: float = 0.3) -> float:
    """Seconds per call, repeating until ``min_seconds`` have passed."""
    fn()
    n, t0 = 0, time.perf_counter()
    while (time.perf_counter() - t0) < min_seconds:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def best_of(fn: Callable[[], object], k: int = 3) -> tuple[float, object]:
    """Minimum wall time of ``k`` calls and the last result."""
    best, out = float("inf"), None
    for _ in range(k):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def sig4(a: float, b: float) -> bool:
    return float(f"{a:.4g}") == float(f"{b:.4g}") or abs(a - b) <= 1e-4 * max(
        abs(a), abs(b), 1e-300
    )


def bench_assignment(n: int, n_naive: int) -> dict:
    print(f"\n== assignment: {n:,} string ids (naive loop on {n_naive:,})")
    warm_up()
    py_ids = [f"U{i:09d}" for i in range(n)]  # the naive loop's input: a Python list
    ids = pa.array(py_ids, type=pa.large_string())
    ints = np.arange(n, dtype=np.int64)
    exp = Experiment("exp-42", {"control": 0.5, "treatment": 0.5})
    # best of 3: the machine is shared, and the minimum is the least disturbed run
    t_hash, b = best_of(lambda: hash_buckets(ids, "exp-42"))
    t_int, _ = best_of(lambda: hash_buckets(ints, "exp-42"))
    t_assign, arms = best_of(lambda: exp.assign(ids))
    del py_ids[n_naive:]
    t0 = time.perf_counter()
    nb = naive_assign(py_ids, "exp-42")
    t_naive = time.perf_counter() - t0
    naive_rate = n_naive / t_naive
    print(f"mktlab hash_buckets (str)    : {t_hash:7.2f} s = {n / t_hash:>13,.0f} ids/s")
    print(f"mktlab hash_buckets (int64)  : {t_int:7.2f} s = {n / t_int:>13,.0f} ids/s")
    print(
        f"mktlab Experiment.assign     : {t_assign:7.2f} s = {n / t_assign:>13,.0f} ids/s (hash + arm lookup + categorical column)"
    )
    print(f"naive hashlib.blake2b loop   : {t_naive:7.2f} s = {naive_rate:>13,.0f} ids/s")
    print(
        f"ratio                        : hash {n / t_hash / naive_rate:.1f}x, full assign {n / t_assign / naive_rate:.1f}x the naive loop"
    )
    share = (arms == "treatment").mean()
    cnt = np.bincount(b // 100, minlength=100)
    print(f"treatment share {share:.4f}; bucket uniformity chi2 p = {stats.chisquare(cnt).pvalue:.3f}; "
          f"naive buckets uniform too (p = {stats.chisquare(np.bincount(nb // 100, minlength=100)).pvalue:.3f})")  # fmt: skip
    return {"ids": n, "naive_ids": n_naive, "hash_ids_per_s": n / t_hash,
            "int_ids_per_s": n / t_int, "assign_ids_per_s": n / t_assign,
            "naive_ids_per_s": naive_rate, "hash_ratio": n / t_hash / naive_rate,
            "assign_ratio": n / t_assign / naive_rate, "treatment_share": float(share)}  # fmt: skip


def bench_analysis() -> dict:
    print("\n== analysis: mktlab vs statsmodels / scipy (time per call)")
    rows = []

    def add(name: str, ours: Callable[[], object], ref: Callable[[], object], agree: bool) -> None:
        a, r = per_call(ours), per_call(ref)
        rows.append(
            {
                "test": name,
                "mktlab_us": a * 1e6,
                "reference_us": r * 1e6,
                "ref/mktlab": r / a,
                "agree_4sf": agree,
            }
        )

    c = compare_proportions(1000, 10_000, 1100, 10_000)
    _, p = proportions_ztest([1100, 1000], [10_000, 10_000])
    add("pooled z-test (p=0.02108)", lambda: compare_proportions(1000, 10_000, 1100, 10_000),
        lambda: proportions_ztest([1100, 1000], [10_000, 10_000]), sig4(c.p_value, p))  # fmt: skip
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(1, 1, 20_000), rng.lognormal(1.02, 1, 20_000)
    ours_w = lambda: compare_means(a.mean(), a.std(ddof=1), a.size, b.mean(), b.std(ddof=1), b.size)  # noqa: E731
    ref_w = stats.ttest_ind(b, a, equal_var=False)
    add("Welch t (20k + 20k units)", ours_w, lambda: stats.ttest_ind(b, a, equal_var=False),
        sig4(ours_w().p_value, ref_w.pvalue))  # fmt: skip
    ps = rng.random(60) ** 3
    add("Holm, 60 p-values", lambda: adjust_pvalues(ps, "holm"), lambda: multipletests(ps, method="holm"),
        bool(np.allclose(adjust_pvalues(ps, "holm"), multipletests(ps, method="holm")[1], rtol=1e-4)))  # fmt: skip
    add("BH, 60 p-values", lambda: adjust_pvalues(ps, "bh"), lambda: multipletests(ps, method="fdr_bh"),
        bool(np.allclose(adjust_pvalues(ps, "bh"), multipletests(ps, method="fdr_bh")[1], rtol=1e-4)))  # fmt: skip
    add("sample size (57,763)", lambda: sample_size_proportion(0.1, 0.05),
        lambda: samplesize_proportions_2indep_onetail(0.005, 0.1, 0.8),
        sample_size_proportion(0.1, 0.05).n_control == int(np.ceil(samplesize_proportions_2indep_onetail(0.005, 0.1, 0.8))))  # fmt: skip
    hill = load_hillstrom()
    metrics = {"visit": "proportion", "conversion": "proportion", "spend": "mean"}

    def ref_hill() -> np.ndarray:
        g = hill.groupby("segment")
        pv = []
        for m in ("visit", "conversion"):
            s, n = g[m].sum(), g[m].size()
            for arm in ("Mens E-Mail", "Womens E-Mail"):
                pv.append(proportions_ztest([s[arm], s["No E-Mail"]], [n[arm], n["No E-Mail"]])[1])
        for arm in ("Mens E-Mail", "Womens E-Mail"):
            pv.append(
                stats.ttest_ind(
                    g.get_group(arm)["spend"], g.get_group("No E-Mail")["spend"], equal_var=False
                ).pvalue
            )
        stats.chisquare(g.size().to_numpy())
        return multipletests(pv, method="holm")[1]

    ours = analyze(hill, metrics, arm="segment", control="No E-Mail")
    add("Hillstrom: 3 metrics x 2 arms + SRM + Holm", lambda: analyze(hill, metrics, arm="segment", control="No E-Mail"),
        ref_hill, bool(np.allclose(ours.table["p_adjusted"].to_numpy(), ref_hill(), rtol=1e-4)))  # fmt: skip
    df = pd.DataFrame(rows)
    with pd.option_context("display.width", 160, "display.float_format", "{:,.1f}".format):
        print(df.to_string(index=False))
    print("all agree to 4 significant figures:", "YES" if df["agree_4sf"].all() else "NO")
    print(
        "note: mktlab's analyze() also computes CIs, delta-method relative CIs and exact Beta chance to beat control"
    )
    lift = ours.table.set_index(["metric", "arm"])
    return {"all_agree_4sf": bool(df["agree_4sf"].all()), "tests": df.to_dict("records"),
            "visit_lift_mens_pp": 100 * lift.loc[("visit", "Mens E-Mail"), "abs_lift"],
            "visit_lift_womens_pp": 100 * lift.loc[("visit", "Womens E-Mail"), "abs_lift"],
            "visit_p_adjusted_max": float(lift.loc["visit", "p_adjusted"].max())}  # fmt: skip


def bench_sequential(n_sims: int) -> dict:
    print(
        f"\n== sequential: A/A false-positive rate vs number of looks ({n_sims:,} simulations, 14,000 units per arm)"
    )
    t0 = time.perf_counter()
    table = peeking_table(n_sims=n_sims, total_per_arm=14_000, kinds=("proportion", "mean"), seed=1)
    with pd.option_context("display.width", 160):
        print(table.to_string(index=False))
    worst = table["sequential_fpr"].max()
    slack = 2 * np.sqrt(0.05 * 0.95 / n_sims)
    print(f"({time.perf_counter() - t0:.1f} s) max sequential FPR {worst:.4f} <= alpha + 2 s.e. ({0.05 + slack:.4f}): "
          f"{'MET' if worst <= 0.05 + slack else 'MISSED'}; naive at 28 looks: "
          f"{table.loc[table.looks == 28, 'naive_fpr'].max():.3f}")  # fmt: skip
    return {"simulations": n_sims, "max_sequential_fpr": float(worst),
            "naive_fpr_28_looks": float(table.loc[table.looks == 28, "naive_fpr"].max()),
            "sequential_fpr_28_looks": float(table.loc[table.looks == 28, "sequential_fpr"].max()),
            "sequential_met": bool(worst <= 0.05 + slack)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", type=int, default=10_000_000, help="ids to assign")
    ap.add_argument(
        "--naive-ids", type=int, default=None, help="ids for the naive loop (default: --ids)"
    )
    ap.add_argument(
        "--sims", type=int, default=2000, help="A/A simulations per row of the peeking table"
    )
    ap.add_argument("--quick", action="store_true", help="1M ids, 500 simulations")
    args = ap.parse_args()
    n = 1_000_000 if args.quick else args.ids
    sims = 500 if args.quick else args.sims
    figures = {**bench_assignment(n, min(args.naive_ids or n, n)), **bench_analysis()}
    figures.update(bench_sequential(sims))
    write_results("experiments", figures)


if __name__ == "__main__":
    main()
