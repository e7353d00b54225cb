"""``POST /events`` over real HTTP: events reach the live bus, malformed ones the dead letters."""

from __future__ import annotations

import time

from mktlab.config import settings
from mktlab.live.bus import open_bus


def test_events_are_published_and_malformed_ones_dead_lettered(http):
    ns = settings().live_namespace
    with open_bus(namespace=ns, groups=("live",)) as bus:
        before = bus.stats("live")["dead_letters"]
        consumer = bus.consumer("live", "test-events")
        consumer.poll(10_000, block_ms=10)  # whatever an earlier module left
        body = {
            "events": [
                {"user_id": "U0001", "event": "view", "ts": 1_790_000_000, "category": "shoes"},
                {"event": "view", "ts": 1_790_000_001},
                {"user_id": "U0002", "event": "view", "ts": "not a time"},
                {"user_id": "U0001", "event": "order", "ts": "2026-09-21T10:00:00+00:00"},
            ]
        }
        status, out = http.post("/events", body)
        assert status == 200, out
        assert (out["published"], out["dead_lettered"]) == (2, 2)
        assert [(r["index"], r["reason"]) for r in out["refused"]] == [
            (1, "no_user_id"),
            (2, "bad_timestamp"),
        ]
        got = []
        deadline = time.time() + 10
        while len(got) < 2 and time.time() < deadline:
            got += consumer.poll(100, block_ms=200)
        consumer.ack(got)
        consumer.close()
        assert [(d.event.user_id, d.event.event) for d in got] == [
            ("U0001", "view"),
            ("U0001", "order"),
        ]
        assert got[0].event.props["category"] == "shoes"
        assert bus.stats("live")["dead_letters"] == before + 2
    status, err = http.post("/events", {"events": []})
    assert status == 422 and "events" in err["error"]
    deadline = time.time() + 10
    while time.time() < deadline:  # the gauges refresh every 2 s
        _, text = http.get("/metrics")
        if (
            'mktlab_events_total{outcome="dead_lettered",reason="no_user_id"}' in text
            and "mktlab_live_dead_letters" in text
        ):
            break
        time.sleep(0.5)
    assert 'mktlab_events_total{outcome="dead_lettered",reason="no_user_id"} 1.0' in text
    assert "mktlab_live_dead_letters" in text
