"""SIGKILL a consumer process mid-stream: another takes over, nothing is lost, order holds.

Each worker is a real process running a small consume loop that records every handled
event in a Redis list (RPUSH, so the list is the global order of handling) and acks only
after recording: at-least-once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import redis

from mktlab.live.bus_rabbitmq import RabbitMQBus
from mktlab.live.bus_redis import RedisBus

TS = 1_800_000_000.0
N_USERS, PER_USER = 30, 60  # 1,800 events

WORKER = r"""
import json, sys, time
import redis
cfg = json.loads(sys.argv[1])
if cfg["backend"] == "redis":
    from mktlab.live.bus_redis import RedisBus as Bus
else:
    from mktlab.live.bus_rabbitmq import RabbitMQBus as Bus
rec = redis.Redis.from_url(cfg["record_url"])
bus = Bus(cfg["url"], partitions=cfg["partitions"], namespace=cfg["ns"], groups=[cfg["group"]])
c = bus.consumer(cfg["group"], cfg["name"], lease_ms=cfg["lease_ms"])
while True:
    batch = c.poll(max_events=20, block_ms=100)
    if batch:
        rec.rpush(cfg["key"], *[json.dumps([d.event.event_id, cfg["name"], d.partition])
                                for d in batch])
        time.sleep(0.02)  # a slow handler: the kill lands mid-stream
        c.ack(batch)
    rec.set(cfg["key"] + ":held:" + cfg["name"], json.dumps(sorted(c.partitions_held())))
"""


def events(per_user_from: int, per_user_to: int) -> list[dict]:
    return [
        {"event_id": f"e-{u}-{k}", "user_id": f"u{u}", "event": "view", "ts": TS + k, "seq": k}
        for k in range(per_user_from, per_user_to)
        for u in range(N_USERS)
    ]


class Workers:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> None:
        cfg = {**self.cfg, "name": name}
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(cfg)],
            env={**os.environ},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def kill(self, name: str) -> None:
        p = self.procs[name]
        os.kill(p.pid, signal.SIGKILL)
        p.wait()

    def alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None and p.returncode != -signal.SIGKILL:
                raise AssertionError(f"worker {name} exited: {p.stderr.read().decode()[-2000:]}")

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def wait_for(cond, workers: Workers, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not cond():
        workers.alive()
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def handled(rec: redis.Redis, key: str) -> list[tuple[str, str, int]]:
    return [tuple(json.loads(x)) for x in rec.lrange(key, 0, -1)]


def check_at_least_once_in_order(rows, published: list[dict]) -> None:
    ids = [r[0] for r in rows]
    missing = {e["event_id"] for e in published} - set(ids)
    assert not missing, f"{len(missing)} events never handled, e.g. {sorted(missing)[:5]}"
    first: dict[str, list[int]] = {}
    seen: set[str] = set()
    for eid in ids:
        if eid not in seen:
            seen.add(eid)
            _, u, k = eid.split("-")
            first.setdefault(u, []).append(int(k))
    for u, ks in first.items():
        assert ks == list(range(PER_USER)), f"user u{u}: first handled in order {ks[:20]}..."


def run_kill_scenario(bus, cfg: dict, rec: redis.Redis, *, b_joins_late: bool) -> list:
    """Publish half, run two workers, SIGKILL the busy one mid-stream, publish the rest."""
    key = cfg["key"]
    workers = Workers(cfg)
    published = events(0, PER_USER // 2)
    try:
        bus.publish(published)
        workers.start("a")
        if not b_joins_late:
            # a holds its first partitions before b starts: on a loaded machine b could
            # otherwise take every lease first, and there would be no busy worker to kill
            wait_for(lambda: rec.llen(key) >= 1, workers, 60, "worker a to start handling")
            workers.start("b")
        wait_for(lambda: rec.llen(key) >= 300, workers, 60, "worker a to make progress")
        if b_joins_late:  # RabbitMQ: b subscribes as the standby of every partition
            workers.start("b")
            time.sleep(1.0)
        rows = handled(rec, key)
        assert {r[1] for r in rows} >= {"a"}
        workers.kill("a")
        killed_at = rec.llen(key)
        rest = events(PER_USER // 2, PER_USER)
        bus.publish(rest)
        published += rest
        want = {e["event_id"] for e in published}
        wait_for(
            lambda: want <= {json.loads(x)[0] for x in rec.lrange(key, 0, -1)},
            workers,
            90,
            "every event to be handled",
        )
    finally:
        workers.stop_all()
    rows = handled(rec, key)
    check_at_least_once_in_order(rows, published)
    after = rows[killed_at:]
    assert {r[1] for r in after} == {"b"}  # the survivor handled everything after the kill
    a_parts = {r[2] for r in rows[:killed_at] if r[1] == "a"}
    assert a_parts <= {r[2] for r in after}  # ... including a's partitions
    return rows


def test_sigkill_redis_consumer_hands_its_partitions_over(redis_url, ns):
    rec = redis.Redis.from_url(redis_url)
    bus = RedisBus(redis_url, partitions=4, namespace=ns, groups=("g",))
    cfg = {
        "backend": "redis", "url": redis_url, "record_url": redis_url, "partitions": 4,
        "ns": ns, "group": "g", "lease_ms": 1000, "key": f"{ns}:handled",
    }  # fmt: skip
    try:
        rows = run_kill_scenario(bus, cfg, rec, b_joins_late=False)
        held_b = json.loads(rec.get(f"{ns}:handled:held:b"))
        assert held_b == [0, 1, 2, 3]
        assert {r[1] for r in rows} == {"a", "b"}
    finally:
        bus.close()
        rec.close()


def test_sigkill_rabbitmq_consumer_hands_its_partitions_over(amqp_url, redis_url, ns):
    rec = redis.Redis.from_url(redis_url)
    bus = RabbitMQBus(amqp_url, partitions=4, namespace=ns, groups=("g",))
    cfg = {
        "backend": "rabbitmq", "url": amqp_url, "record_url": redis_url, "partitions": 4,
        "ns": ns, "group": "g", "lease_ms": 2000, "key": f"{ns}:handled",
    }  # fmt: skip
    try:
        run_kill_scenario(bus, cfg, rec, b_joins_late=True)
    finally:
        bus.destroy()
        bus.close()
        rec.close()
