"""The pure journey step: state, delays and waits on event time, splits, limits, re-entry."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mktlab.errors import ValidationError
from mktlab.experiments._hash import hash_buckets
from mktlab.experiments.assignment import Experiment
from mktlab.live.events import Event
from mktlab.live.journey import Journey, JourneyError
from mktlab.live.journey_runtime import (
    ACTIONS,
    EntryWindows,
    JourneyState,
    compile_journey,
    on_event,
    on_timer,
)
from mktlab.live.journey_sim import SimpleContext

T0 = datetime(2026, 1, 5, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC
DAY = 86400
_ids = count()


def ev(user: str, ts: float, event: str, eid: str | None = None, **props) -> Event:
    return Event(eid or f"e{next(_ids)}", user, float(ts), event, props)


def journey(*nodes: dict, reentry: str = "never", entry: dict | None = None, **top) -> Journey:
    first = {"id": "start", "type": "entry", "event": "signup", "reentry": reentry,
             "next": nodes[0]["id"]} | (entry or {})  # fmt: skip
    return Journey.from_dict({"name": "j", "campaign_id": "c1", **top,
                              "nodes": [first, *nodes, {"id": "done", "type": "exit"}]})  # fmt: skip


WELCOME = journey(
    {"id": "pause", "type": "delay", "duration": "1d", "next": "hello"},
    {"id": "hello", "type": "message", "template": "welcome", "channels": ["push", "sms"],
     "next": "wait"},
    {"id": "wait", "type": "wait", "event": "order", "timeout": "3d", "on_event": "thanks",
     "on_timeout": "gift", "where": [{"field": "event.amount", "op": ">", "value": 0}]},
    {"id": "thanks", "type": "update", "set": {"lifecycle": "active"}, "next": "done"},
    {"id": "gift", "type": "coupon", "value": 5, "next": "done"},
)  # fmt: skip


def actions(res) -> list[tuple[str, str]]:
    return [(d.node_id, d.action) for d in res.decisions]


# ---------------------------------------------------------------------------- state
def test_state_is_small_and_round_trips():
    s = JourneyState(3, int(T0), int(T0) + DAY, waiting=True, holdout=True, arm=2,
                     propensity=0.1, version=4)  # fmt: skip
    b = s.encode()
    assert len(b) <= 40
    assert JourneyState.decode(b) == s
    with pytest.raises(ValidationError, match="state"):
        JourneyState.decode(b[:-1])
    with pytest.raises(ValidationError, match=r"state\.node"):
        JourneyState(70000, 0)
    with pytest.raises(ValidationError, match=r"state\.propensity"):
        JourneyState(0, 0, propensity=0.0)


@given(
    node=st.integers(0, 65535), entered=st.integers(0, 2**32 - 1), wake=st.integers(0, 2**32 - 1),
    exited=st.integers(0, 2**32 - 1), flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    arm=st.integers(0, 255), p=st.floats(1e-30, 1.0), version=st.integers(0, 65535),
)  # fmt: skip
def test_state_round_trip_property(node, entered, wake, exited, flags, arm, p, version):
    s = JourneyState(node, entered, wake, *flags, arm, p, exited, version)
    b = s.encode()
    assert len(b) <= 200
    assert JourneyState.decode(b) == s


# ----------------------------------------------------------------- delay, wait, timeout
def test_delay_then_message_then_order_resumes_the_wait():
    ctx = SimpleContext()
    r = on_event(WELCOME, None, ev("u1", T0 + 10.5, "signup", "s1"), ctx)
    assert actions(r) == [("start", "enter"), ("pause", "delay")]
    assert r.effects == ()
    assert r.wake_at == T0 + DAY + 11
    assert r.state.entered_at == int(T0 + 10)
    assert not r.state.waiting
    # an order during the delay is not awaited yet: nothing happens
    same = on_event(WELCOME, r.state, ev("u1", T0 + 60, "order", amount=9.0), ctx)
    assert same.state == r.state
    assert same.decisions == ()
    early = on_timer(WELCOME, r.state, T0 + DAY, ctx, user_id="u1")
    assert early.state == r.state
    assert early.decisions == ()
    r2 = on_timer(WELCOME, r.state, T0 + DAY + 11, ctx, user_id="u1")
    assert actions(r2) == [("hello", "message"), ("wait", "wait")]
    (msg,) = r2.effects
    assert msg.key == f"j:v1:hello:u1:timer@{int(T0) + DAY + 11}"
    assert msg.payload == {"template": "welcome", "channels": ["push", "sms"], "campaign_id": "c1"}
    assert r2.state.waiting
    assert r2.wake_at == T0 + 4 * DAY + 11
    # an order that fails the wait's condition does not count
    zero = on_event(WELCOME, r2.state, ev("u1", T0 + 2 * DAY, "order", amount=0.0), ctx)
    assert zero.decisions == ()
    assert zero.state == r2.state
    r3 = on_event(WELCOME, r2.state, ev("u1", T0 + 2 * DAY, "order", "o1", amount=20.0), ctx)
    assert actions(r3) == [("wait", "resume"), ("thanks", "update"), ("done", "exit")]
    assert r3.effects[0].key == "j:v1:thanks:u1:o1"
    assert r3.effects[0].payload == {"set": {"lifecycle": "active"}}
    assert r3.state.done
    assert r3.wake_at is None
    assert r3.state.exited_at == int(T0 + 2 * DAY)


def test_timeout_and_a_late_timer_give_the_same_keys():
    ctx = SimpleContext()
    s = on_event(WELCOME, None, ev("u2", T0, "signup"), ctx).state
    s = on_timer(WELCOME, s, T0 + DAY, ctx, user_id="u2").state
    on_time = on_timer(WELCOME, s, T0 + 4 * DAY, ctx, user_id="u2")
    late = on_timer(WELCOME, s, T0 + 9 * DAY, ctx, user_id="u2")
    assert on_time == late
    assert actions(on_time) == [("wait", "timeout"), ("gift", "coupon"), ("done", "exit")]
    (coupon,) = on_time.effects
    assert coupon.key == f"j:v1:gift:u2:timer@{int(T0) + 4 * DAY}"
    assert coupon.payload == {"campaign": "c1", "value": 5.0}
    assert coupon.ts == T0 + 4 * DAY


def test_an_event_after_an_unfired_timeout_sees_the_timeout_first():
    ctx = SimpleContext()
    s = on_event(WELCOME, None, ev("u3", T0, "signup"), ctx).state
    s = on_timer(WELCOME, s, T0 + DAY, ctx, user_id="u3").state
    # the worker was down: the order arrives after the timeout before the timer fired
    r = on_event(WELCOME, s, ev("u3", T0 + 5 * DAY, "order", amount=10.0), ctx)
    assert actions(r) == [("wait", "timeout"), ("gift", "coupon"), ("done", "exit")]
    # an order exactly at the timeout also loses to the timer (timers first on ties)
    r = on_event(WELCOME, s, ev("u3", T0 + 4 * DAY, "order", amount=10.0), ctx)
    assert actions(r)[0] == ("wait", "timeout")


def test_irrelevant_events_cost_nothing_and_change_nothing():
    ctx = SimpleContext()
    r = on_event(WELCOME, None, ev("u9", T0, "page_view"), ctx)
    assert r.state is None
    assert r.decisions == ()
    assert r.effects == ()
    assert set(
        d.action for d in on_event(WELCOME, None, ev("u9", T0, "signup"), ctx).decisions
    ) <= set(ACTIONS)


def test_version_mismatch_is_refused():
    ctx = SimpleContext()
    s = on_event(WELCOME, None, ev("u1", T0, "signup"), ctx).state
    v2 = Journey.from_dict(WELCOME.to_dict() | {"version": 2})
    with pytest.raises(JourneyError, match="version 1 given to version 2"):
        on_timer(v2, s, T0 + DAY, ctx, user_id="u1")


# ------------------------------------------------------------------- local-time delay
def local_delay(until: str, tz: str = "UTC") -> Journey:
    return journey({"id": "am", "type": "delay", "until": until, "tz": tz, "next": "hi"},
                   {"id": "hi", "type": "message", "template": "t", "next": "done"})  # fmt: skip


@pytest.mark.parametrize(
    ("until", "node_tz", "ctx_tz", "props", "start", "expected"),
    [
        # 12:00 UTC is 21:00 in Tokyo: next 09:00 Tokyo is 00:00 UTC tomorrow
        ("09:00", "UTC", None, {"tz": "Asia/Tokyo"}, "2026-01-05T12:00", "2026-01-06T00:00"),
        # no tz on the event: the context's (07:00 in New York, 09:00 there is 14:00 UTC)
        ("09:00", "UTC", "America/New_York", {}, "2026-01-05T12:00", "2026-01-05T14:00"),
        # an unknown zone on the event falls back to the context, then to the node
        ("09:00", "Europe/Paris", None, {"tz": "Nowhere/Land"}, "2026-01-05T12:00", "2026-01-06T08:00"),
        # exactly 09:00: the next 09:00 (a single time always waits)
        ("09:00", "UTC", None, {}, "2026-01-05T09:00", "2026-01-06T09:00"),
        # window closed: wait for it to open; open: go at once
        ("09:00-21:00", "UTC", None, {}, "2026-01-05T22:30", "2026-01-06T09:00"),
        ("09:00-21:00", "UTC", None, {}, "2026-01-05T10:00", None),
        ("22:00-06:00", "UTC", None, {}, "2026-01-05T23:00", None),
        ("22:00-06:00", "UTC", None, {}, "2026-01-05T07:00", "2026-01-05T22:00"),
        # New York springs forward on 2026-03-08: 09:00 EDT is 13:00 UTC, the day before 14:00
        ("09:00", "America/New_York", None, {}, "2026-03-08T01:00", "2026-03-08T13:00"),
    ],
)  # fmt: skip
def test_until_local_time(until, node_tz, ctx_tz, props, start, expected):
    j = local_delay(until, node_tz)
    t = datetime.fromisoformat(start).replace(tzinfo=UTC).timestamp()
    r = on_event(j, None, ev("u", t, "signup", **props), SimpleContext(tz=ctx_tz))
    if expected is None:
        assert actions(r)[-2:] == [("hi", "message"), ("done", "exit")]
        assert r.effects[0].ts == t
    else:
        want = datetime.fromisoformat(expected).replace(tzinfo=UTC).timestamp()
        assert r.wake_at == want
        assert r.effects == ()


# --------------------------------------------------------------------------- splits
def split_journey(split: dict) -> Journey:
    labels = list(split.get("branches") or {}) or [k for k in ("yes", "no", "holdout", "treated")
                                                     if k in split]  # fmt: skip
    tail = [{"id": f"m_{k}", "type": "message", "template": k, "next": "done"} for k in labels]
    targets = {k: f"m_{k}" for k in labels}
    if "branches" in split:
        split = split | {"branches": targets}
    else:
        split = split | targets
    return journey({"id": "sp", "type": "split", **split}, *tail, reentry="always")


def branch_of(j: Journey, user: str, ctx=None, t: float = T0):
    r = on_event(j, None, ev(user, t, "signup"), ctx or SimpleContext())
    (d,) = [d for d in r.decisions if d.action == "split"]
    return d, r


def test_random_split_propensities_and_determinism():
    j = split_journey({"by": "random", "weights": {"a": 1, "b": 3}, "branches": {"a": 0, "b": 0}})
    users = [f"u{i}" for i in range(4000)]
    draws = [branch_of(j, u)[0] for u in users]
    assert {d.arm: d.propensity for d in draws} == {"a": 0.25, "b": 0.75}
    share_b = np.mean([d.arm == "b" for d in draws])
    assert abs(share_b - 0.75) < 0.03
    assert [branch_of(j, u)[0].arm for u in users[:50]] == [d.arm for d in draws[:50]]
    # a fresh draw at another visit time: some users change branch
    later = [branch_of(j, u, t=T0 + 3600)[0].arm for u in users[:200]]
    assert later != [d.arm for d in draws[:200]]
    # the message after the split carries the arm and the path's propensity
    _, r = branch_of(j, "u1")
    msg = next(d for d in r.decisions if d.action == "message")
    assert msg.arm == r.decisions[1].arm
    assert msg.propensity == r.decisions[1].propensity


def test_experiment_split_is_sticky_and_matches_the_experiments_hash():
    j = split_journey({"by": "experiment", "arms": {"control": 1, "coupon": 1},
                       "branches": {"control": 0, "coupon": 0}})  # fmt: skip
    exp = Experiment("sp", {"control": 1, "coupon": 1}, salt="j:sp")
    users = [f"u{i}" for i in range(300)]
    want = np.asarray(exp.arm_names)[exp.arm_of_buckets(hash_buckets(users, "j:sp"))]
    got = [branch_of(j, u, t=T0 + i)[0] for i, u in enumerate(users)]
    assert [d.arm for d in got] == list(want)
    assert {d.propensity for d in got} == {0.5}
    # sticky: the same arm at any later entry; another salt re-randomises
    assert [branch_of(j, u, t=T0 + 99 * DAY)[0].arm for u in users] == list(want)
    salted = Journey.from_dict(j.to_dict() | {"salt": "round-2"})
    assert [branch_of(salted, u)[0].arm for u in users] != list(want)


def test_holdout_fraction_on_10k_users_and_the_holdout_flag():
    j = split_journey({"by": "holdout", "fraction": 0.1, "holdout": 0, "treated": 0})
    cj = compile_journey(j)
    held = []
    for i in range(10_000):
        d, r = branch_of(cj, f"user-{i}")
        held.append(d.arm == "holdout")
        assert d.holdout == (d.arm == "holdout")
        assert d.propensity == pytest.approx(0.1 if d.holdout else 0.9)
        assert all(x.holdout == d.holdout for x in r.decisions[2:])
    assert abs(np.mean(held) - 0.1) < 0.01


def test_deterministic_splits_audience_and_uplift():
    ctx = SimpleContext(audiences={"vip": {"a"}}, uplift={"a": 0.05, "b": 0.01})
    aud = split_journey({"by": "audience", "audience": "vip", "yes": 0, "no": 0})
    assert [branch_of(aud, u, ctx)[0].arm for u in "ab"] == ["yes", "no"]
    upl = split_journey({"by": "uplift", "threshold": 0.02, "yes": 0, "no": 0})
    got = [branch_of(upl, u, ctx)[0] for u in "abc"]  # c has no score: not persuadable
    assert [d.arm for d in got] == ["yes", "no", "no"]
    assert {d.propensity for d in got} == {1.0}


# ------------------------------------------------------------------- rate limit, entry
def test_rate_limit_overflow_and_drop():
    def limited(overflow: bool) -> Journey:
        rl = {"id": "rl", "type": "rate_limit", "max": 2, "per": "1h", "next": "gift"}
        extra = [{"id": "soft", "type": "message", "template": "sorry", "next": "done"}]
        return journey(rl | ({"overflow": "soft"} if overflow else {}),
                       {"id": "gift", "type": "coupon", "next": "done"},
                       *(extra if overflow else []))  # fmt: skip

    for overflow in (True, False):
        j, ctx = limited(overflow), SimpleContext()
        runs = [on_event(j, None, ev(f"u{i}", T0 + i, "signup"), ctx) for i in range(3)]
        runs.append(on_event(j, None, ev("u9", T0 + 3600, "signup"), ctx))  # the window slid
        kinds = [[e.kind for e in r.effects] for r in runs]
        assert kinds == [["coupon"], ["coupon"], ["message"] if overflow else [], ["coupon"]]
        third = actions(runs[2])
        assert ("rl", "rate_limited") in third
        assert third[-1] == ("done", "exit") if overflow else third[-1] == ("rl", "exit")
        assert ("rl", "rate_limit") in actions(runs[0])


@pytest.mark.parametrize(
    ("reentry", "second_at", "enters"),
    [("never", 30 * DAY, False), ("always", 1, True), ("after 7d", 6 * DAY, False),
     ("after 7d", 7 * DAY, True)],
)  # fmt: skip
def test_reentry_rules(reentry, second_at, enters):
    j = journey({"id": "hi", "type": "message", "template": "t", "next": "done"}, reentry=reentry)
    ctx = SimpleContext()
    first = on_event(j, None, ev("u", T0, "signup"), ctx)
    assert actions(first)[-1] == ("done", "exit")
    assert (first.state is None) == (reentry == "always")
    second = on_event(j, first.state, ev("u", T0 + second_at, "signup"), ctx)
    assert (("start", "enter") in actions(second)) == enters


def test_no_entry_while_in_the_journey():
    ctx = SimpleContext()
    s = on_event(WELCOME, None, ev("u", T0, "signup"), ctx).state
    again = on_event(WELCOME, s, ev("u", T0 + 5, "signup"), ctx)
    assert again.decisions == ()
    assert again.state == s


def test_audience_entry_and_where_conditions():
    j = journey({"id": "hi", "type": "message", "template": "t", "next": "done"},
                entry={"event": "app_open", "audience": "churn_risk",
                       "where": [{"field": "event.platform", "op": "==", "value": "ios"}]})  # fmt: skip
    ctx = SimpleContext(audiences={"churn_risk": {"a", "b"}})
    enters = [bool(on_event(j, None, ev(u, T0, "app_open", platform=p), ctx).decisions)
              for u, p in (("a", "ios"), ("b", "android"), ("c", "ios"))]  # fmt: skip
    assert enters == [True, False, False]


def test_windowed_entry_uses_the_rules_window():
    j = journey({"id": "hi", "type": "message", "template": "t", "next": "done"},
                entry={"event": None, "trigger": {"pattern": {"event": "view", "count": 3,
                       "within": "30m", "same": ["category"], "absent": "order"}}})  # fmt: skip
    with pytest.raises(JourneyError, match="triggered="):
        on_event(j, None, ev("u", T0, "view", category="shoes"), SimpleContext())
    windows, ctx = EntryWindows([j]), SimpleContext()

    def feed(user, dt, event, **props):
        e = ev(user, T0 + dt, event, **props)
        return on_event(j, None, e, ctx, triggered=j.name in windows.observe(e))

    # a: three shoe views in 20 minutes enter; b: an order in the window blocks;
    # c: views of different categories do not count together
    log = [("a", 0, "view", "shoes"), ("a", 600, "view", "shoes"), ("b", 0, "view", "hats"),
           ("b", 60, "order", None), ("b", 120, "view", "hats"), ("b", 180, "view", "hats"),
           ("c", 0, "view", "hats"), ("c", 60, "view", "shoes"), ("c", 120, "view", "hats"),
           ("a", 1200, "view", "shoes")]  # fmt: skip
    entered = [u for u, dt, e, cat in log
               if feed(u, dt, e, **({"category": cat} if cat else {})).decisions]  # fmt: skip
    assert entered == ["a"]


def test_a_loop_that_slips_past_validation_still_stops():
    ok = journey({"id": "a", "type": "update", "set": {"x": 1}, "next": "done"})
    nodes = list(ok.nodes)
    nodes[1] = type(nodes[1])(id="a", set_fields={"x": 1}, next="a")  # a -> a, no wait
    broken = object.__new__(Journey)
    for f, v in (ok.__dict__ | {"nodes": tuple(nodes)}).items():
        object.__setattr__(broken, f, v)
    with pytest.raises(JourneyError, match="more than 4 nodes in one step"):
        on_event(broken, None, ev("u", T0, "signup"), SimpleContext())
