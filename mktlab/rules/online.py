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


def _split_field(p: Predicate) -> tuple[str, str] | None:
    """``(namespace, name)`` of a predicate's field (``None``: left to :meth:`_test_pred`)."""
    try:
        return p.namespace, p.name
    except Exception:  # evaluating it raises as before
        return None


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
        # per user: (window counts by (pattern key, same values), absent-event times by type)
        self._users: dict[Any, tuple[dict, dict]] = {}
        self._dirty: set = set()
        self._plans: dict[int, tuple] = {}
        self._root_by_event: dict[Any, list] = {}
        self._root_any: list = []
        for child in self.network.root.children.values():
            t = self.network.triggers[child.test[1]]
            if isinstance(t, AtomicEvent) and t.type == ANY_EVENT:
                self._root_any.append(child)
            else:
                etype = t.type if isinstance(t, AtomicEvent) else t.event
                self._root_by_event.setdefault(etype, []).append(child)
        self._max_within: dict[str, int] = {}
        for t in self.network.triggers:
            if isinstance(t, WindowPattern) and t.absent:
                self._max_within[t.absent] = max(self._max_within.get(t.absent, 0), t.within)
        # the hot path's lookups, done once: per event type, the window patterns it counts
        # (first of each key, in trigger order), and each predicate's namespace and name
        self._windows_by_event: dict[Any, tuple] = {}
        seen_keys: dict[Any, set] = {}
        for t in self.network.triggers:
            if not isinstance(t, WindowPattern):
                continue
            key = ("count", t.event, t.within, t.same)
            if key not in seen_keys.setdefault(t.event, set()):
                seen_keys[t.event].add(key)
                self._windows_by_event[t.event] = (*self._windows_by_event.get(t.event, ()), t)
        self._pred_fields = [_split_field(p) for p in self.network.predicates]
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

    def _test_pred_at(self, i: int, event: Mapping, user: Any, ts: int) -> bool:
        """:meth:`_test_pred` of predicate ``i``, its field split once at construction."""
        f = self._pred_fields[i]
        if f is None or f[0] == "audience":
            return self._test_pred(self.network.predicates[i], event, user, ts)
        ns, name = f
        self.evaluations += 1
        if ns == "event":
            x = event.get(name)
        elif ns == "profile":
            x = self._profiles.get(user, {}).get(name)
        else:
            x = context_value(name, ts)
        if isinstance(x, pd.Timestamp | np.datetime64):
            x = scalar_ts_ns(x)
        p = self.network.predicates[i]
        return test_value(p.op, x, p.value)

    def _update_windows(self, event: Mapping, etype: Any, user: Any, ts: int) -> dict:
        """Advance the shared window state with this event; return pattern counts."""
        results: dict = {}
        for t in self._windows_by_event.get(etype, ()):
            # a fresh key per call, as before: a checkpoint pickles the same bytes
            key = ("count", t.event, t.within, t.same)
            same = tuple(None if is_null(event.get(s)) else event.get(s) for s in t.same)
            q = self._user(user)[0].setdefault((key, same), deque())
            q.append(ts)
            while q[0] <= ts - t.within * NS:
                q.popleft()
            results[key] = len(q)
        if etype in self._max_within:
            lst = self._user(user)[1].setdefault(etype, [])
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
            u = self._users.get(user)
            lst = u[1].get(t.absent, []) if u is not None else []
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
                    else self._test_pred_at(i, event, user, ts)
                )
            return memo[test]

        fired: list[int] = []
        stack = [*self._root_by_event.get(etype, ()), *self._root_any]
        while stack:
            node = stack.pop()
            if ok(node.test):
                fired.extend(node.rules)
                if node.children:
                    self._expand(node, event, memo, stack)
        out: list[Decision] = []
        coupons = 0
        for f in sorted(fired):
            rule = net.rules[f]
            for a in rule.actions:
                out.append(self._decide(rule, a, user, ts, coupons))
                if out[-1].allowed and isinstance(a, IssueCoupon):
                    coupons += 1
        return out

    def _plan(self, node: Any) -> tuple:
        """The children of ``node`` split into string-equality groups (a hash lookup each) and the rest."""
        plan = self._plans.get(id(node))
        if plan is None:
            groups: dict[tuple[str, str], dict[str, list]] = {}
            rest = []
            for child in node.children.values():
                kind, i = child.test
                p = self.network.predicates[i] if kind == "pred" else None
                if (
                    p is not None
                    and p.op == "=="
                    and isinstance(p.value, str)
                    and p.namespace == "event"
                ):
                    groups.setdefault((p.namespace, p.name), {}).setdefault(p.value, []).append(
                        child
                    )
                else:
                    rest.append(child)
            plan = self._plans[id(node)] = (tuple(groups.items()), tuple(rest))
        return plan

    def _expand(self, node: Any, event: Mapping, memo: dict, stack: list) -> None:
        # An equality test on a string field passes for exactly the children keyed by the
        # event's value: one dict lookup instead of one test per child (Rete's alpha index).
        groups, rest = self._plan(node)
        for (_, name), table in groups:
            x = event.get(name)
            if isinstance(x, str):
                for child in table.get(x, ()):
                    memo[child.test] = True
                    stack.append(child)
            else:  # not a string: test each (same answers as test_value)
                for children in table.values():
                    stack.extend(children)
        stack.extend(rest)

    def _user(self, user: Any) -> tuple[dict, dict]:
        self._dirty.add(user)
        u = self._users.get(user)
        if u is None:
            u = self._users[user] = ({}, {})
        return u

    def dirty_users(self) -> set:
        """Users whose window state changed since the last :meth:`clear_dirty`."""
        return set(self._dirty)

    def clear_dirty(self) -> None:
        self._dirty.clear()

    def user_snapshot(self, user: Any) -> bytes | None:
        """One user's window state as bytes (``None``: nothing to remember)."""
        import pickle

        u = self._users.get(user)
        if u is None or (not u[0] and not u[1]):
            return None
        return pickle.dumps(u, protocol=pickle.HIGHEST_PROTOCOL)

    def restore_user(self, user: Any, data: bytes) -> None:
        """Load one user's window state written by :meth:`user_snapshot`."""
        import pickle

        self._users[user] = pickle.loads(data)

    def merge_user(self, user: Any, data: bytes) -> None:
        """Join one user's window state written by another engine over the same events.

        Counts of a window pattern this engine holds already are the same counts (both
        saw every event of its type) and are kept; the others join. Of two lists of an
        absent event's times the longer is kept: both hold the same events, the shorter
        trimmed to a shorter window. The user is marked dirty (the next snapshot holds
        the union).
        """
        import pickle

        counts, absent = pickle.loads(data)
        mine = self._user(user)
        for k, q in counts.items():
            mine[0].setdefault(k, q)
        for t, lst in absent.items():
            if len(lst) > len(mine[1].get(t, ())):
                mine[1][t] = lst

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

        state = (self._users, self.caps._sent, self.budget.issued,
                 self.budget.spent, self._last_ts)  # fmt: skip
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, data: bytes) -> None:
        """Go back to a :meth:`snapshot` (same rules): replaying from there gives the same decisions."""
        import pickle

        (self._users, self.caps._sent, self.budget.issued, self.budget.spent,
         self._last_ts) = pickle.loads(data)  # fmt: skip

    def process_many(self, events: Iterable[Mapping[str, Any]]) -> list[list[Decision]]:
        return [self.process(e) for e in events]
