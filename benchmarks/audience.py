"""Benchmark: bitmap audiences (mktlab local and chdb engines) vs DuckDB SQL over the tag table.

Builds a synthetic profile table (default 100M uids, 20 tags: 9 categorical, 9 numeric,
2 boolean), builds the AudienceStore, then runs five-predicate expressions through
mktlab (bitmap algebra) and through DuckDB (``SELECT count(*) ... WHERE`` generated from
the same AST over a native DuckDB table) in the same run, checks the sizes agree and
prints the per-query ratio. With ``--chdb`` it also builds the store on the chdb engine
(ClickHouse ``groupBitmap`` states in process, expressions compiled to ClickHouse SQL),
reports its build time and bitmap memory, and prints chdb's time per expression with its
ratio to the local engine and DuckDB's ratio to chdb (figures in ``results/audience_chdb.json``
under the size run, e.g. ``20M``).

Targets (issue 4): build < 120 s and < 8 GB; five-predicate expression median < 50 ms;
mktlab >= 20x faster than DuckDB per query.

    .venv/bin/python benchmarks/audience.py            # 100M users
    .venv/bin/python benchmarks/audience.py --quick    # 5M users
    .venv/bin/python benchmarks/audience.py --users 20000000 --chdb   # + the chdb engine
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import statistics
import tempfile
import time

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from _results import write_results  # benchmarks/_results.py

from mktlab.audience import AudienceCatalog, AudienceStore, to_where

EXPRESSIONS = [
    'is_vip & ~push_opt_in & (tier_level >= 4 | city in ("SH", "BJ")) & age between 25 and 34',
    'city == "SH" & age >= 30 & monetary_90d >= 500 & ~is_vip & recency_days < 30',
    '(gender == "F" | lifecycle == "new") & frequency_90d >= 3 & region in ("r01", "r02", "r03") '
    "& sessions_30d between 5 and 20",
    'device_os != "ios" & language == "zh" & coupon_count > 2 & tenure_days >= 365 & ~(segment == "s07")',
    'age_band in ("25-34", "35-44") & tier_level >= 3 & ltv_score > 700 & push_opt_in & city != "GZ"',
]

CATEGORICAL = {
    "city": ["SH", "BJ", "GZ", "SZ", "CD", "HZ", "WH", "XA", "NJ", "CQ"],
    "gender": ["F", "M", "U"],
    "tier": ["bronze", "silver", "gold", "platinum", "diamond"],
    "channel_pref": ["app", "web", "mini_program", "email", "sms"],
    "device_os": ["ios", "android", "harmony", "other"],
    "age_band": ["18-24", "25-34", "35-44", "45-54", "55-64", "65+", "unknown"],
    "region": [f"r{i:02d}" for i in range(30)],
    "lifecycle": ["new", "active", "lapsing", "lapsed", "reactivated", "churned"],
    "segment": [f"s{i:02d}" for i in range(50)],
    "language": ["zh", "en", "yue", "ja", "ko", "fr", "de", "es"],
}
NUMERIC = {  # name: (low, high inclusive)
    "age": (18, 80),
    "tier_level": (1, 5),
    "recency_days": (0, 365),
    "frequency_90d": (0, 60),
    "monetary_90d": (0, 5000),
    "tenure_days": (0, 3650),
    "sessions_30d": (0, 100),
    "ltv_score": (0, 1000),
    "coupon_count": (0, 20),
}


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def make_tags(n: int, seed: int = 0) -> pa.Table:
    """The columnar tag table: uid + 20 tags (categoricals as Arrow dictionaries).

    Generated in slices so temporaries stay small next to the table itself.
    """
    rng = np.random.default_rng(seed)
    step = 1 << 23
    cols: dict[str, pa.Array] = {"uid": pa.array(np.arange(n, dtype=np.uint32))}
    for name, values in CATEGORICAL.items():
        if name == "channel_pref":  # 20 tags: 9 categorical + 9 numeric + 2 boolean
            continue
        cdf = np.cumsum(rng.dirichlet(np.ones(len(values)) * 2)).astype(np.float32)
        codes = np.empty(n, dtype=np.int8)
        for i in range(0, n, step):  # skewed value frequencies, like real tags
            u = rng.random(min(step, n - i), dtype=np.float32)
            codes[i : i + step] = np.minimum(np.searchsorted(cdf, u), len(values) - 1)
        cols[name] = pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(values))
    for name, (lo, hi) in NUMERIC.items():
        vals = np.empty(n, dtype=np.int16)
        for i in range(0, n, step):
            k = min(step, n - i)
            if name in ("frequency_90d", "coupon_count", "sessions_30d"):
                vals[i : i + k] = np.minimum(rng.geometric(0.15, size=k) - 1, hi)
            else:
                vals[i : i + k] = rng.integers(lo, hi + 1, size=k, dtype=np.int16)
        cols[name] = pa.array(vals)
    cols["is_vip"] = pa.array(rng.random(n, dtype=np.float32) < 0.05)
    cols["push_opt_in"] = pa.array(rng.random(n, dtype=np.float32) < 0.6)
    return pa.table(cols)


def median_ms(fn, repeats: int) -> tuple[float, object, float]:
    """Median and best wall time (ms) of ``repeats`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), out, min(times)


def rss_now_gb() -> float:
    """Resident memory now (not the peak): chdb runs in this process."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**3


def build_chdb(tags: pa.Table, args) -> tuple[AudienceStore, dict]:
    """The store on the chdb engine, with its build time and memory."""
    gc.collect()
    before = rss_now_gb()
    t0 = time.perf_counter()
    store = AudienceStore.build(tags, engine="chdb", catalog=AudienceCatalog(":memory-unused:"))
    build_s = time.perf_counter() - t0
    gc.collect()
    held = rss_now_gb() - before
    states_mb = store.nbytes() / 1024**2
    print(
        f"  chdb store built in {build_s:.1f} s: {states_mb:,.0f} MB of groupBitmap states "
        f"(serialized), process RSS +{held:.2f} GB after the build"
    )
    store.size(EXPRESSIONS[0])  # the first query of a session pays for parsing caches
    return store, {"chdb_build_s": build_s, "chdb_states_mb": states_mb, "chdb_rss_gb": held}


def report_chdb(table: pd.DataFrame, figures: dict, n: int, build_s: float, store_mb: float):
    """Print and store the chdb engine's figures beside the local engine's and DuckDB's."""
    print(
        f"\nchdb engine: build {figures['chdb_build_s']:.1f} s (local {build_s:.1f} s), "
        f"bitmaps {figures['chdb_states_mb']:,.0f} MB (local {store_mb:,.0f} MB), RSS "
        f"+{figures['chdb_rss_gb']:.2f} GB; per query chdb/local "
        f"{table['chdb_vs_local'].min():.1f}-{table['chdb_vs_local'].max():.1f}x slower, DuckDB/chdb "
        f"{table['duckdb_vs_chdb'].min():.1f}-{table['duckdb_vs_chdb'].max():.1f}x; "
        f"sizes agree with local: {bool(table['chdb_agree'].all())}"
    )
    write_results(
        "audience_chdb",
        {"users": n, "tags": 20, **figures, "local_build_s": build_s, "local_store_mb": store_mb,
         "all_agree": bool(table["chdb_agree"].all()),
         "expressions": [
             {"expr": e, "local_ms": r["mktlab_ms"], "chdb_ms": r["chdb_ms"],
              "duckdb_ms": r["duckdb_ms"], "chdb_vs_local": r["chdb_vs_local"],
              "duckdb_vs_chdb": r["duckdb_vs_chdb"], "size": r["size"]}
             for e, r in zip(EXPRESSIONS, table.to_dict("records"))
         ]},
        variant=f"{n / 1e6:g}M",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--users", type=int, default=100_000_000, help="universe size (default 100M)")
    ap.add_argument("--quick", action="store_true", help="5M users, fewer repeats")
    ap.add_argument("--repeats", type=int, default=9, help="mktlab runs per expression")
    ap.add_argument("--sql-repeats", type=int, default=3, help="DuckDB runs per expression")
    ap.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    ap.add_argument(
        "--store-threads", type=int, default=None, help="mktlab query threads (default: all cores)"
    )
    ap.add_argument("--duckdb-memory", default="3GB", help="DuckDB memory_limit (default 3GB)")
    ap.add_argument("--chdb", action="store_true", help="also run the chdb engine")
    ap.add_argument("--chdb-repeats", type=int, default=5, help="chdb runs per expression")
    args = ap.parse_args(argv)
    n = 5_000_000 if args.quick else args.users
    repeats = 5 if args.quick else args.repeats

    print(f"audience benchmark: {n:,} users, 20 tags")
    t0 = time.perf_counter()
    tags = make_tags(n)
    print(f"  generated tag table in {time.perf_counter() - t0:.1f} s (rss peak {rss_gb():.2f} GB)")

    gc.collect()
    t0 = time.perf_counter()
    store = AudienceStore.build(
        tags, catalog=AudienceCatalog(":memory-unused:"), threads=args.store_threads
    )
    build_s = time.perf_counter() - t0
    peak = rss_gb()
    store_mb = store.nbytes() / 1024**2
    print(
        f"  store built in {build_s:.1f} s ({store.engine} engine); process peak RSS {peak:.2f} GB "
        f"(incl. input); bitmaps {store_mb:,.0f} MB"
    )
    # Compile the kernels outside the timed loop (numba caches them on disk afterwards).
    store.size(EXPRESSIONS[0])

    chdb_store, chdb_figures = None, {}
    if args.chdb:
        chdb_store, chdb_figures = build_chdb(tags, args)

    # The anchor: the same table in DuckDB (categoricals arrive as ENUMs from Arrow
    # dictionaries, DuckDB's compact form). A file-backed database with a memory limit
    # keeps the run within RAM next to the store.
    tmpdir = tempfile.mkdtemp(prefix="mktlab-audience-bench-")
    con = duckdb.connect(os.path.join(tmpdir, "tags.duckdb"))
    con.execute(f"SET memory_limit = '{args.duckdb_memory}'")
    con.execute(f"SET temp_directory = '{tmpdir}'")
    if args.threads:
        con.execute(f"SET threads = {args.threads}")
    t0 = time.perf_counter()
    con.register("arrow_tags", tags)
    con.execute("CREATE TABLE tags AS SELECT * FROM arrow_tags")
    con.unregister("arrow_tags")
    del tags
    gc.collect()
    duck_threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    print(
        f"  DuckDB table loaded in {time.perf_counter() - t0:.1f} s (memory_limit {args.duckdb_memory})"
    )
    print(f"  threads per query: mktlab {store.threads}, DuckDB {duck_threads}")

    rows = []
    for expr in EXPRESSIONS:
        ms, size, best = median_ms(lambda e=expr: store.size(e), repeats)
        mat_ms, _, _ = median_ms(lambda e=expr: store.evaluate(e), max(3, repeats // 3))
        sql = f"SELECT count(*) FROM tags t WHERE {to_where(expr)}"
        sql_ms, sql_size, sql_best = median_ms(
            lambda s=sql: con.execute(s).fetchone()[0], args.sql_repeats
        )
        extra = {}
        if chdb_store is not None:
            ch_ms, ch_size, ch_best = median_ms(
                lambda e=expr: chdb_store.size(e), args.chdb_repeats
            )
            extra = {"chdb_ms": ch_ms, "chdb_best_ms": ch_best, "chdb_agree": ch_size == size,
                     "chdb_vs_local": ch_ms / ms, "duckdb_vs_chdb": sql_ms / ch_ms}  # fmt: skip
        rows.append(
            {
                "expr": expr[:60],
                "size": size,
                "agree": size == sql_size,
                "mktlab_ms": ms,
                "best_ms": best,
                "with_members_ms": mat_ms,
                "duckdb_ms": sql_ms,
                "duckdb_best_ms": sql_best,
                "ratio": sql_ms / ms,
                **extra,
            }
        )
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_colwidth", 62):
        print(table.to_string(index=False, float_format=lambda v: f"{v:,.1f}"))

    med = statistics.median(table["mktlab_ms"])
    worst_ratio = float(table["ratio"].min())
    print(f"\nbuild: {build_s:.1f} s (target < 120 s) -> {'OK' if build_s < 120 else 'MISS'}")
    print(
        f"memory: peak RSS {peak:.2f} GB incl. the input table (target < 8 GB) -> {'OK' if peak < 8 else 'MISS'}"
    )
    print(
        f"query: median {med:.1f} ms over the five-predicate expressions (target < 50 ms) -> "
        f"{'OK' if med < 50 else 'MISS'}"
    )
    print(
        f"ratio vs DuckDB: min {worst_ratio:.1f}x, median {statistics.median(table['ratio']):.1f}x "
        f"(target >= 20x per query) -> {'OK' if worst_ratio >= 20 else 'MISS'}"
    )
    print(
        "(medians; best_ms/duckdb_best_ms are the fastest runs — on a shared machine the medians "
        "include time the process waited for a core)"
    )
    print(f"sizes agree with SQL: {bool(table['agree'].all())}")
    write_results(
        "audience",
        {"users": n, "tags": 20, "build_s": build_s, "peak_gb": peak, "store_mb": store_mb,
         "mktlab_threads": store.threads, "duckdb_threads": duck_threads,
         "median_ms": med, "min_ms": float(table["mktlab_ms"].min()),
         "max_ms": float(table["mktlab_ms"].max()),
         "duckdb_min_ms": float(table["duckdb_ms"].min()),
         "duckdb_max_ms": float(table["duckdb_ms"].max()),
         "ratio_min": worst_ratio, "ratio_max": float(table["ratio"].max()),
         "ratio_median": float(statistics.median(table["ratio"])),
         "with_members_min_ms": float(table["with_members_ms"].min()),
         "with_members_max_ms": float(table["with_members_ms"].max()),
         "all_agree": bool(table["agree"].all()),
         "expressions": [
             {"expr": e, "mktlab_ms": r["mktlab_ms"], "duckdb_ms": r["duckdb_ms"],
              "ratio": r["ratio"], "size": r["size"]}
             for e, r in zip(EXPRESSIONS, table.to_dict("records"))
         ]},
        # only the default size is "full" (the README's figures); other sizes say their size
        variant=None if args.quick or n == 100_000_000 else f"{n / 1e6:g}M",
    )  # fmt: skip
    if chdb_store is not None:
        report_chdb(table, chdb_figures, n, build_s, store_mb)
        chdb_store.close()
    con.close()
    shutil.rmtree(tmpdir, ignore_errors=True)
    if args.quick:
        print("(--quick: 5M users; targets are stated for 100M)")
    ok = bool(table["agree"].all()) and bool(table.get("chdb_agree", table["agree"]).all())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
