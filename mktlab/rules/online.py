"""Online execution of a compiled network: one event at a time, caps and budget in memory.

Produces the same decisions as :meth:`~mktlab.rules.compiler.Network.run_batch` for the
same time-ordered events (a property test checks it).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mktlab.errors import SchemaError, ValidationError
from mktlab.rules.caps import NS, Budget, BudgetTracker, CapTracker
from mktlab.rules.compiler import Network, as_network
from mktlab.rules.model import (
    ANY_EVENT,
    Action,
    AtomicEvent,
    IssueCoupon,
    Predicate,
    Rule,
    RuleSet,
    Trigger,
    WindowPattern,
)
from mktlab.rules.semantics import (
    as_memberships,
    context_value,
    is_null,
    profile_frame,
    scalar_ts_ns,
    test_value,
)


@dataclass(frozen=True)
class Decision:
    """One candidate action of one event in online mode."""

    rule_id: str
    action: Action
    status: str
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.status == "ok"


class OnlineEngine:
    """Per-event execution of a compiled network, with caps and budget kept in memory.

    Feed events in time order with :meth:`process`; each call returns the event's
    :class:`Decision` list (allowed and refused actions, in firing order).

    Parameters
    ----------
    rules : RuleSet or Network
    profiles : DataFrame, optional
        Indexed by user (or with a ``user_col`` column).
    audiences : mapping, optional
        Audience name -> members.
    budget : Budget, optional
    order : {"global", "per_user"}
        ``global`` (default) refuses an event older than the previous one; ``per_user``
        only asks each user's events to come in order, as a partitioned event bus
        delivers them (the live workers).
    """

    def __init__(
        self,
        rules: RuleSet | Network,
        *,
        profiles: pd.DataFrame | None = None,
        audiences: Mapping[str, Any] | None = None,
        budget: Budget | None = None,
        user_col: str = "user_id",
        ts_col: str = "ts",
        event_col: str = "event",
        order: str = "global",
    ):
        if order not in ("global", "per_user"):
            raise ValidationError(f"order={order!r}: expected 'global' or 'per_user'")
        self.order = order
        self.network = as_network(rules)
        self.user_col, self.ts_col, self.event_col = user_col, ts_col, event_col
        self.audiences = as_memberships(audiences)
        self._profiles: dict[Any, dict] = {}
        if profiles is not None:
            prof = profile_frame(profiles, user_col)
            self._profiles = {
                k: dict(zip(prof.columns, row, strict=True))
                for k, row in zip(prof.index, prof.itertuples(index=False), strict=True)
            }
        self.caps = CapTracker(self.network.ruleset.caps)
        self.budget = BudgetTracker(budget)
        self._counts: dict[tuple, deque] = {}
        self._absent: dict[tuple, list] = {}
        self._max_within: dict[str, int] = {}
        for t in self.network.triggers:
            if isinstance(t, WindowPattern) and t.absent:
                self._max_within[t.absent] = max(self._max_within.get(t.absent, 0), t.within)
        self._last_ts: int | None = None
        self.evaluations = 0

    def _field(self, p: Predicate, event: Mapping, user: Any, ts: int) -> Any:
        if p.namespace == "event":
            return event.get(p.name)
        if p.namespace == "profile":
            return self._profiles.get(user, {}).get(p.name)
        return context_value(p.name, ts)

    def _test_pred(self, p: Predicate, event: Mapping, user: Any, ts: int) -> bool:
        self.evaluations += 1
        if p.namespace == "audience":
            if p.name not in self.audiences:
                raise SchemaError(
                    f"audience {p.name!r} is referenced by a rule but was not supplied"
                )
            hit = user in self.audiences[p.name]
            return hit if p.op == "member" else not hit
        x = self._field(p, event, user, ts)
        if isinstance(x, pd.Timestamp | np.datetime64):
            x = scalar_ts_ns(x)
        return test_value(p.op, x, p.value)

    def _update_windows(self, event: Mapping, etype: Any, user: Any, ts: int) -> dict:
        """Advance the shared window state with this event; return pattern counts."""
        results: dict = {}
        for t in self.network.triggers:
            if not isinstance(t, WindowPattern):
                continue
            key = ("count", t.event, t.within, t.same)
            if key not in results and etype == t.event:
                same = tuple(None if is_null(event.get(s)) else event.get(s) for s in t.same)
                q = self._counts.setdefault((key, user, same), deque())
                q.append(ts)
                while q[0] <= ts - t.within * NS:
                    q.popleft()
                results[key] = len(q)
        if etype in self._max_within:
            lst = self._absent.setdefault((etype, user), [])
            lst.append(ts)
            horizon = ts - self._max_within[etype] * NS
            if lst[0] <= horizon:
                del lst[: bisect.bisect_right(lst, horizon)]
        return results

    def _trigger(self, t: Trigger, etype: Any, user: Any, ts: int, counts: dict) -> bool:
        if isinstance(t, AtomicEvent):
            return t.type == ANY_EVENT or etype == t.type
        if etype != t.event or counts.get(("count", t.event, t.within, t.same), 0) < t.count:
            return False
        if t.absent is not None:
            lst = self._absent.get((t.absent, user), [])
            return len(lst) - bisect.bisect_right(lst, ts - t.within * NS) == 0
        return True

    def process(self, event: Mapping[str, Any]) -> list[Decision]:
        """Run the rules on one event (a mapping of field -> value) and apply caps/budget."""
        for col in (self.user_col, self.ts_col, self.event_col):
            if col not in event:
                raise SchemaError(f"event: missing field {col!r}")
        user, etype = event[self.user_col], event[self.event_col]
        ts = scalar_ts_ns(event[self.ts_col])
        if self.order == "global":
            if self._last_ts is not None and ts < self._last_ts:
                raise ValidationError(
                    f"event at {event[self.ts_col]} arrived before the previous one: feed events in time order"
                )
            self._last_ts = ts
        counts = self._update_windows(event, etype, user, ts)
        memo: dict[tuple, bool] = {}  # alpha memory for this event: each test once
        net = self.network

        def ok(test: tuple) -> bool:
            if test not in memo:
                kind, i = test
                memo[test] = (
                    self._trigger(net.triggers[i], etype, user, ts, counts)
                    if kind == "trigger"
                    else self._test_pred(net.predicates[i], event, user, ts)
                )
            return memo[test]

        fired: list[int] = []
        stack = list(net.root.children.values())
        while stack:
            node = stack.pop()
            if ok(node.test):
                fired.extend(node.rules)
                stack.extend(node.children.values())
        out: list[Decision] = []
        coupons = 0
        for f in sorted(fired):
            rule = net.rules[f]
            for a in rule.actions:
                out.append(self._decide(rule, a, user, ts, coupons))
                if out[-1].allowed and isinstance(a, IssueCoupon):
                    coupons += 1
        return out

    def _decide(self, rule: Rule, a: Action, user: Any, ts: int, coupons: int) -> Decision:
        is_coupon = isinstance(a, IssueCoupon)
        if is_coupon:
            if coupons >= self.network.ruleset.max_coupons_per_event:
                return Decision(rule.id, a, "stacked", "stacked")
            if not self.budget.check(a.value):  # type: ignore[union-attr]  # is_coupon
                return Decision(rule.id, a, "budget", "budget")
        cap = self.caps.check(user, a.channel, ts)
        if cap is not None:
            return Decision(rule.id, a, "capped", str(cap))
        self.caps.record(user, a.channel, ts)
        if is_coupon:
            self.budget.record(a.value)  # type: ignore[union-attr]
        return Decision(rule.id, a, "ok", "")

    def snapshot(self) -> bytes:
        """The window, cap and budget state as bytes (a live worker's checkpoint)."""
        import pickle

        state = (self._counts, self._absent, self.caps._sent, self.budget.issued,
                 self.budget.spent, self._last_ts)  # fmt: skip
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, data: bytes) -> None:
        """Go back to a :meth:`snapshot` (same rules): replaying from there gives the same decisions."""
        import pickle

        (self._counts, self._absent, self.caps._sent, self.budget.issued, self.budget.spent,
         self._last_ts) = pickle.loads(data)  # fmt: skip

    def process_many(self, events: Iterable[Mapping[str, Any]]) -> list[list[Decision]]:
        return [self.process(e) for e in events]
