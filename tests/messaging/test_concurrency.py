"""Across processes: one delivery per key, caps that hold, nothing lost or doubled by a crash."""

from __future__ import annotations

import multiprocessing as mp
from collections import Counter

from mktlab.messaging import DeliveryLog, Gateway, TemplateCatalog

from . import workers


def test_two_processes_same_keys_exactly_one_delivery(log_url):
    DeliveryLog(log_url).ensure_schema()  # the race is on the keys, not on CREATE TABLE
    ctx = mp.get_context("spawn")
    n = 120
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=workers.send_worker, args=(log_url, n, seed, barrier, queue))
             for seed in (1, 2)]  # fmt: skip
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    shared = Counter()
    for out in results:
        for key, status, _ in out:
            if key.startswith("shared-"):
                shared[(key, status == "duplicate")] += 1
    for i in range(n):  # each key: once decided, once a duplicate
        assert shared[(f"shared-{i}", False)] == 1, i
        assert shared[(f"shared-{i}", True)] == 1, i
    log = DeliveryLog(log_url)
    box = log.inbox()
    shared_box = box[box.key.str.startswith("shared-")]
    assert len(shared_box) == n
    assert shared_box.key.is_unique
    assert len(log.deliveries()) == n + 20
    # push cap 3/1d for the hot user held across both processes
    hot = box[box.user_id == "hot"]
    assert len(hot) == 3
    assert Counter(s for out in results for k, s, _ in out if k.startswith("hot-")) == {
        "sent": 3, "suppressed": 17,
    }  # fmt: skip
    log.dispose()


def test_crash_mid_batch_loses_nothing_and_doubles_nothing(log_url):
    """A worker dies after its provider wrote but before its batch committed; redelivery
    of every message (same keys) sends each exactly once."""
    ctx = mp.get_context("spawn")
    n, batch = 40, 10
    p = ctx.Process(target=workers.crash_worker, args=(log_url, n, 25, batch))
    p.start()
    p.join(timeout=120)
    assert p.exitcode == 17
    log = DeliveryLog(log_url)
    # the two batches before the crash are committed, the third rolled back entirely
    assert len(log.inbox()) == 20
    assert len(log.deliveries()) == 20
    gw = Gateway(log, TemplateCatalog.from_dict(workers.TEMPLATES))
    res = gw.send_many(workers.shared_messages(n))
    assert Counter(r.status for r in res) == {"duplicate": 20, "sent": 20}
    box = log.inbox()
    assert len(box) == n
    assert box.key.is_unique
    log.dispose()
