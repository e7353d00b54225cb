"""Redis Streams backend: leases, balancing, takeover order, lag on 6.2, server restarts."""

from __future__ import annotations

import threading
import time

import pytest

from mktlab.errors import ConfigError
from mktlab.live.bus_redis import RedisBus
from mktlab.live.events import partition_of

TS = 1_800_000_000.0


def events(n_users: int, per_user: int, *, tag: str = "e", start: int = 0) -> list[dict]:
    return [
        {"event_id": f"{tag}-{u}-{k}", "user_id": f"u{u}", "event": "view", "ts": TS + k, "seq": k}
        for k in range(start, start + per_user)
        for u in range(n_users)
    ]


@pytest.fixture
def bus(redis_url, ns):
    b = RedisBus(redis_url, partitions=4, namespace=ns, groups=("g",))
    yield b
    b.close()


def held(*consumers) -> list[set[int]]:
    return [c.partitions_held() for c in consumers]


def test_consumers_share_partitions_fairly_and_never_overlap(bus):
    c1 = bus.consumer("g", "c1", lease_ms=5000)
    c1.poll(block_ms=0)
    assert held(c1) == [{0, 1, 2, 3}]
    c2 = bus.consumer("g", "c2", lease_ms=5000)
    c2.poll(block_ms=0)  # c1 holds everything: c2 waits for c1 to give some back
    assert c2.partitions_held() == set()
    c1.poll(block_ms=0)  # two live consumers: c1 keeps ceil(4/2) = 2
    c2.poll(block_ms=0)
    a, b = held(c1, c2)
    assert (len(a), len(b)) == (2, 2)
    assert a | b == {0, 1, 2, 3}
    assert c1.live_consumers == c2.live_consumers == 2
    c3 = bus.consumer("g", "c3", lease_ms=5000)
    for c in (c3, c1, c2, c3):
        c.poll(block_ms=0)
    parts = held(c1, c2, c3)
    assert sum(map(len, parts)) == 4
    assert set().union(*parts) == {0, 1, 2, 3}
    assert max(map(len, parts)) == 2  # ceil(4/3)
    c1.close()  # leaves at once: its partitions are free for the others
    for c in (c2, c3):
        c.poll(block_ms=0)
    assert set().union(*held(c2, c3)) == {0, 1, 2, 3}
    stats = bus.stats("g")
    assert {p["holder"] for p in stats["partitions"].values()} == {"c2", "c3"}


def test_a_partition_with_events_in_flight_is_not_given_away(bus):
    bus.publish(events(8, 3))
    c1 = bus.consumer("g", "c1", lease_ms=5000)
    got = c1.poll(max_events=100, block_ms=0)
    assert len(got) == 24
    c2 = bus.consumer("g", "c2", lease_ms=5000)
    c2.poll(block_ms=0)
    c1.poll(block_ms=0)  # nothing acked yet: c1 keeps everything
    assert c1.partitions_held() == {0, 1, 2, 3}
    done = [d for d in got if d.partition in (0, 1)]
    c1.ack(done)
    c1.poll(block_ms=0)
    c2.poll(block_ms=0)
    assert c2.partitions_held() == {0, 1}
    assert c1.partitions_held() == {2, 3}


def test_a_silent_consumer_loses_its_partitions_and_its_pending_events_come_first(bus):
    bus.publish(events(8, 5))
    c1 = bus.consumer("g", "c1", lease_ms=300)
    stuck = c1.poll(max_events=16, block_ms=0)  # read, never acked: c1 "dies" here
    assert len(stuck) == 16
    c2 = bus.consumer("g", "c2", lease_ms=300)
    assert c2.poll(block_ms=0) == []  # c1's leases are still valid
    time.sleep(0.45)  # > lease_ms: c1's heartbeat and leases lapse
    got = []
    while len(got) < 40:
        batch = c2.poll(max_events=7, block_ms=100)
        assert batch
        got += batch
        c2.ack(batch)
    assert c2.partitions_held() == {0, 1, 2, 3}
    by_part: dict[int, list] = {}
    for d in got:
        by_part.setdefault(d.partition, []).append(d)
    for part, ds in by_part.items():
        # per partition: what c1 had read comes back first, flagged, then the rest
        n_old = sum(1 for s in stuck if s.partition == part)
        assert [d.redelivered for d in ds] == [True] * n_old + [False] * (len(ds) - n_old)
        assert [d.msg_id for d in ds[:n_old]] == [s.msg_id for s in stuck if s.partition == part]
    seqs: dict[str, list[int]] = {}
    for d in got:
        seqs.setdefault(d.event.user_id, []).append(d.event.props["seq"])
    assert all(s == [0, 1, 2, 3, 4] for s in seqs.values())
    # c1 comes back: it no longer holds anything, so it reads nothing
    assert c1.poll(max_events=100, block_ms=0) == []
    assert c1.partitions_held() == set()


def test_lag_and_pending_on_this_server(bus):
    bus.publish(events(8, 2))
    c = bus.consumer("g", "c1", lease_ms=5000)
    first = c.poll(max_events=6, block_ms=0)
    s = bus.stats("g")["partitions"]
    assert sum(p["pending"] for p in s.values()) == 6
    assert sum(p["lag"] for p in s.values()) == 10
    assert sum(p["length"] for p in s.values()) == 16
    c.ack(first)
    assert sum(p["pending"] for p in bus.stats("g")["partitions"].values()) == 0
    assert bus.stats("other")["partitions"][0]["lag"] == s[0]["length"]  # a group not created


def test_a_late_group_reads_from_the_start(bus):
    bus.publish(events(4, 2))
    c = bus.consumer("late", "c1", lease_ms=5000)
    assert len(c.poll(max_events=100, block_ms=0)) == 8


def test_poll_waits_for_new_events_without_consuming_while_waiting(bus):
    c = bus.consumer("g", "c1", lease_ms=5000)
    c.poll(block_ms=0)
    timer = threading.Timer(0.2, lambda: bus.publish(events(1, 1)))
    timer.start()
    t0 = time.monotonic()
    got = c.poll(max_events=10, block_ms=2000)
    assert [d.event.event_id for d in got] == ["e-0-0"]
    assert time.monotonic() - t0 < 1.9  # woke on the event, did not sleep out the block
    timer.join()


def test_cluster_clients_are_refused(monkeypatch, bus):
    from mktlab.live import bus_redis

    monkeypatch.setattr("mktlab.coupons.connection.is_cluster", lambda _c: True)
    with pytest.raises(ConfigError, match="one Redis server"):
        bus_redis.RedisBus(bus._r, partitions=4, namespace="x")


def _run_through_restart(server, *, graceful: bool) -> tuple[list[str], list[str]]:
    """Publish and consume in threads while the server goes down and comes back."""
    pub = RedisBus(server.url, partitions=3, namespace="live", groups=("g",), retry_s=30)
    con_bus = RedisBus(server.url, partitions=3, namespace="live", retry_s=30)
    consumer = con_bus.consumer("g", "c1", lease_ms=2000)
    published: list[str] = []
    handled: list[str] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def produce():
        try:
            for k in range(40):
                batch = events(5, 10, tag=f"b{k}", start=10 * k)
                pub.publish(batch)
                published.extend(e["event_id"] for e in batch)
                time.sleep(0.01)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def consume():
        try:
            while not stop.is_set():
                batch = consumer.poll(max_events=50, block_ms=100)
                handled.extend(d.event.event_id for d in batch)
                consumer.ack(batch)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    deadline = time.time() + 20
    while len(published) < 600 and time.time() < deadline:
        time.sleep(0.01)
    server.restart(graceful=graceful, down_s=0.5)
    threads[0].join(60)
    deadline = time.time() + 30
    while not set(published) <= set(handled) and time.time() < deadline and not errors:
        time.sleep(0.05)
    stop.set()
    threads[1].join(30)
    consumer.close()
    pub.close()
    con_bus.close()
    assert not errors, errors
    return published, handled


@pytest.mark.parametrize("graceful", [True, False], ids=["shutdown", "sigkill"])
def test_a_redis_restart_loses_nothing(fresh_redis_server, graceful):
    server = fresh_redis_server
    if not graceful:
        # a SIGKILL keeps only what reached the disk: fsync every write for this case
        server.client().config_set("appendfsync", "always")
    published, handled = _run_through_restart(server, graceful=graceful)
    assert len(published) == 2000
    assert set(published) <= set(handled)
    # per user, the first handling of each event follows publish order
    first: dict[str, list[int]] = {}
    seen: set[str] = set()
    for eid in handled:
        if eid not in seen:
            seen.add(eid)
            _, u, k = eid.split("-")
            first.setdefault(u, []).append(int(k))
    assert all(v == sorted(v) for v in first.values())


def test_partition_of_decides_the_stream(bus, redis_url):
    bus.publish(events(20, 1))
    for i, key in enumerate(bus.stream_keys):
        for _, fields in bus._r.xrange(key):
            assert (
                partition_of(fields[b"e"].split(b'"user_id":"')[1].split(b'"')[0].decode(), 4) == i
            )


def test_trim_drops_only_what_every_group_has_acked(bus):
    bus.ensure_group("slow")
    bus.publish(events(8, 5))
    fast = bus.consumer("g", "f", lease_ms=5000)
    got = fast.poll(max_events=100, block_ms=0)
    fast.ack(got[:30])  # 10 of the 40 stay pending in "g"
    assert bus.trim() == 0  # "slow" has read nothing: everything is still needed
    slow = bus.consumer("slow", "s", lease_ms=5000)
    slow.ack(slow.poll(max_events=100, block_ms=0))
    removed = bus.trim()
    assert 0 < removed <= 30
    left = sum(p["length"] for p in bus.stats("g")["partitions"].values())
    assert left == 40 - removed
    fast.close()  # the 10 pending still come back, in order, to the next consumer
    again = bus.consumer("g", "f2", lease_ms=5000).poll(max_events=100, block_ms=0)
    assert sorted(d.event.event_id for d in again) == sorted(d.event.event_id for d in got[30:])


def test_foreign_and_deleted_entries_never_reach_the_caller(bus):
    c1 = bus.consumer("g", "c1", lease_ms=5000)
    c1.poll(block_ms=0)
    bus._r.xadd(bus.stream_keys[0], {"x": "y"})  # some other producer's entry
    assert c1.poll(block_ms=0) == []
    [dl] = bus.dead_letters()
    assert (dl.reason, dl.payload) == ("bad_field", b"x y")
    bus.publish([{"user_id": "u1", "event": "view", "ts": TS}])
    [d] = c1.poll(block_ms=0)
    c1.close()  # read, not acked ...
    bus._r.xdel(bus.stream_keys[d.partition], d.msg_id)  # ... and deleted meanwhile
    c2 = bus.consumer("g", "c2", lease_ms=5000)
    assert c2.poll(block_ms=0) == []
    assert sum(p["pending"] for p in bus.stats("g")["partitions"].values()) == 0
    assert len(bus.dead_letters()) == 1
