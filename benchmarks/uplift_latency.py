"""Micro-benchmark: per-call latency of ``ServiceCore.uplift`` in-process (no HTTP).

Trains a tiny uplift model on simulated data in a temporary workspace (the helpers of
``benchmarks/service.py``), imports it into the BentoML model store, loads it with
``ServiceCore.from_store()`` and times ``core.uplift(rows)`` for one-row and 16-row
calls: the in-process floor of ``POST /uplift``. The anchor, in the same run, is the
same model called as MLflow serves a pyfunc: ``model.predict(DataFrame)``.

    .venv/bin/python benchmarks/uplift_latency.py                  # T-learner, 3000 calls
    .venv/bin/python benchmarks/uplift_latency.py --learner dr --calls 1000
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _results import write_results  # benchmarks/_results.py
from service import feature_row, setup_workspace, train_and_import  # benchmarks/service.py


def time_calls(fn, batches, calls: int) -> dict:
    for b in batches[:50]:  # warm-up
        fn(b)
    lat = np.empty(calls)
    for i in range(calls):
        b = batches[i % len(batches)]
        t0 = time.perf_counter()
        fn(b)
        lat[i] = time.perf_counter() - t0
    lat *= 1e3
    return {
        "mean_ms": lat.mean(),
        "p50_ms": np.percentile(lat, 50),
        "p99_ms": np.percentile(lat, 99),
        "max_ms": lat.max(),
        "argmax": int(lat.argmax()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--learner", default="t")
    ap.add_argument("--calls", type=int, default=3000)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="mktlab-bench-latency-"))
    setup_workspace(root)
    schema = train_and_import(args.learner)
    from mktlab.service.core import ServiceCore

    core = ServiceCore.from_store()
    rng = random.Random(0)
    rows = [feature_row(schema, rng) for _ in range(512)]
    one = [[r] for r in rows]
    sixteen = [rows[i : i + 16] for i in range(0, len(rows), 16)]
    print(f"learner {args.learner!r}, {args.calls} calls each, workspace {root}")
    pyfunc = core.models["uplift"]
    cols = schema["input_columns"]
    figures: dict = {"learner": args.learner, "calls": args.calls}
    for label, batches in (("1 row", one), ("16 rows", sixteen)):
        s = time_calls(core.uplift, batches, args.calls)
        a = time_calls(lambda b: pyfunc.predict(pd.DataFrame(b, columns=cols)), batches,
                       max(200, args.calls // 5))  # fmt: skip
        print(f"  core.uplift {label:>8}: mean {s['mean_ms']:.3f} ms  p50 {s['p50_ms']:.3f} ms  "
              f"p99 {s['p99_ms']:.3f} ms  max {s['max_ms']:.1f} ms (call {s['argmax']})")  # fmt: skip
        print(f"  pyfunc.predict {label:>5}: mean {a['mean_ms']:.3f} ms  p50 {a['p50_ms']:.3f} ms  "
              f"-> mktlab is {a['p50_ms'] / s['p50_ms']:.1f}x faster at the median")  # fmt: skip
        key = "one_row" if label == "1 row" else "sixteen_rows"
        figures.update({f"{key}_mean_ms": s["mean_ms"], f"{key}_p50_ms": s["p50_ms"],
                        f"{key}_p99_ms": s["p99_ms"], f"{key}_pyfunc_p50_ms": a["p50_ms"],
                        f"{key}_ratio": a["p50_ms"] / s["p50_ms"]})  # fmt: skip
    default = (args.learner, args.calls) == ("t", 3000)
    write_results(
        "uplift_latency", figures, variant="full" if default else f"{args.learner}-{args.calls}"
    )


if __name__ == "__main__":
    main()
