from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyroaring import BitMap

from benchmarks._naive_rules import naive_loop
from mktlab.errors import SchemaError, ValidationError
from mktlab.rules import (
    Budget,
    CapTracker,
    FrequencyCap,
    OnlineEngine,
    RuleSet,
    compile_rules,
    lifecycle_states,
    run_batch,
)
from mktlab.rules.caps import NS

from .conftest import frame


def ruleset(*rules, caps=(), **kw):
    return RuleSet.from_dict({"name": "t", "rules": list(rules), "caps": list(caps), **kw})


def coupon(rid, when, conds=(), value=5, **kw):
    w = when if isinstance(when, dict) else {"event": when}
    return {
        "id": rid,
        "when": w,
        "if": list(conds),
        "then": [{"issue_coupon": {"coupon": f"C{value}", "value": value}}],
        **kw,
    }


def fired(rs, events, **kw):
    """(user, minute, rule, status) per candidate action, after checking online agrees."""
    events = events.sort_values("ts", kind="stable").reset_index(drop=True)
    f = run_batch(rs, events, **kw)
    batch = [(int(r.row), str(r.rule_id), str(r.status)) for r in f.itertuples()]
    eng = OnlineEngine(
        rs, profiles=kw.get("profiles"), audiences=kw.get("audiences"), budget=kw.get("budget")
    )
    online = [
        (i, d.rule_id, d.status)
        for i, e in enumerate(events.to_dict("records"))
        for d in eng.process(e)
    ]
    assert batch == online
    minute = ((events["ts"] - events["ts"].min()).dt.total_seconds() // 60).astype(int)
    return [(events["user_id"][i], int(minute[i]), rid, st) for i, rid, st in batch]


def test_atomic_event_and_any_event():
    ev = frame([("a", 0, "view", "x", 0), ("a", 1, "order", "x", 80), ("b", 2, "cart", "y", 0)])
    rs = ruleset(
        coupon("on_order", "order"),
        {"id": "every", "when": {"event": "*"}, "then": [{"set_lifecycle": {"state": "seen"}}]},
    )
    assert fired(rs, ev) == [
        ("a", 0, "every", "ok"), ("a", 1, "on_order", "ok"), ("a", 1, "every", "ok"), ("b", 2, "every", "ok"),
    ]  # fmt: skip


def test_window_pattern_same_category_and_absent_order():
    # "3 views of the same category within 30 minutes and no order"
    rows = [
        ("a", 0, "view", "x", 0), ("a", 5, "view", "y", 0), ("a", 10, "view", "x", 0),
        ("a", 20, "view", "x", 0),   # 3rd x-view within 30 min -> fires
        ("a", 45, "view", "x", 0),   # x-views in (15, 45]: 20, 45 -> only 2
        ("b", 0, "view", "x", 0), ("b", 1, "order", "x", 9), ("b", 2, "view", "x", 0),
        ("b", 3, "view", "x", 0),    # 3 views but an order 2 minutes ago -> no
        ("b", 40, "view", "x", 0), ("b", 41, "view", "x", 0), ("b", 42, "view", "x", 0),  # order left the window
    ]  # fmt: skip
    ev = frame(rows)
    pat = {
        "pattern": {
            "event": "view",
            "count": 3,
            "within": "30m",
            "same": ["category"],
            "absent": "order",
        }
    }
    got = fired(ruleset(coupon("browse", pat)), ev)
    # b at minute 42: the window (12, 42] holds views 40, 41, 42 and no order
    assert [(u, m) for u, m, *_ in got] == [("a", 20), ("b", 42)]


def test_window_boundary_is_exclusive():
    ev = frame([("a", 0, "view", "x", 0), ("a", 30, "view", "x", 0)])
    pat = {"pattern": {"event": "view", "count": 2, "within": "30m"}}
    assert fired(ruleset(coupon("p", pat)), ev) == []
    pat = {"pattern": {"event": "view", "count": 2, "within": "31m"}}
    assert fired(ruleset(coupon("p", pat)), ev) == [("a", 30, "p", "ok")]


def test_conditions_event_profile_context_audience(profiles):
    rows = [
        ("a", 0, "order", "x", 150),
        ("b", 0, "order", "x", 150),
        ("c", 0, "order", "x", 20),
        ("d", 600, "order", "x", 150),
    ]
    ev = frame(rows)  # minute 600 = 20:00; profile-less user d
    conds = {
        "amount": [{"field": "event.amount", "op": ">=", "value": 100}],
        "category": [{"field": "event.category", "op": "in", "value": ["x", "z"]}],
        "tier": [{"field": "profile.tier_level", "op": ">=", "value": 3}],
        "city": [{"field": "profile.city", "op": "==", "value": "SH"}],
        "no_profile": [{"field": "profile.city", "op": "is_null"}],
        "morning": [{"field": "context.hour", "op": "<", "value": 12}],
        "monday": [{"field": "context.weekday", "op": "==", "value": 0}],
        "weekend": [{"field": "context.is_weekend", "op": "==", "value": True}],
        "vip": [{"audience": "vip"}],
        "not_vip": [{"audience": "vip", "negate": True}],
    }
    rs = ruleset(*[coupon(k, "order", v) for k, v in conds.items()], max_coupons_per_event=20)
    got = fired(rs, ev, profiles=profiles, audiences={"vip": {"b", "d"}})
    by_rule = {}
    for user, _, rid, _ in got:
        by_rule.setdefault(rid, []).append(user)
    assert by_rule == {
        "amount": ["a", "b", "d"], "category": ["a", "b", "c", "d"], "tier": ["b", "c"], "city": ["a", "c"],
        "no_profile": ["d"], "morning": ["a", "b", "c"], "monday": ["a", "b", "c", "d"], "vip": ["b", "d"],
        "not_vip": ["a", "c"],
    }  # fmt: skip


def test_audience_as_bitmap_of_uids():
    ev = pd.DataFrame({"user_id": [1, 2, 3], "ts": pd.Timestamp("2026-08-03"), "event": "order"})
    rs = ruleset(coupon("vip", "order", [{"audience": "vip"}]))
    assert fired(rs, ev, audiences={"vip": BitMap([2, 3])}) == [
        (2, 0, "vip", "ok"),
        (3, 0, "vip", "ok"),
    ]


def test_actions_and_lifecycle():
    ev = frame([("a", 0, "order", "x", 10), ("a", 5, "view", "x", 0), ("b", 6, "order", "x", 10)])
    rs = ruleset(
        {"id": "buy", "when": {"event": "order"}, "then": [
            {"issue_coupon": {"coupon": "C5", "value": 5}},
            {"send_message": {"channel": "sms", "template": "thanks"}},
            {"set_lifecycle": {"state": "active"}}]},
        {"id": "browse", "when": {"event": "view"}, "then": [{"set_lifecycle": {"state": "browsing"}}]},
    )  # fmt: skip
    f = run_batch(rs, ev)
    assert f["action"].astype(str).tolist() == ["issue_coupon", "send_message", "set_lifecycle", "set_lifecycle",
                                                "issue_coupon", "send_message", "set_lifecycle"]  # fmt: skip
    assert f.loc[f["action"] == "issue_coupon", "value"].sum() == 10
    assert f.loc[f["action"] == "send_message", "detail"].astype(str).unique().tolist() == [
        "thanks"
    ]
    assert lifecycle_states(f).to_dict() == {"a": "browsing", "b": "active"}


def test_frequency_caps_per_channel_and_overall():
    # a push rule on every view; <= 1 push per hour, <= 3 touches of any kind per day
    ev = frame(
        [("a", m, "view", "x", 0) for m in (0, 10, 61, 130, 200, 300)] + [("b", 0, "view", "x", 0)]
    )
    rs = ruleset(
        {"id": "push", "when": {"event": "view"}, "then": [{"send_message": {"channel": "push"}}]},
        caps=[{"channel": "push", "max": 1, "per": "1h"}, {"channel": "*", "max": 3, "per": "1d"}],
    )
    got = fired(rs, ev)
    status = [s for *_, s in got]
    # a: 0 ok, 10 capped (hour), 61 ok, 130 ok, 200 capped (day: 3 already), 300 capped; b ok
    assert status == ["ok", "ok", "capped", "ok", "ok", "capped", "capped"]
    f = run_batch(rs, ev)
    assert set(f.loc[f["status"] == "capped", "reason"].astype(str)) == {
        "<= 1 push per 1h",
        "<= 3 * per 1d",
    }


def test_cap_tracker_online():
    t = CapTracker([FrequencyCap("push", 2, "1d")])
    assert t.allow("u", "push", 0)
    assert t.allow("u", "push", 1 * NS)
    assert not t.allow("u", "push", 2 * NS)
    assert t.allow("u", "sms", 2 * NS)
    assert t.allow("v", "push", 2 * NS)
    assert t.allow("u", "push", 86400 * NS)  # the first send left the window (t - per, t]
    assert t.check("u", None, 0) is None  # lifecycle moves are never capped


def test_budget_and_coupon_stacking():
    ev = frame([("a", i, "order", "x", 200) for i in range(4)])
    rs = ruleset(
        coupon(
            "big",
            "order",
            [{"field": "event.amount", "op": ">", "value": 100}],
            value=20,
            priority=1,
        ),
        coupon("any", "order", value=5),
    )
    got = fired(rs, ev, budget=Budget(max_spend=45))
    # one coupon per event (big first by priority); the spend budget allows 2 x 20 then no 20 fits, 5 fits
    assert [(m, r, st) for _, m, r, st in got] == [
        (0, "big", "ok"), (0, "any", "stacked"), (1, "big", "ok"), (1, "any", "stacked"),
        (2, "big", "budget"), (2, "any", "ok"), (3, "big", "budget"), (3, "any", "budget"),
    ]  # fmt: skip
    got = fired(rs, ev, budget=Budget(max_coupons=1))
    assert [s for *_, s in got].count("ok") == 1


def test_shared_predicates_evaluated_once():
    shared = [
        {"field": "event.amount", "op": ">", "value": 10},
        {"field": "context.hour", "op": "<", "value": 22},
    ]
    rules = [
        coupon(f"r{i}", "order", [*shared, {"field": "event.amount", "op": "<", "value": 1000 + i}])
        for i in range(20)
    ]
    net = compile_rules(ruleset(*rules, max_coupons_per_event=20))
    d = net.describe()
    assert d["distinct_predicates"] == 22
    assert d["predicate_references"] == 60
    # the two shared tests sit in one chain of the prefix tree: 1 trigger + 2 shared + 20 leaves
    assert d["beta_nodes"] == 23
    ev = frame([("a", i, "order", "x", 50) for i in range(5)])
    f = net.run_batch(ev)
    assert f.attrs["predicate_evaluations"] == 22
    eng = OnlineEngine(net)
    eng.process(ev.to_dict("records")[0])
    assert eng.evaluations == 22
    assert naive_loop(net.ruleset, ev) == 100 == len(f)


def test_online_refuses_out_of_order_and_missing_fields():
    eng = OnlineEngine(ruleset(coupon("r", "order")))
    eng.process({"user_id": "a", "ts": "2026-08-03 10:00", "event": "order"})
    with pytest.raises(ValidationError, match="time order"):
        eng.process({"user_id": "a", "ts": "2026-08-03 09:00", "event": "order"})
    with pytest.raises(SchemaError, match="'event'"):
        eng.process({"user_id": "a", "ts": "2026-08-03 11:00"})


def test_batch_input_errors(profiles):
    rs = ruleset(coupon("r", "order", [{"field": "profile.tier_level", "op": ">", "value": 1}]))
    ev = frame([("a", 0, "order", "x", 1)])
    with pytest.raises(SchemaError, match="no profiles"):
        run_batch(rs, ev)
    with pytest.raises(SchemaError, match="missing column"):
        run_batch(rs, ev.drop(columns="event"))
    rs = ruleset(coupon("r", "order", [{"audience": "vip"}]))
    with pytest.raises(SchemaError, match="audience 'vip'"):
        run_batch(rs, ev)


def test_unsorted_input_is_replayed_in_time_order():
    ev = frame([("a", 10, "view", "x", 0), ("a", 0, "view", "x", 0), ("a", 5, "view", "x", 0)])
    rs = ruleset(coupon("p", {"pattern": {"event": "view", "count": 3, "within": "1h"}}))
    f = run_batch(rs, ev)
    assert f["row"].tolist() == [0]  # the latest event (row 0) completes the pattern
    assert np.all(np.diff(f["ts"].to_numpy()).astype(np.int64) >= 0)
