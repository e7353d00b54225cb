"""Checkpoints: a failed one tried again in place writes everything; older layouts still load.

Real Redis throughout: a private ``redis-server`` that is shut down under a checkpoint,
and the shared one (``MKTLAB_REDIS_URL`` or the embedded server) for the layout test.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import redis

from mktlab.campaigns.counters import CampaignCounters
from mktlab.campaigns.rollout import CampaignStates, publish_state
from mktlab.coupons import get_redis
from mktlab.live.bus import Delivery
from mktlab.live.context import LiveContext
from mktlab.live.decisions import DecisionLog
from mktlab.live.engine import LiveEngine
from mktlab.live.events import Event, partition_of
from mktlab.live.journey import Journey
from mktlab.live.synth import synthetic_events
from mktlab.strategy import Strategy
from mktlab.strategy.eligibility import in_holdout

PARTS = 2
JOURNEY = Path(__file__).resolve().parents[2] / "examples" / "journeys" / "browse_abandon.yaml"


def _strategy() -> Strategy:
    return Strategy.from_dict({
        "name": "cmp", "campaign_id": "cmp", "policy": {"kind": "rule"}, "holdout": 0.2,
        "coupon": {"face_value": 5.0, "send_cost": 0.01},
        "rules": {"name": "cmp-rules", "rules": [
            {"id": "cart", "when": {"event": "cart_add"},
             "then": [{"issue_coupon": {"coupon": "cmp", "value": 5}}]},
            {"id": "looked", "when": {"pattern": {"event": "view", "count": 2, "within": "30m"}},
             "then": [{"issue_coupon": {"coupon": "cmp", "value": 5}}]},
        ]},
    })  # fmt: skip


def _deliveries(rows: list[tuple[str, str, float, str]]) -> list[Delivery]:
    return [Delivery(Event(eid, user, ts, etype, {}), int(partition_of(user, PARTS)), f"{i}-0", False)
            for i, (eid, user, ts, etype) in enumerate(rows)]  # fmt: skip


def test_a_checkpoint_that_failed_and_is_tried_again_in_place_loses_nothing(
    fresh_redis_server, tmp_path
):
    """Redis goes away under a checkpoint; the same engine (no reload) checkpoints again.

    Everything the failed transaction carried must be written by the retry: the watcher's
    counters (decisions, users per arm, conversions) and the window state of the users
    (a fresh engine from the checkpoint completes a 2-view window with one more view).
    """
    server = fresh_redis_server
    r = redis.Redis(port=server.port, socket_connect_timeout=0.5, retry=None)
    ns = "ck"
    publish_state(r, ns, "cmp", state="full", rollout=1.0, version=1, salt="s1")
    s = _strategy()
    users = [f"u{i}" for i in range(40)]
    t0 = 1.79e9
    rows = [(f"c-{u}", u, t0, "cart_add") for u in users]
    rows += [(f"v-{u}", u, t0 + 10, "view") for u in users]  # one view each: half a window
    rows += [(f"p-{u}", u, t0 + 20, "purchase") for u in users[:10]]

    def engine() -> LiveEngine:
        ctx = LiveContext(redis=r, namespace=f"{ns}:live")
        return LiveEngine([s], [], context=ctx, redis=r, namespace=f"{ns}:live",
                          decisions=DecisionLog(tmp_path / "dec"), gate=CampaignStates(r, ns))  # fmt: skip

    a = engine()
    a.process(_deliveries(rows))
    server.shutdown()  # graceful: what was written before stays (append-only file)
    with pytest.raises(redis.exceptions.ConnectionError):
        a.checkpoint()
    server.start()
    a.checkpoint()  # tried again by the same engine, its partitions still in memory

    held = dict(zip(users, in_holdout(s, users), strict=True))
    got = CampaignCounters(r, ns).read("cmp")
    n_hold = sum(held.values())
    assert got["decisions"] == len(users)  # one cart coupon decision each, held out or not
    assert (got["treated"], got["holdout"]) == (len(users) - n_hold, n_hold)
    buyers = users[:10]
    assert got["conv_treated"] + got["conv_holdout"] == len(buyers)
    assert got["conv_holdout"] == sum(held[u] for u in buyers)

    b = engine()  # a new owner: the windows come back from the retried checkpoint
    b.process(_deliveries([(f"v2-{u}", u, t0 + 30, "view") for u in users]))
    b.checkpoint()
    dec = DecisionLog(tmp_path / "dec").read()
    looked = dec[dec["node"] == "looked"]
    assert sorted(looked["user_id"]) == sorted(users)  # the second view completed every window


@pytest.fixture
def ns():
    import uuid

    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    client = get_redis()
    for k in client.scan_iter(f"{name}*"):
        client.delete(k)


def test_windows_checkpointed_under_the_older_entries_key_are_read_and_moved(ns, tmp_path):
    """Journeys' entry windows used to have an engine (and a ``win:entries`` key) of their own.

    A checkpoint in that layout is read: the next owner's decisions equal an engine that
    never stopped, and its first checkpoint moves the windows under ``win:rules``.
    """
    events = synthetic_events(80, 3000, seed=4)
    j = Journey.from_yaml(JOURNEY)
    r = get_redis()
    dels = [Delivery(Event(x.event_id, x.user_id, float(x.ts), x.event, {"category": x.category}),
                     int(partition_of(x.user_id, PARTS)), f"{i}-0", False)
            for i, x in enumerate(events.itertuples(index=False))]  # fmt: skip

    def mk(name: str, space: str) -> LiveEngine:
        return LiveEngine([], [j], context=LiveContext(redis=r, namespace=space), redis=r,
                          namespace=space, decisions=DecisionLog(tmp_path / name))  # fmt: skip

    whole = mk("whole", f"{ns}:a")
    whole.process(dels)
    whole.checkpoint()
    first = mk("split", f"{ns}:b")
    first.process(dels[:1500])
    first.checkpoint()
    # a journeys-only engine counts exactly the entries' windows: the older layout's content
    moved = 0
    for p in range(PARTS):
        key = f"{ns}:b:win:rules:p{p}"
        if r.exists(key):
            r.rename(key, f"{ns}:b:win:entries:p{p}")
            moved += 1
    assert moved
    second = mk("split", f"{ns}:b")
    second.process(dels[1500:])
    second.checkpoint()
    cols = ["key", "action", "status", "arm"]
    a = DecisionLog(tmp_path / "whole").read()[cols].sort_values("key").reset_index(drop=True)
    b = DecisionLog(tmp_path / "split").read()[cols].sort_values("key").reset_index(drop=True)
    assert (a["action"] == "enter").sum() > 0
    pd.testing.assert_frame_equal(a, b)
    assert not any(r.exists(f"{ns}:b:win:entries:p{p}") for p in range(PARTS))
    assert any(r.exists(f"{ns}:b:win:rules:p{p}") for p in range(PARTS))
