"""Message gateway benchmark: batched ``send_many`` against a naive ``send`` loop.

Same run, same machine, same workload (local providers on SQLite, two frequency caps,
push -> sms fallback for 2% of users whose push provider fails):

1. anchor: one ``Gateway.send`` per message, i.e. one transaction (and one commit) per
   message, as a straightforward integration would do;
2. mktlab: ``Gateway.send_many`` over batches of 10,000 messages, one transaction each.

Target (issue 15): ``send_many`` of 10,000 messages well above 5,000 msgs/s. Figures go
to ``benchmarks/results/messaging.json`` (one entry per size). Run:
``.venv/bin/python benchmarks/messaging.py`` (``--full`` for the larger sizes; ``--pg``
adds the same ``send_many`` run against the local PostgreSQL when it answers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path

from mktlab.messaging import DeliveryLog, Gateway, LocalProvider, Message, TemplateCatalog
from mktlab.rules.model import FrequencyCap

RESULTS = Path(__file__).resolve().parent / "results" / "messaging.json"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
T0 = 1_714_550_400.0
TEMPLATES = TemplateCatalog.from_dict(
    {"reminder": {"body": "{name}, {n} items wait in your cart", "title": "Your cart"}}
)
CAPS = [FrequencyCap("push", 3, "1d"), FrequencyCap("*", 5, "7d")]


def messages(n: int, prefix: str) -> list[Message]:
    """``n`` messages to ``n / 5`` users, one a second of event time."""
    users = max(1, n // 5)
    return [
        Message(
            f"{prefix}-{i}",
            f"u{i % users}",
            "reminder",
            ("push", "sms"),
            T0 + i,
            campaign_id="bench",
            params={"name": "Ada", "n": i % 7 + 1},
        )
        for i in range(n)
    ]


def gateway(url: str, n_users: int) -> Gateway:
    failing = {f"u{i}" for i in range(0, n_users, 50)}  # 2% of users: push unreachable
    providers = {"push": LocalProvider("push", fail_users=failing), "sms": LocalProvider("sms")}
    return Gateway(DeliveryLog(url), TEMPLATES, providers=providers, caps=CAPS)


def run_naive(url: str, n: int) -> dict:
    msgs = messages(n, "naive")
    gw = gateway(url, n // 5)
    gw.send(messages(1, "warm")[0])  # schema and connection outside the timing
    t = time.perf_counter()
    res = [gw.send(m) for m in msgs]
    dt = time.perf_counter() - t
    gw.log.dispose()
    return {"messages": n, "seconds": dt, "msgs_per_s": n / dt,
            "statuses": dict(Counter(r.status for r in res))}  # fmt: skip


def run_batched(url: str, n: int, batch: int) -> dict:
    msgs = messages(n, "batch")
    gw = gateway(url, n // 5)
    gw.send(messages(1, "warm")[0])
    t = time.perf_counter()
    res = []
    for i in range(0, n, batch):
        res += gw.send_many(msgs[i : i + batch])
    dt = time.perf_counter() - t
    counts = gw.log.counts()
    assert counts["total"] == n + 1, counts  # every message recorded exactly once
    gw.log.dispose()
    return {"messages": n, "batch": batch, "seconds": dt, "msgs_per_s": n / dt,
            "statuses": dict(Counter(r.status for r in res))}  # fmt: skip


def pg_schema_url() -> tuple[str, str] | None:
    try:
        import psycopg

        schema = f"msg_bench_{os.getpid()}"
        with psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=2, autocommit=True
        ) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.execute(f'CREATE SCHEMA "{schema}"')
        return f"{PG_URL}?options=-csearch_path%3D{schema}", schema
    except Exception:
        return None


def drop_pg_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(
        "host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True
    ) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="100k batched, 5k naive (about a minute)")
    ap.add_argument("--pg", action="store_true", help="also run send_many on local PostgreSQL")
    args = ap.parse_args()
    size = "full" if args.full else "small"
    n_batched, n_naive, batch = (100_000, 5_000, 10_000) if args.full else (10_000, 1_000, 10_000)
    with tempfile.TemporaryDirectory(prefix="mktlab-msg-bench-") as tmp:
        naive = run_naive(f"sqlite:///{tmp}/naive.db", n_naive)
        batched = run_batched(f"sqlite:///{tmp}/batched.db", n_batched, batch)
    out = {
        "size": size,
        "engine": "sqlite",
        "naive_send": naive,
        "send_many": batched,
        "ratio": batched["msgs_per_s"] / naive["msgs_per_s"],
        "target_msgs_per_s": 5000,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if args.pg:
        pg = pg_schema_url()
        if pg is None:
            print("PostgreSQL at 127.0.0.1:5432 is not reachable: --pg skipped")
        else:
            try:
                out["send_many_postgresql"] = run_batched(pg[0], n_batched, batch)
            finally:
                drop_pg_schema(pg[1])
    print(f"messaging benchmark ({size}, SQLite, local providers, caps + fallback)")
    print(f"  naive send loop : {naive['messages']:>7,} msgs  {naive['msgs_per_s']:>9,.0f} msgs/s")
    print(f"  send_many       : {batched['messages']:>7,} msgs  {batched['msgs_per_s']:>9,.0f} msgs/s"
          f"  (batches of {batch:,})")  # fmt: skip
    if "send_many_postgresql" in out:
        pg_rate = out["send_many_postgresql"]["msgs_per_s"]
        print(f"  send_many (PG)  : {n_batched:>7,} msgs  {pg_rate:>9,.0f} msgs/s")
    print(f"  ratio send_many / naive = {out['ratio']:.1f}x; "
          f"target > 5,000 msgs/s: {'met' if batched['msgs_per_s'] > 5000 else 'NOT met'}")  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    doc = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    doc[size] = out
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")
    print(
        f"  written to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}"
    )


if __name__ == "__main__":
    main()
