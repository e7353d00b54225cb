"""RabbitMQ backend: single active consumer per partition, standby takeover, broker restart."""

from __future__ import annotations

import threading
import time

import pytest

from mktlab.live.bus_rabbitmq import RabbitMQBus

TS = 1_800_000_000.0


def events(n_users: int, per_user: int, *, tag: str = "e", start: int = 0) -> list[dict]:
    return [
        {"event_id": f"{tag}-{u}-{k}", "user_id": f"u{u}", "event": "view", "ts": TS + k, "seq": k}
        for k in range(start, start + per_user)
        for u in range(n_users)
    ]


@pytest.fixture
def bus(amqp_url, ns):
    b = RabbitMQBus(amqp_url, partitions=3, namespace=ns, groups=("g",))
    yield b
    b.close()  # consumers first: deleting their queues would cancel them under their feet
    b.destroy()
    b.close()


def test_one_consumer_is_active_per_partition_and_a_standby_takes_over(bus):
    bus.publish(events(6, 10))
    c1 = bus.consumer("g", "c1", lease_ms=4000, prefetch=20)
    c2 = bus.consumer("g", "c2", lease_ms=4000, prefetch=20)
    first = c1.poll(max_events=15, block_ms=500)
    assert first
    assert c2.poll(max_events=15, block_ms=300) == []  # standby while c1 is subscribed
    c1.ack(first)
    unacked = c1.poll(max_events=15, block_ms=500)
    assert unacked
    c1.close()
    got = []
    deadline = time.time() + 10
    while len(got) < 60 - len(first) and time.time() < deadline:
        batch = c2.poll(max_events=50, block_ms=200)
        got += batch
        c2.ack(batch)
    assert sorted(d.event.event_id for d in first + got) == sorted(
        e["event_id"] for e in events(6, 10)
    )
    # what c1 was handed but never acked comes again (with what it had prefetched)
    again = {d.event.event_id for d in got if d.redelivered}
    assert {d.event.event_id for d in unacked} <= again
    assert not again & {d.event.event_id for d in first}
    assert c2.partitions_held() == {d.partition for d in got}  # what it received from
    seqs: dict[str, list[int]] = {}
    for d in first + got:
        seqs.setdefault(d.event.user_id, []).append(d.event.props["seq"])
    assert all(s == list(range(10)) for s in seqs.values())


def test_acks_of_a_lost_connection_are_skipped_not_fatal(bus):
    bus.publish(events(2, 3))
    c = bus.consumer("g", "c1", lease_ms=4000)
    got = c.poll(max_events=10, block_ms=500)
    c._drop()  # the connection is gone: the broker requeues what was unacked
    c.ack(got)  # no error: those deliveries come back
    again = []
    deadline = time.time() + 10
    while len(again) < len(got) and time.time() < deadline:
        again += c.poll(max_events=10, block_ms=200)
    assert {d.event.event_id for d in again} == {d.event.event_id for d in got}
    assert all(d.redelivered for d in again)
    c.ack(again)


def test_a_rabbitmq_restart_loses_nothing(fresh_rabbitmq_server):
    node = fresh_rabbitmq_server
    pub = RabbitMQBus(node.url, partitions=3, namespace="restart", groups=("g",), retry_s=60)
    consumer = pub.consumer("g", "c1", lease_ms=4000, prefetch=200)
    published: list[str] = []
    handled: list[str] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def produce():
        try:
            for k in range(30):
                batch = events(5, 10, tag=f"b{k}", start=10 * k)
                pub.publish(batch)
                published.extend(e["event_id"] for e in batch)
                time.sleep(0.02)
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
    deadline = time.time() + 30
    while len(published) < 400 and time.time() < deadline:
        time.sleep(0.01)
    node.stop_app()
    time.sleep(0.5)
    node.start_app()
    threads[0].join(120)
    deadline = time.time() + 60
    while not set(published) <= set(handled) and time.time() < deadline and not errors:
        time.sleep(0.05)
    stop.set()
    threads[1].join(30)
    consumer.close()
    pub.destroy()
    pub.close()
    assert not errors, errors
    assert len(published) == 1500
    assert set(published) <= set(handled)
    first: dict[str, list[int]] = {}
    seen: set[str] = set()
    for eid in handled:
        if eid not in seen:
            seen.add(eid)
            _, u, k = eid.split("-")
            first.setdefault(u, []).append(int(k))
    assert all(v == sorted(v) for v in first.values())


def test_a_hung_consumer_loses_its_partitions_after_about_lease_ms(bus):
    bus.publish(events(3, 4))
    hung = bus.consumer("g", "hung", lease_ms=2000)  # AMQP heartbeat of 1 s
    taken = hung.poll(max_events=5, block_ms=500)
    assert taken
    standby = bus.consumer("g", "standby", lease_ms=2000)
    assert standby.poll(max_events=50, block_ms=200) == []
    # "hung" stops polling: no heartbeats, so the broker drops it and moves its messages
    got, t0 = [], time.time()
    while len(got) < 12 and time.time() - t0 < 15:
        batch = standby.poll(max_events=50, block_ms=500)
        got += batch
        standby.ack(batch)
    assert sorted(d.event.event_id for d in got) == sorted(e["event_id"] for e in events(3, 4))
    assert {d.event.event_id for d in taken} <= {d.event.event_id for d in got if d.redelivered}
    hung.close()


def test_publishing_with_no_group_declared_is_refused_not_lost(amqp_url, ns):
    from mktlab.errors import ConfigError

    b = RabbitMQBus(amqp_url, partitions=2, namespace=f"{ns}-nogroup", groups=())
    try:
        with pytest.raises(ConfigError, match="consumer group"):
            b.publish(events(1, 1))
    finally:
        b.destroy()
        b.close()
