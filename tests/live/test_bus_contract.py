"""What every event bus backend promises, run against real Redis and real RabbitMQ."""

from __future__ import annotations

import json
import socket
import time

import pytest

from mktlab.errors import ConfigError, ServiceUnavailableError, ValidationError
from mktlab.live.bus import Delivery, PublishReport, open_bus
from mktlab.live.bus_rabbitmq import RabbitMQBus
from mktlab.live.bus_redis import RedisBus
from mktlab.live.events import BadEvent, Event, partition_of

TS = 1_800_000_000.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def events(n_users: int, per_user: int, *, tag: str = "e") -> list[dict]:
    """Interleaved events: user u's k-th event has props seq=k."""
    return [
        {"event_id": f"{tag}-{u}-{k}", "user_id": f"u{u}", "event": "view", "ts": TS + k, "seq": k}
        for k in range(per_user)
        for u in range(n_users)
    ]


@pytest.fixture(params=["redis", "rabbitmq"])
def backend(request):
    return request.param


@pytest.fixture
def make_bus(backend, request, redis_url, ns):
    """Build buses of the parametrised backend in this test's namespace; cleaned up after."""
    made = []
    amqp = request.getfixturevalue("amqp_url") if backend == "rabbitmq" else None

    def make(partitions: int = 4, groups=("g",), **kw):
        if backend == "redis":
            bus = RedisBus(redis_url, partitions=partitions, namespace=ns, groups=groups, **kw)
        else:
            bus = RabbitMQBus(amqp, partitions=partitions, namespace=ns, groups=groups, **kw)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        bus.close()  # consumers first: deleting their queues would cancel them under their feet
    if made and backend == "rabbitmq":
        made[0].destroy()
        made[0].close()


def inject(bus, partition: int, payload: bytes) -> None:
    """Put a raw payload on a partition behind the bus's back (a foreign producer)."""
    if isinstance(bus, RedisBus):
        bus._r.xadd(bus.stream_keys[partition], {"e": payload})
    else:
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(bus.url))
        conn.channel().basic_publish(bus.exchange, f"p{partition}", payload)
        conn.close()


def drain(consumer, want: int, *, timeout: float = 20, ack: bool = True) -> list[Delivery]:
    got: list[Delivery] = []
    deadline = time.time() + timeout
    while len(got) < want and time.time() < deadline:
        batch = consumer.poll(max_events=100, block_ms=100)
        got += batch
        if ack:
            consumer.ack(batch)
    return got


def seqs_by_user(deliveries) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for d in deliveries:
        out.setdefault(d.event.user_id, []).append(d.event.props["seq"])
    return out


def test_one_users_events_arrive_in_publish_order(make_bus):
    bus = make_bus(partitions=4)
    evs = events(12, 20)
    for lo in range(0, len(evs), 37):  # several batches
        assert bus.publish(evs[lo : lo + 37]).published == len(evs[lo : lo + 37])
    c = bus.consumer("g", "c1", lease_ms=2000)
    got = drain(c, len(evs))
    assert sorted(d.event.event_id for d in got) == sorted(e["event_id"] for e in evs)
    assert all(s == list(range(20)) for s in seqs_by_user(got).values())
    assert all(d.partition == partition_of(d.event.user_id, 4) for d in got)
    assert not any(d.redelivered for d in got)
    assert c.poll(max_events=10, block_ms=50) == []


def test_invalid_raise_names_the_first_bad_event_and_publishes_nothing(make_bus):
    bus = make_bus()
    batch = [*events(2, 1), {"event": "view", "ts": TS}, b"{broken"]
    with pytest.raises(BadEvent) as info:
        bus.publish(batch)
    assert (info.value.index, info.value.reason) == (2, "no_user_id")
    assert "event #2" in str(info.value)
    c = bus.consumer("g", "c1", lease_ms=2000)
    assert c.poll(max_events=10, block_ms=100) == []
    assert bus.stats("g")["dead_letters"] == 0


def test_invalid_dead_letter_publishes_the_good_and_keeps_the_bad(make_bus):
    bus = make_bus()
    batch = [*events(3, 1), {"user_id": "u1", "event": "view", "ts": "soon"}, b"{broken"]
    assert bus.publish(batch, invalid="dead_letter") == PublishReport(3, 2)
    dl = bus.dead_letters()
    assert [d.reason for d in dl] == ["bad_timestamp", "not_json"]
    assert dl[1].payload == b"{broken"
    assert "ts" in dl[0].detail
    assert bus.stats("g")["dead_letters"] == 2
    assert len(drain(bus.consumer("g", "c1", lease_ms=2000), 3)) == 3
    with pytest.raises(ValidationError, match="invalid"):
        bus.publish(events(1, 1), invalid="skip")


def test_poison_payloads_are_dead_lettered_and_never_stop_a_consumer(make_bus):
    bus = make_bus(partitions=2)
    p = partition_of("u0", 2)
    bus.publish([events(1, 1)[0]])
    inject(bus, p, b"\x00garbage")
    inject(bus, p, json.dumps({"user_id": "u0", "event": "view", "ts": 12}).encode())
    bus.publish([{**events(1, 2)[1]}])
    c = bus.consumer("g", "c1", lease_ms=2000)
    got = drain(c, 2)
    assert [d.event.props["seq"] for d in got] == [0, 1]
    reasons = sorted(d.reason for d in bus.dead_letters())
    assert reasons == ["bad_timestamp", "not_json"]
    assert b"\x00garbage" in [d.payload for d in bus.dead_letters()]
    # the poison was acked: a new consumer of the group sees nothing again
    c.close()
    assert drain(bus.consumer("g", "c2", lease_ms=2000), 1, timeout=1) == []
    assert bus.stats("g")["dead_letters"] == 2


def test_workers_dead_letter_what_they_cannot_handle(make_bus):
    bus = make_bus()
    bus.dead_letter(b'{"user_id": "u1"}', "handler_failed")
    [dl] = bus.dead_letters()
    assert (dl.reason, dl.payload) == ("handler_failed", b'{"user_id": "u1"}')
    assert dl.ts > 1e9
    with pytest.raises(ValidationError, match="reason"):
        bus.dead_letter(b"x", "")
    with pytest.raises(ValidationError, match="payload"):
        bus.dead_letter("text", "r")


def test_unacked_events_go_to_the_next_consumer_first_and_in_order(make_bus):
    bus = make_bus(partitions=1)
    bus.publish(events(3, 10))
    c1 = bus.consumer("g", "c1", lease_ms=2000)
    first = drain(c1, 12, ack=False)
    c1.ack(first[:5])
    c1.close()  # 7+ read but unacked
    c2 = bus.consumer("g", "c2", lease_ms=2000)
    rest = drain(c2, 25)
    ids = [d.event.event_id for d in rest]
    assert ids[: len(first) - 5] == [d.event.event_id for d in first[5:]]
    assert all(d.redelivered for d in rest[: len(first) - 5])
    assert not any(d.redelivered for d in rest[len(first) - 5 :])
    handled = [d.event.event_id for d in first[:5]] + ids
    assert sorted(handled) == sorted(e["event_id"] for e in events(3, 10))
    assert all(s == list(range(10)) for s in seqs_by_user(first[:5] + rest).values())


def test_stats_count_what_waits(make_bus):
    bus = make_bus(partitions=3)
    bus.publish(events(6, 5))
    s = bus.stats("g")
    assert sum(p["length"] for p in s["partitions"].values()) == 30
    assert sum(p["lag"] for p in s["partitions"].values()) == 30
    drain(bus.consumer("g", "c1", lease_ms=2000), 30)
    s = bus.stats("g")
    assert sum(p["lag"] for p in s["partitions"].values()) == 0
    assert all(p["pending"] in (0, None) for p in s["partitions"].values())
    assert s["dead_letters"] == 0


def test_poll_arguments_are_checked(make_bus):
    c = make_bus().consumer("g", "c1", lease_ms=1000)
    with pytest.raises(ValidationError, match="max_events"):
        c.poll(max_events=0)
    with pytest.raises(ValidationError, match="half of lease_ms"):
        c.poll(block_ms=600)
    with pytest.raises(ValidationError, match="ack"):
        c.ack(["1-0"])
    c.close()
    with pytest.raises(ValidationError, match="closed"):
        c.poll()


def test_a_namespace_keeps_its_partition_count(make_bus):
    make_bus(partitions=4)
    with pytest.raises(ConfigError, match="4 partitions"):
        make_bus(partitions=5)


def test_names_are_checked(make_bus):
    bus = make_bus()
    with pytest.raises(ValidationError, match="group"):
        bus.consumer("bad group", "c1")
    with pytest.raises(ValidationError, match="name"):
        bus.consumer("g", "c/1")


def test_an_unreachable_broker_raises_service_unavailable_naming_the_url():
    port = free_port()
    t0 = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match=f"127.0.0.1:{port}"):
        RedisBus(f"redis://127.0.0.1:{port}/0", retry_s=0.3)
    with pytest.raises(ServiceUnavailableError, match=f"127.0.0.1:{port}") as info:
        RabbitMQBus(f"amqp://guest:s3cret@127.0.0.1:{port}/%2F", retry_s=0.3)
    assert "s3cret" not in str(info.value)
    assert time.monotonic() - t0 < 15  # bounded: it gives up


def test_open_bus_follows_the_settings(monkeypatch, redis_url, ns, amqp_url):
    monkeypatch.setenv("MKTLAB_REDIS_URL", redis_url)
    monkeypatch.setenv("MKTLAB_BUS_PARTITIONS", "3")
    bus = open_bus(namespace=ns)
    assert isinstance(bus, RedisBus)
    assert bus.partitions == 3
    bus.close()
    monkeypatch.setenv("MKTLAB_BUS", "rabbitmq")
    bus = open_bus(namespace=ns, partitions=2, groups=("g",))
    assert isinstance(bus, RabbitMQBus)
    assert (bus.partitions, bus.url) == (2, amqp_url)
    bus.destroy()
    bus.close()
    with pytest.raises(ConfigError, match="backend"):
        open_bus("kafka")


def test_published_events_are_the_event_objects(make_bus):
    bus = make_bus(partitions=2)
    ev = Event("id-1", "u9", TS, "purchase", {"amount": 3.5, "tags": ["a"]})
    bus.publish([ev])
    [d] = drain(bus.consumer("g", "c1", lease_ms=2000), 1)
    assert d.event == ev
