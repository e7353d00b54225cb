"""The naive rule loop: the anchor ``benchmarks/sandbox.py`` measures the engine against.

Every rule tests all its predicates on every event: a plain Python loop with no sharing,
each rule re-evaluating its own predicates and re-scanning the user's recent history for
its window pattern. It lives here, not in ``mktlab``, because only the benchmark (and a
test that checks the engine's match count against it) needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from mktlab.rules.caps import NS
from mktlab.rules.model import ANY_EVENT, AtomicEvent, RuleSet
from mktlab.rules.semantics import (
    as_memberships,
    context_value,
    profile_frame,
    scalar_ts_ns,
    test_value,
)


def naive_loop(
    ruleset: RuleSet,
    events: pd.DataFrame,
    *,
    profiles: pd.DataFrame | None = None,
    audiences: Mapping[str, Any] | None = None,
    user_col: str = "user_id",
    event_col: str = "event",
    ts_col: str = "ts",
) -> int:
    """The naive approach, for benchmarks: every rule tests all its predicates on every event.

    A plain Python loop with no sharing: each rule re-evaluates its own predicates and
    re-scans the user's recent history for its window pattern. No caps or budget.
    Returns the number of rule matches (equal to the batch candidate count before caps).
    """
    rules = ruleset.active_rules
    prof = {} if profiles is None else profile_frame(profiles, user_col).to_dict("index")
    aud = as_memberships(audiences)
    history: dict[Any, list] = {}
    cols = list(events.columns)
    n = 0
    for row in events.sort_values(ts_col, kind="stable").itertuples(index=False, name=None):
        ev = dict(zip(cols, row, strict=True))
        ts = scalar_ts_ns(ev[ts_col])
        user, etype = ev[user_col], ev[event_col]
        hist = history.setdefault(user, [])
        hist.append((ts, etype, ev))
        for r in rules:
            t = r.when
            if isinstance(t, AtomicEvent):
                if t.type not in (ANY_EVENT, etype):
                    continue
            else:
                if etype != t.event:
                    continue
                lo = ts - t.within * NS
                key = tuple(ev.get(s) for s in t.same)
                count = 0
                blocked = False
                for hts, htype, hev in reversed(hist):
                    if hts <= lo:
                        break
                    if htype == t.event and tuple(hev.get(s) for s in t.same) == key:
                        count += 1
                    blocked = blocked or htype == t.absent
                if count < t.count or blocked:
                    continue
            good = True
            for p in r.conditions:
                if p.namespace == "audience":
                    hit = user in aud[p.name]
                    ok = hit if p.op == "member" else not hit
                else:
                    x = (
                        ev.get(p.name)
                        if p.namespace == "event"
                        else (
                            prof.get(user, {}).get(p.name)
                            if p.namespace == "profile"
                            else context_value(p.name, ts)
                        )
                    )
                    ok = test_value(p.op, x, p.value)
                if not ok:
                    good = False
                    break
            n += good
    return n
