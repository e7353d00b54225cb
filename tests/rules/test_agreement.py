"""Batch and online executions of the same rules must make the same decisions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mktlab.rules import (
    AtomicEvent,
    FrequencyCap,
    IssueCoupon,
    OnlineEngine,
    Predicate,
    Rule,
    RuleSet,
    SendMessage,
    SetLifecycle,
    WindowPattern,
    compile_rules,
)
from mktlab.rules.caps import Budget

USERS = ["u0", "u1", "u2"]
TYPES = ["view", "cart", "order"]
CATS = ["a", "b", None]

predicates = st.one_of(
    st.builds(
        Predicate,
        st.just("event.amount"),
        st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
        st.sampled_from([0.0, 10.0, 50.0]),
    ),
    st.builds(Predicate, st.just("event.amount"), st.sampled_from(["is_null", "not_null"])),
    st.builds(
        Predicate,
        st.just("event.category"),
        st.sampled_from(["==", "!="]),
        st.sampled_from(["a", "b"]),
    ),
    st.builds(
        Predicate, st.just("event.category"), st.sampled_from(["in", "not_in"]), st.just(["a", "b"])
    ),
    st.builds(
        Predicate, st.just("profile.tier_level"), st.sampled_from([">=", "<"]), st.integers(1, 3)
    ),
    st.builds(Predicate, st.just("profile.city"), st.just("=="), st.sampled_from(["SH", "BJ"])),
    st.builds(
        Predicate, st.just("context.hour"), st.just("between"), st.sampled_from([[0, 11], [12, 23]])
    ),
    st.builds(Predicate, st.just("context.is_weekend"), st.just("=="), st.booleans()),
    st.builds(Predicate, st.just("audience.vip"), st.sampled_from(["member", "not_member"])),
)
triggers = st.one_of(
    st.builds(AtomicEvent, st.sampled_from([*TYPES, "*"])),
    st.builds(
        WindowPattern,
        st.sampled_from(["view", "cart"]),
        st.integers(1, 3),
        st.sampled_from(["10m", "30m", "2h"]),
        st.sampled_from([(), ("category",)]),
        st.sampled_from([None, "order"]),
    ),
)
actions = st.one_of(
    st.builds(IssueCoupon, st.sampled_from(["C5", "C10"]), st.sampled_from([5.0, 10.0])),
    st.builds(SendMessage, st.sampled_from(["push", "sms"]), st.just("t")),
    st.builds(SetLifecycle, st.sampled_from(["active", "lapsed"])),
)


@st.composite
def rulesets(draw):
    n = draw(st.integers(1, 6))
    rules = []
    for i in range(n):
        rules.append(
            Rule(
                id=f"r{i}",
                when=draw(triggers),
                conditions=tuple(draw(st.lists(predicates, max_size=3))),
                actions=tuple(draw(st.lists(actions, min_size=1, max_size=3))),
                priority=draw(st.integers(0, 2)),
            )
        )
    caps = draw(
        st.lists(
            st.builds(
                FrequencyCap,
                st.sampled_from(["push", "sms", "coupon", "*"]),
                st.integers(0, 3),
                st.sampled_from(["20m", "1h", "1d"]),
            ),
            max_size=3,
        )
    )
    return RuleSet("prop", tuple(rules), tuple(caps), max_coupons_per_event=draw(st.integers(1, 2)))


@st.composite
def event_frames(draw):
    n = draw(st.integers(1, 40))
    gaps = draw(
        st.lists(st.sampled_from([0, 60, 300, 900, 3600, 5 * 3600]), min_size=n, max_size=n)
    )
    ts = pd.Timestamp("2026-08-07 06:00") + pd.to_timedelta(np.cumsum(gaps), unit="s")
    amounts = draw(
        st.lists(st.sampled_from([0.0, 10.0, 60.0, float("nan")]), min_size=n, max_size=n)
    )
    return pd.DataFrame(
        {
            "user_id": draw(st.lists(st.sampled_from(USERS), min_size=n, max_size=n)),
            "ts": ts,
            "event": draw(st.lists(st.sampled_from(TYPES), min_size=n, max_size=n)),
            "category": pd.array(
                draw(st.lists(st.sampled_from(CATS), min_size=n, max_size=n)), dtype="str"
            ),
            "amount": amounts,
        }
    )


PROFILES = pd.DataFrame({"user_id": ["u0", "u1"], "tier_level": [1, 3], "city": ["SH", "BJ"]})
AUDIENCES = {"vip": {"u1", "u2"}}


def online_rows(rs, events, budget):
    eng = OnlineEngine(rs, profiles=PROFILES, audiences=AUDIENCES, budget=budget)
    out = []
    for i, ev in enumerate(events.to_dict("records")):
        for d in eng.process(ev):
            out.append((i, d.rule_id, d.action.kind, d.status))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rs=rulesets(), events=event_frames(), max_coupons=st.sampled_from([None, 1, 3]))
def test_batch_equals_online(rs, events, max_coupons):
    budget = Budget(max_coupons=max_coupons)
    net = compile_rules(rs, check=False)
    batch = net.run_batch(events, profiles=PROFILES, audiences=AUDIENCES, budget=budget)
    got = [
        (int(r.row), str(r.rule_id), str(r.action), str(r.status))
        for r in batch.itertuples(index=False)
    ]
    assert got == online_rows(net, events, budget)
