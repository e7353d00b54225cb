"""Coupon issuer benchmark: ceiling, naive approach, mktlab, against one local Redis.

Same run, same server:

1. ceiling: ``redis-benchmark`` running one EVALSHA (check stock + DECR) with and without
   pipelining (a tight pipelined redis-py loop when the binary is missing);
2. naive: GET stock, check in Python, DECR (plus SISMEMBER/SADD for the user) from several
   processes, as most code does; it over-issues under concurrency;
3. mktlab: the flash-sale simulator (batched EVALSHA, fallback sharding, ledger
   write-through) from several processes.

4. the same mktlab workload on a local Redis Cluster of 3 masters with 1 replica each
   (``tests/coupons/cluster.py`` starts it from ``redis-server``; issue 17), against step 3
   as its anchor: the ratio cluster / single Redis per durability mode.

Target (issue 6): >= 50k issuance decisions/s with pipelining/batching and p99 per
decision < 5 ms. Run: ``.venv/bin/python benchmarks/coupons.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from _results import write_results  # benchmarks/_results.py

from mktlab.config import settings
from mktlab.coupons.simulate import SimulationConfig, simulate

CHECK_DECR = """
local s = tonumber(redis.call('GET', KEYS[1]) or '0')
if s <= 0 then return -1 end
return redis.call('DECR', KEYS[1])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workdir: Path) -> tuple[subprocess.Popen | None, str]:
    """A fresh redis-server of our own, else MKTLAB_REDIS_URL / the embedded one."""
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if binary is None:
        from mktlab.coupons.connection import connection_url, get_redis

        return None, connection_url(get_redis(settings().redis_url))
    port = _free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    r = redis.Redis(port=port)
    for _ in range(100):
        try:
            r.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def ceiling(url: str, n: int) -> dict[str, float]:
    """EVALSHA ceiling with redis-benchmark (or a pipelined loop)."""
    r = redis.Redis.from_url(url)
    sha = r.script_load(CHECK_DECR)
    r.set("bench:stock", 10**12)
    binary = shutil.which("redis-benchmark") or (
        "/usr/bin/redis-benchmark" if Path("/usr/bin/redis-benchmark").exists() else None
    )
    kw = r.connection_pool.connection_kwargs
    out: dict[str, float] = {}
    if binary:
        target = (
            ["-s", kw["path"]] if kw.get("path") else ["-h", "127.0.0.1", "-p", str(kw["port"])]
        )
        for pipeline in (1, 16):
            res = subprocess.run(
                [binary, *target, "-n", str(n), "-c", "50", "-P", str(pipeline), "-q",
                 "EVALSHA", sha, "1", "bench:stock"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            m = re.search(r"([\d.]+) requests per second(?:, p50=([\d.]+) msec)?", res.stdout)
            out[f"evalsha_P{pipeline}_rps"] = float(m.group(1))
            if m.group(2):
                out[f"evalsha_P{pipeline}_p50_ms"] = float(m.group(2))
        out["tool"] = "redis-benchmark"
    else:
        pipe = r.pipeline(transaction=False)
        t = time.perf_counter()
        for i in range(n):
            pipe.evalsha(sha, 1, "bench:stock")
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()
        out["evalsha_P1000_rps"] = n / (time.perf_counter() - t)
        out["tool"] = "redis-py pipelined loop"
    r.delete("bench:stock")
    return out


def _naive_worker(url: str, users: list[str], q) -> None:
    r = redis.Redis.from_url(url, decode_responses=True)
    issued = 0
    lat = []
    for u in users:
        t = time.perf_counter()
        stock = int(r.get("naive:stock") or 0)
        if stock > 0 and not r.sismember("naive:users", u):
            r.decr("naive:stock")
            r.sadd("naive:users", u)
            r.rpush("naive:log", u)
            issued += 1
        lat.append(time.perf_counter() - t)
    q.put((issued, lat))


def naive(url: str, stock: int, requests: int, workers: int) -> dict[str, float]:
    """GET + check + DECR from several processes: count what it hands out."""
    r = redis.Redis.from_url(url, decode_responses=True)
    r.delete("naive:stock", "naive:users", "naive:log")
    r.set("naive:stock", stock)
    import random

    rng = random.Random(1)
    distinct = int(requests * 0.9)
    users = [f"n{i}" for i in range(distinct)] + [
        f"n{rng.randrange(distinct)}" for _ in range(requests - distinct)
    ]
    rng.shuffle(users)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [
        ctx.Process(target=_naive_worker, args=(url, users[w::workers], q)) for w in range(workers)
    ]
    t = time.perf_counter()
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    wall = time.perf_counter() - t
    for p in procs:
        p.join()
    issued = sum(i for i, _ in results)
    log = r.lrange("naive:log", 0, -1)
    lat = sorted(x for _, lt in results for x in lt)
    out = {
        "stock": stock,
        "requests": requests,
        "issued": issued,
        "over_issued": max(0, issued - stock),
        "users_twice": len(log) - len(set(log)),
        "final_stock_counter": int(r.get("naive:stock")),
        "throughput": requests / wall,
        "p99_ms": lat[int(0.99 * (len(lat) - 1))] * 1000,
    }
    r.delete("naive:stock", "naive:users", "naive:log")
    return out


def sale(a, url: str, tmp: Path, durability: str, label: str) -> dict:
    """The mktlab workload once against ``url``; print and return its summary."""
    rep = simulate(
        SimulationConfig(
            stock=a.stock,
            n_requests=a.requests,
            duplicate_rate=0.1,
            retry_rate=0.02,
            workers=a.workers,
            shards=a.shards,
            batch_size=a.batch_size,
            durability=durability,
            namespace="bench",
        ),
        redis=url,
        ledger=f"sqlite:///{tmp / f'ledger-{label}{durability}.db'}",
    )
    s = rep.summary()
    s.pop("config")
    print(
        f"[mktlab {label}durability={durability}, {a.workers} procs, batch {a.batch_size}] "
        f"decisions/s={s['throughput']:.0f} p50={s['p50_ms']:.2f}ms p99={s['p99_ms']:.2f}ms "
        f"issued={s['issued']}/{s['stock']} expected={s['expected_issued']} "
        f"ledger={s['ledger_issued']} redis={s['redis_issued']} duplicates={s['duplicates']} "
        f"over_issued={s['over_issued']} rejects={s['rejects']}"
    )
    return s


def on_cluster(a, tmp: Path) -> dict[str, dict]:
    """Step 4: the same workload on a 3-master x 1-replica cluster started here."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's tests/
    from tests.coupons.cluster import MISSING, LocalCluster, cluster_binaries

    if cluster_binaries() is None:
        print(f"[cluster] skipped: {MISSING}")
        return {}
    with LocalCluster(tmp / "cluster", masters=3, replicas=1) as lc:
        print(f"Redis Cluster: {lc.url}, masters {lc.master_ports()}, 1 replica each")
        return {d: sale(a, lc.url, tmp, d, "cluster ") for d in ("ledger", "outbox")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stock", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=400_000, help="mktlab requests (all workers)")
    ap.add_argument(
        "--workers", type=int, default=2,
        help="client processes (default 2: one per core of this machine; Redis needs CPU too)",
    )  # fmt: skip
    ap.add_argument(
        "--batch-size", type=int, default=48,
        help="requests per issue_many (default 48; larger batches trade p99 for throughput)",
    )  # fmt: skip
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--naive-stock", type=int, default=1_000)
    ap.add_argument("--naive-requests", type=int, default=10_000)
    ap.add_argument("--naive-workers", type=int, default=8)
    ap.add_argument("--ceiling-n", type=int, default=500_000)
    ap.add_argument(
        "--no-cluster", action="store_true",
        help="skip step 4 (the 3-master x 1-replica Redis Cluster on loopback)",
    )  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    a = ap.parse_args()
    if a.quick:
        a.stock, a.requests, a.naive_stock, a.naive_requests, a.ceiling_n = (
            5_000,
            20_000,
            500,
            4_000,
            50_000,
        )
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp))
        try:
            print(f"Redis: {url} ({redis.Redis.from_url(url).info()['redis_version']})")
            ceil = ceiling(url, a.ceiling_n)
            print(f"[ceiling] {ceil}")
            nv = naive(url, a.naive_stock, a.naive_requests, a.naive_workers)
            print(f"[naive GET+check+DECR, {a.naive_workers} procs] {nv}")
            results = {d: sale(a, url, Path(tmp), d, "") for d in ("ledger", "outbox")}
        finally:
            if proc is not None:
                proc.kill()
                proc.wait()
        clustered = {} if a.no_cluster else on_cluster(a, Path(tmp))
    ceil_rps = ceil.get("evalsha_P16_rps") or ceil.get("evalsha_P1000_rps")
    print("\n== summary ==")
    print(
        f"ceiling EVALSHA pipelined: {ceil_rps:,.0f}/s; unpipelined: {ceil.get('evalsha_P1_rps', float('nan')):,.0f}/s"
    )
    for d, s in results.items():
        print(
            f"mktlab ({d}): {s['throughput']:,.0f} decisions/s = {s['throughput'] / ceil_rps:.2f}x the pipelined "
            f"ceiling, {s['throughput'] / nv['throughput']:.1f}x naive; p99 {s['p99_ms']:.2f} ms"
        )
    print(
        f"naive over-issued {nv['over_issued']} coupons ({nv['issued']} for stock {nv['stock']}), "
        f"{nv['users_twice']} users twice -> {'SHOWN' if nv['over_issued'] or nv['users_twice'] else 'not shown this run'}"
    )
    for d, s in clustered.items():
        print(
            f"Redis Cluster 3 masters x 1 replica ({d}): {s['throughput']:,.0f} decisions/s = "
            f"{s['throughput'] / results[d]['throughput']:.2f}x single Redis "
            f"({results[d]['throughput']:,.0f}/s); p99 {s['p99_ms']:.2f} ms vs {results[d]['p99_ms']:.2f} ms"
        )
    correct = all(
        s["duplicates"] == 0 and s["over_issued"] == 0 and s["issued"] == s["expected_issued"]
        for s in [*results.values(), *clustered.values()]
    )
    print(
        f"mktlab correctness (exact issue count, no duplicates, no over-issue): {'MET' if correct else 'NOT MET'}"
    )
    for d, s in results.items():  # both targets in the same run, per durability mode
        tput, p99 = s["throughput"] >= 50_000, s["p99_ms"] < 5
        print(
            f"target ({d}) >= 50,000 decisions/s and p99 < 5 ms in one setting: "
            f"{'MET' if tput and p99 else 'NOT MET'} ({s['throughput']:,.0f}/s, p99 {s['p99_ms']:.2f} ms)"
        )
    # one variant per batch size: the README's table has a row per batch size
    default = a.batch_size == 48 and a.requests == 400_000 and a.workers == 2
    write_results(
        "coupons",
        {"stock": a.stock, "requests": a.requests, "workers": a.workers, "shards": a.shards,
         "batch_size": a.batch_size, "ceiling_pipelined_rps": ceil_rps,
         "ceiling_unpipelined_rps": ceil.get("evalsha_P1_rps"),
         "naive_issued": nv["issued"], "naive_stock": nv["stock"],
         "naive_over_issued": nv["over_issued"], "correct": bool(correct),
         **{f"{d}_{k}": s[k] for d, s in results.items()
            for k in ("throughput", "p50_ms", "p99_ms", "issued", "duplicates", "over_issued")},
         },
        variant="quick" if a.quick else ("full" if default else f"batch-{a.batch_size}"),
    )  # fmt: skip
    if clustered:  # its own variant: the single-Redis anchor of this run beside it
        write_results(
            "coupons",
            {"stock": a.stock, "requests": a.requests, "workers": a.workers, "shards": a.shards,
             "batch_size": a.batch_size, "masters": 3, "replicas": 1,
             **{f"{where}_{d}_{k}": s[k] for where, runs in (("single", results),
                                                               ("cluster", clustered))
                for d, s in runs.items()
                for k in ("throughput", "p50_ms", "p99_ms", "issued", "duplicates", "over_issued")},
             **{f"cluster_{d}_ratio": s["throughput"] / results[d]["throughput"]
                for d, s in clustered.items()}},
            variant="cluster-3x1" + ("-quick" if a.quick else ""),
        )  # fmt: skip


if __name__ == "__main__":
    main()
