"""The shared condition network and its two executions: batch and online.

:func:`compile_rules` turns a :class:`~mktlab.rules.model.RuleSet` into a
:class:`Network` (Rete-style):

* **alpha nodes** — every *distinct* predicate (``field op value``) and every distinct
  trigger once, however many rules use it. Window patterns share their counting state:
  patterns over the same ``(event, within, same)`` share one rolling count, and every
  pattern with the same ``absent`` event shares one "no such event" count.
* **beta nodes** — each rule is the conjunction trigger ∧ p1 ∧ p2 …, with its
  predicates ordered by how many rules use them; the conjunctions form a prefix tree, so
  rules that start with the same tests share those joins.

:meth:`Network.run_batch` evaluates each alpha node once over a whole DataFrame (numpy,
plus numba for windows, caps and budget); :class:`OnlineEngine` does the same for one
event at a time, memoising alpha results per event. Both produce the same decisions for
the same time-ordered events — a property test checks it.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import pandas as pd

from mktlab.errors import SchemaError, ValidationError, require_columns
from mktlab.rules.caps import NS, STATUS, Budget, BudgetTracker, CapTracker, enforce
from mktlab.rules.governance import FieldSchema, validate
from mktlab.rules.model import (
    ANY_EVENT,
    Action,
    AtomicEvent,
    IssueCoupon,
    Predicate,
    Rule,
    RuleSet,
    SetLifecycle,
    Trigger,
    WindowPattern,
)

FIRING_COLUMNS = [
    "row",
    "user",
    "ts",
    "rule_id",
    "action",
    "channel",
    "coupon",
    "value",
    "detail",
    "status",
    "reason",
]


# ------------------------------------------------------------------- scalar semantics
def is_null(x: Any) -> bool:
    """Missing: ``None``, NaN, ``pd.NA`` or ``NaT``."""
    if x is None or x is pd.NA or x is pd.NaT:
        return True
    return isinstance(x, float) and math.isnan(x)


def test_value(op: str, x: Any, v: Any) -> bool:
    """Evaluate ``x op v`` for one value; missing values fail every op but ``is_null``."""
    if op == "is_null":
        return is_null(x)
    if op == "not_null":
        return not is_null(x)
    if is_null(x):
        return False
    try:
        if op == "==":
            return bool(x == v)
        if op == "!=":
            return bool(x != v)
        if op == "<":
            return bool(x < v)
        if op == "<=":
            return bool(x <= v)
        if op == ">":
            return bool(x > v)
        if op == ">=":
            return bool(x >= v)
        if op == "in":
            return any(bool(x == e) for e in v)
        if op == "not_in":
            return not any(bool(x == e) for e in v)
        if op == "between":
            return bool(v[0] <= x <= v[1])
    except TypeError:  # e.g. a string compared with a number: no match
        return False
    raise ValidationError(f"unknown op {op!r}")


def _num(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating)  # bool is an int


def _vector_numeric(op: str, x: np.ndarray, v: Any) -> np.ndarray:
    """``test_value`` over a float array (NaN = missing), with identical results."""
    notnull = ~np.isnan(x)
    if op == "is_null":
        return ~notnull
    if op == "not_null":
        return notnull
    if op in ("in", "not_in"):
        nums = [float(e) for e in v if _num(e)]
        hit = np.isin(x, nums) if nums else np.zeros(len(x), bool)
        return hit if op == "in" else notnull & ~hit
    if op == "between":
        if not (_num(v[0]) and _num(v[1])):
            return np.zeros(len(x), bool)
        return (x >= v[0]) & (x <= v[1])
    if not _num(v):
        return notnull.copy() if op == "!=" else np.zeros(len(x), bool)
    if op == "==":
        return x == v
    if op == "!=":
        return notnull & (x != v)
    if op == "<":
        return x < v
    if op == "<=":
        return x <= v
    if op == ">":
        return x > v
    if op == ">=":
        return x >= v
    raise ValidationError(f"unknown op {op!r}")


def context_value(name: str, ts_ns: int) -> int | bool:
    """Context derived from the event time (naive clock): hour, weekday (Mon=0), ..."""
    if name == "hour":
        return (ts_ns // (3600 * NS)) % 24
    if name == "minute_of_day":
        return (ts_ns // (60 * NS)) % 1440
    weekday = (ts_ns // (86400 * NS) + 3) % 7  # 1970-01-01 was a Thursday
    if name == "weekday":
        return weekday
    if name == "is_weekend":
        return weekday >= 5
    raise ValidationError(f"unknown context field {name!r}")


def _ts_ns(values: Any) -> np.ndarray:
    s = pd.to_datetime(pd.Series(values) if not isinstance(values, pd.Series) else values)
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_localize(None)
    return s.astype("datetime64[ns]").to_numpy().view(np.int64)


def scalar_ts_ns(ts: Any) -> int:
    t = pd.Timestamp(ts)
    if t.tzinfo is not None:
        t = t.tz_localize(None)
    return int(t.as_unit("ns").value)


# --------------------------------------------------------------------- audiences
class Membership:
    """An audience's members in a form both executions can test quickly.

    Accepts a set / frozenset / list / ndarray of user keys, a pyroaring ``BitMap`` of
    integer uids, or a pandas boolean Series indexed by user.
    """

    def __init__(self, members: Any):
        if hasattr(members, "bitmap") and not callable(members.bitmap):  # an audience result
            members = members.bitmap
        if isinstance(members, pd.Series) and members.dtype == bool:
            members = members.index[members.to_numpy()]
        if hasattr(members, "to_array") or type(members).__name__ in (
            "BitMap",
            "FrozenBitMap",
            "BitMap64",
        ):
            self._contains = members.__contains__
            self._array = np.fromiter(members, dtype=np.int64, count=len(members))
        else:
            arr = list(members)
            self._set = frozenset(arr)
            self._contains = self._set.__contains__
            self._array = (
                np.asarray(arr, dtype=object)
                if arr and isinstance(arr[0], str)
                else np.asarray(arr)
            )

    @property
    def integer_keys(self) -> bool:
        """Members are integers (uids), e.g. from a bitmap."""
        return self._array.dtype.kind in "iu"

    def __contains__(self, user: Any) -> bool:
        try:
            return bool(self._contains(user))
        except (TypeError, OverflowError):
            return False

    def mask(self, users: np.ndarray) -> np.ndarray:
        if len(self._array) == 0:
            return np.zeros(len(users), bool)
        if users.dtype.kind in "iu" and self._array.dtype.kind in "iu":
            return np.isin(users, self._array)
        return pd.Series(users).isin(pd.Series(self._array, dtype=object)).to_numpy()


def as_memberships(audiences: Mapping[str, Any] | None) -> dict[str, Membership]:
    out = {}
    for name, m in (audiences or {}).items():
        out[name] = m if isinstance(m, Membership) else Membership(m)
    return out


# ------------------------------------------------------------------------ network
@dataclass
class _Node:
    test: tuple  # ("trigger", i) or ("pred", j)
    children: dict = field(default_factory=dict)
    rules: list = field(default_factory=list)  # firing-order indices ending here


@dataclass
class Network:
    """A compiled rule set: distinct alpha tests and a prefix tree of conjunctions."""

    ruleset: RuleSet
    rules: tuple[Rule, ...]
    predicates: tuple[Predicate, ...]
    triggers: tuple[Trigger, ...]
    root: _Node
    n_beta_nodes: int
    n_predicate_refs: int

    @property
    def n_predicates(self) -> int:
        """Distinct predicates (each evaluated once per event)."""
        return len(self.predicates)

    def describe(self) -> dict[str, int]:
        return {
            "rules": len(self.rules),
            "distinct_predicates": self.n_predicates,
            "predicate_references": self.n_predicate_refs,
            "distinct_triggers": len(self.triggers),
            "beta_nodes": self.n_beta_nodes,
        }

    def run_batch(
        self,
        events: pd.DataFrame,
        *,
        profiles: pd.DataFrame | None = None,
        audiences: Mapping[str, Any] | None = None,
        budget: Budget | None = None,
        user_col: str = "user_id",
        ts_col: str = "ts",
        event_col: str = "event",
    ) -> pd.DataFrame:
        """Run every rule over ``events`` in time order; return one row per candidate action.

        Parameters
        ----------
        events : DataFrame
            Needs ``user_col``, ``ts_col`` and ``event_col`` plus the fields rules read.
        profiles : DataFrame, optional
            Indexed by user (or with a ``user_col`` column): ``profile.*`` fields.
        audiences : mapping, optional
            Audience name -> members (set, array, BitMap, boolean Series).
        budget : Budget, optional
            Coupon count / face-value limit over the whole replay.

        Returns
        -------
        DataFrame
            Columns ``row`` (position in ``events``), ``user``, ``ts``, ``rule_id``,
            ``action``, ``channel``, ``coupon``, ``value``, ``detail``, ``status``
            (``ok``, ``capped``, ``budget``, ``stacked``) and ``reason``; ordered by
            time, rule priority and action position.
        """
        batch = _Batch(
            self, events, profiles, as_memberships(audiences), user_col, ts_col, event_col
        )
        return batch.run(budget or Budget())


def compile_rules(
    ruleset: RuleSet, schema: FieldSchema | None = None, *, check: bool = True
) -> Network:
    """Validate ``ruleset`` (against ``schema`` if given) and build its :class:`Network`.

    ``check=False`` skips validation (unreachable rules then simply never fire).
    """
    if check:
        validate(ruleset, schema)
    rules = ruleset.active_rules
    pred_index: dict[tuple, int] = {}
    preds: list[Predicate] = []
    trig_index: dict[tuple, int] = {}
    trigs: list[Trigger] = []
    usage: dict[int, int] = {}
    for r in rules:
        if r.when.key not in trig_index:
            trig_index[r.when.key] = len(trigs)
            trigs.append(r.when)
        for p in dict.fromkeys(r.conditions):  # a repeated predicate in a rule counts once
            if p.key not in pred_index:
                pred_index[p.key] = len(preds)
                preds.append(p)
            usage[pred_index[p.key]] = usage.get(pred_index[p.key], 0) + 1
    root = _Node(("root", 0))
    n_nodes = 0
    n_refs = 0
    for f, r in enumerate(rules):
        path = [("trigger", trig_index[r.when.key])]
        ids = sorted({pred_index[p.key] for p in r.conditions}, key=lambda j: (-usage[j], j))
        n_refs += len(ids)
        path += [("pred", j) for j in ids]
        node = root
        for test in path:
            if test not in node.children:
                node.children[test] = _Node(test)
                n_nodes += 1
            node = node.children[test]
        node.rules.append(f)
    return Network(ruleset, rules, tuple(preds), tuple(trigs), root, n_nodes, n_refs)


def _as_network(rules: RuleSet | Network) -> Network:
    return rules if isinstance(rules, Network) else compile_rules(rules)


# ------------------------------------------------------------------ numba windows
@numba.njit(cache=True)
def _window_counts(group, ts, within):  # pragma: no cover - compiled
    # rows sorted by (group, arrival); ts non-decreasing inside a group
    n = len(group)
    out = np.empty(n, np.int64)
    lo = 0
    for i in range(n):
        if i == 0 or group[i] != group[i - 1]:
            lo = i
        while ts[lo] <= ts[i] - within:
            lo += 1
        out[i] = i - lo + 1
    return out


@numba.njit(cache=True)
def _absent_counts(user, ts, is_absent, within):  # pragma: no cover - compiled
    # rows sorted by (user, arrival): count earlier absent-type rows in (t - within, t]
    n = len(user)
    out = np.zeros(n, np.int64)
    a_ts = np.empty(n, np.int64)
    na = 0
    lo = 0
    for i in range(n):
        if i == 0 or user[i] != user[i - 1]:
            na = 0
            lo = 0
        if is_absent[i]:
            a_ts[na] = ts[i]
            na += 1
        else:
            while lo < na and a_ts[lo] <= ts[i] - within:
                lo += 1
            out[i] = na - lo
    return out


@numba.njit(cache=True)
def _stable_order_by_rank(rank, n_events):  # pragma: no cover - compiled
    # counting sort: O(n), keeps the input order among equal ranks
    start = np.zeros(n_events + 1, np.int64)
    for r in rank:
        start[r + 1] += 1
    for i in range(n_events):
        start[i + 1] += start[i]
    out = np.empty(len(rank), np.int64)
    for k in range(len(rank)):
        r = rank[k]
        out[start[r]] = k
        start[r] += 1
    return out


def _codes(values: pd.Series) -> np.ndarray:
    codes, _ = pd.factorize(values, use_na_sentinel=True)
    return np.where(codes < 0, codes.max(initial=0) + 1, codes).astype(np.int64)


# -------------------------------------------------------------------------- batch
class _Batch:
    def __init__(self, net, events, profiles, audiences, user_col, ts_col, event_col):
        if not isinstance(events, pd.DataFrame):
            raise SchemaError(f"events: expected a pandas DataFrame, got {type(events).__name__}")
        require_columns(events, [user_col, ts_col, event_col], table="events")
        self.net, self.user_col, self.event_col = net, user_col, event_col
        ts = _ts_ns(events[ts_col].reset_index(drop=True))
        self.order = np.argsort(ts, kind="stable")
        self.ts = ts[self.order]
        self.n = len(events)
        self.events = events
        self.users = events[user_col].to_numpy()[self.order]
        codes, uniques = pd.factorize(self.users, use_na_sentinel=False)
        self.user_code = codes.astype(np.int64)
        self.user_uniques = np.asarray(uniques)
        self.audiences = audiences
        self.profiles = profiles
        self._prof_pos: np.ndarray | None = None
        self._cols: dict[str, tuple[str, Any]] = {}
        self.evaluations = 0

    # columns ----------------------------------------------------------------------
    def _event_series(self, name: str) -> pd.Series:
        if name not in self.events.columns:
            raise SchemaError(f"events: rules read event.{name} but the column is missing")
        return self.events[name].iloc[self.order].reset_index(drop=True)

    def _profile_pos(self) -> np.ndarray:
        if self._prof_pos is None:
            prof = _profile_frame(self.profiles, self.user_col)
            # look up each distinct user once, then spread by user code
            self._prof_pos = prof.index.get_indexer(pd.Index(self.user_uniques))[self.user_code]
        return self._prof_pos

    def column(self, fld: str) -> tuple[str, Any]:
        """(``"num"``, float array) or (``"lookup"``, (codes, uniques)) in time order."""
        if fld in self._cols:
            return self._cols[fld]
        ns, name = fld.split(".", 1)
        if ns == "context":
            if name not in ("hour", "minute_of_day", "weekday", "is_weekend"):
                raise SchemaError(f"unknown context field {fld!r}")
            # the same integer arithmetic as context_value, so both executions agree
            t = self.ts
            if name == "hour":
                vals = (t // (3600 * NS)) % 24
            elif name == "minute_of_day":
                vals = (t // (60 * NS)) % 1440
            else:
                vals = (t // (86400 * NS) + 3) % 7
                if name == "is_weekend":
                    vals = vals >= 5
            out = ("num", vals.astype(np.float64))
        elif ns == "event":
            out = _prepare(self._event_series(name))
        elif ns == "profile":
            prof = _profile_frame(self.profiles, self.user_col)
            if name not in prof.columns:
                raise SchemaError(f"profiles: rules read profile.{name} but the column is missing")
            kind, data = _prepare(prof[name].reset_index(drop=True))
            pos = self._profile_pos()
            if kind == "num":
                out = ("num", np.where(pos >= 0, data[np.maximum(pos, 0)], np.nan))
            else:
                codes, uniques = data
                out = ("lookup", (np.where(pos >= 0, codes[np.maximum(pos, 0)], -1), uniques))
        else:
            raise SchemaError(f"cannot read field {fld!r}")
        self._cols[fld] = out
        return out

    def predicate(self, p: Predicate) -> np.ndarray:
        self.evaluations += 1
        if p.namespace == "audience":
            if p.name not in self.audiences:
                raise SchemaError(
                    f"audience {p.name!r} is referenced by a rule but was not supplied"
                )
            m = self.audiences[p.name].mask(self.user_uniques)[self.user_code]
            return m if p.op == "member" else ~m
        kind, data = self.column(p.field)
        if kind == "num":
            return _vector_numeric(p.op, data, p.value)
        codes, uniques = data
        table = np.array(
            [test_value(p.op, u, p.value) for u in uniques] + [test_value(p.op, None, p.value)]
        )
        return table[codes]

    def trigger(self, t: Trigger, shared: dict) -> np.ndarray:
        types = (
            self.column(f"event.{self.event_col}")
            if self.event_col in self.events.columns
            else None
        )
        if types is None or types[0] != "lookup":
            raise SchemaError(f"events.{self.event_col}: expected event type names (strings)")
        codes, uniques = types[1]

        def is_type(name: str) -> np.ndarray:
            table = np.array([u == name for u in uniques] + [False])
            return table[codes]

        if isinstance(t, AtomicEvent):
            return np.ones(self.n, bool) if t.type == ANY_EVENT else is_type(t.type)
        key = ("count", t.event, t.within, t.same)
        if key not in shared:
            rows = np.flatnonzero(is_type(t.event))
            group = self.user_code[rows]
            for s in t.same:
                c = _codes(self._event_series(s).iloc[rows].reset_index(drop=True))
                group = group * (int(c.max(initial=0)) + 1) + c
            # arrival order inside each group: a stable sort of the time-ordered rows
            srt = np.argsort(group, kind="stable")
            counts = np.zeros(self.n, np.int64)
            counts[rows[srt]] = _window_counts(group[srt], self.ts[rows][srt], t.within * NS)
            shared[key] = counts
        fires = shared[key] >= t.count
        if t.absent is not None:
            akey = ("absent", t.absent, t.event, t.within)
            if akey not in shared:
                is_a = is_type(t.absent)
                rows = np.flatnonzero(is_a | is_type(t.event))
                srt = rows[np.argsort(self.user_code[rows], kind="stable")]
                counts = np.zeros(self.n, np.int64)
                out = _absent_counts(self.user_code[srt], self.ts[srt], is_a[srt], t.within * NS)
                counts[srt] = out
                shared[akey] = counts
            fires &= shared[akey] == 0
        return fires

    # run ---------------------------------------------------------------------------
    def run(self, budget: Budget) -> pd.DataFrame:
        net = self.net
        alpha: dict[tuple, np.ndarray] = {}
        shared: dict = {}

        def mask(test: tuple) -> np.ndarray:
            if test not in alpha:
                kind, i = test
                alpha[test] = (
                    self.trigger(net.triggers[i], shared)
                    if kind == "trigger"
                    else self.predicate(net.predicates[i])
                )
            return alpha[test]

        matched: dict[int, np.ndarray] = {}
        stack: list[tuple[_Node, np.ndarray | None]] = [
            (child, None) for child in net.root.children.values()
        ]
        while stack:
            node, rows = stack.pop()
            m = mask(node.test)
            rows = np.flatnonzero(m) if rows is None else rows[m[rows]]
            for f in node.rules:
                matched[f] = rows
            if len(rows):
                stack.extend((child, rows) for child in node.children.values())
        return self._actions(matched, budget)

    def _actions(self, matched: dict[int, np.ndarray], budget: Budget) -> pd.DataFrame:
        net = self.net
        acts: list[Action] = []
        parts_rank, parts_f, parts_a = [], [], []
        # parts in (rule firing order, action position) order: a stable sort by event
        # rank then yields exactly the order the online engine acts in
        for f in sorted(matched):
            rows = matched[f]
            for a in net.rules[f].actions:
                if len(rows) == 0:
                    continue
                parts_rank.append(rows)
                parts_f.append(np.full(len(rows), f, np.int64))
                parts_a.append(np.full(len(rows), len(acts), np.int64))
                acts.append(a)
        if not parts_rank:
            return _empty_firings()
        rank = np.concatenate(parts_rank)
        srt = _stable_order_by_rank(rank, self.n)
        rank, fi, ai = rank[srt], np.concatenate(parts_f)[srt], np.concatenate(parts_a)[srt]
        channels = sorted(
            {a.channel for a in acts if a.channel is not None}
            | {c.channel for c in net.ruleset.caps}
        )
        chan_of = np.array(
            [channels.index(a.channel) if a.channel is not None else -1 for a in acts], np.int64
        )
        coupon_of = np.array([isinstance(a, IssueCoupon) for a in acts])
        value_of = np.array([a.value if isinstance(a, IssueCoupon) else 0.0 for a in acts])
        status, which = enforce(
            rank, self.user_code[rank], self.ts[rank], chan_of[ai], coupon_of[ai], value_of[ai],
            net.ruleset.caps, channels, budget=budget, max_coupons_per_event=net.ruleset.max_coupons_per_event,
            n_users=len(self.user_uniques),
        )  # fmt: skip

        def cat(per_action: list, idx: np.ndarray) -> pd.Categorical:
            # categoricals from integer codes: no per-row Python objects for millions of rows
            cats = list(dict.fromkeys(v for v in per_action if v is not None))
            lut = np.array([cats.index(v) if v is not None else -1 for v in per_action], np.int64)
            return pd.Categorical.from_codes(lut[idx], categories=cats)  # type: ignore[call-overload]

        reason_cats = [str(c) for c in net.ruleset.caps] + ["budget", "stacked", ""]
        reason_code = np.where(
            status == 1,
            which,
            np.where(
                status == 2,
                len(net.ruleset.caps),
                np.where(status == 3, len(net.ruleset.caps) + 1, len(net.ruleset.caps) + 2),
            ),
        )
        out = pd.DataFrame(
            {
                "row": self.order[rank],
                "user": self.users[rank],
                "ts": self.ts[rank].view("datetime64[ns]"),
                "rule_id": pd.Categorical.from_codes(  # type: ignore[call-overload]
                    fi, categories=list(dict.fromkeys(r.id for r in net.rules))
                ),
                "action": cat([a.kind for a in acts], ai),
                "channel": cat([a.channel for a in acts], ai),
                "coupon": cat([getattr(a, "coupon", None) for a in acts], ai),
                "value": value_of[ai],
                "detail": cat([_detail(a) for a in acts], ai),
                "status": pd.Categorical.from_codes(  # type: ignore[call-overload]
                    status.astype(np.int64), categories=list(STATUS)
                ),
                "reason": cat(reason_cats, reason_code),
            }
        )
        out.attrs["predicate_evaluations"] = self.evaluations
        return out


def _detail(a: Action) -> str:
    if isinstance(a, SetLifecycle):
        return a.state
    return getattr(a, "template", "") or ""


def _empty_firings() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in FIRING_COLUMNS})


def _profile_frame(profiles: pd.DataFrame | None, user_col: str) -> pd.DataFrame:
    if profiles is None:
        raise SchemaError("profiles: rules read profile.* fields but no profiles were supplied")
    if user_col in profiles.columns:
        profiles = profiles.set_index(user_col)
    if not profiles.index.is_unique:
        dup = profiles.index[profiles.index.duplicated()][:5].tolist()
        raise SchemaError(f"profiles: user key is not unique, e.g. {dup}")
    return profiles


def _prepare(s: pd.Series) -> tuple[str, Any]:
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        return "num", s.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        ns = _ts_ns(s).astype(np.float64)
        ns[s.isna().to_numpy()] = np.nan
        return "num", ns
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    return "lookup", (np.where(codes < 0, len(uniques), codes), list(uniques))


def run_batch(rules: RuleSet | Network, events: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    """Compile ``rules`` if needed and run them over ``events``; see :meth:`Network.run_batch`."""
    return _as_network(rules).run_batch(events, **kwargs)


def lifecycle_states(firings: pd.DataFrame) -> pd.Series:
    """Each user's lifecycle state after the replay (the last allowed ``set_lifecycle``)."""
    m = (firings["action"] == "set_lifecycle") & (firings["status"] == "ok")
    last = firings.loc[m].drop_duplicates("user", keep="last")
    return pd.Series(
        last["detail"].astype(str).to_numpy(), index=last["user"].to_numpy(), name="lifecycle"
    )


# ------------------------------------------------------------------------- online
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
    ):
        self.network = _as_network(rules)
        self.user_col, self.ts_col, self.event_col = user_col, ts_col, event_col
        self.audiences = as_memberships(audiences)
        self._profiles: dict[Any, dict] = {}
        if profiles is not None:
            prof = _profile_frame(profiles, user_col)
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

    def process_many(self, events: Iterable[Mapping[str, Any]]) -> list[list[Decision]]:
        return [self.process(e) for e in events]


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
    prof = {} if profiles is None else _profile_frame(profiles, user_col).to_dict("index")
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
