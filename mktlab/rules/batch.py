"""Batch execution of a compiled network: each alpha test once over a whole DataFrame.

numpy for predicates, numba for window counts and ordering; caps and budget go through
:func:`mktlab.rules.caps.enforce`, the same limits the online engine applies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numba
import numpy as np
import pandas as pd

from mktlab.errors import SchemaError, require_columns
from mktlab.rules.caps import NS, STATUS, Budget, enforce
from mktlab.rules.model import (
    ANY_EVENT,
    Action,
    AtomicEvent,
    IssueCoupon,
    Predicate,
    SetLifecycle,
    Trigger,
)
from mktlab.rules.semantics import (
    Membership,
    profile_frame,
    test_value,
    ts_ns_array,
    vector_numeric,
)

if TYPE_CHECKING:  # the network hands itself in; importing it at run time would be a cycle
    from mktlab.rules.compiler import Network, Node

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
class Batch:
    """One run of a network over one events frame (time-ordered views, cached columns)."""

    def __init__(
        self,
        net: Network,
        events: pd.DataFrame,
        profiles: pd.DataFrame | None,
        audiences: dict[str, Membership],
        user_col: str,
        ts_col: str,
        event_col: str,
    ):
        if not isinstance(events, pd.DataFrame):
            raise SchemaError(f"events: expected a pandas DataFrame, got {type(events).__name__}")
        require_columns(events, [user_col, ts_col, event_col], table="events")
        self.net, self.user_col, self.event_col = net, user_col, event_col
        ts = ts_ns_array(events[ts_col].reset_index(drop=True))
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
            prof = profile_frame(self.profiles, self.user_col)
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
            prof = profile_frame(self.profiles, self.user_col)
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
            return vector_numeric(p.op, data, p.value)
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
        stack: list[tuple[Node, np.ndarray | None]] = [
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


def _prepare(s: pd.Series) -> tuple[str, Any]:
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        return "num", s.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        ns = ts_ns_array(s).astype(np.float64)
        ns[s.isna().to_numpy()] = np.nan
        return "num", ns
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    return "lookup", (np.where(codes < 0, len(uniques), codes), list(uniques))


def lifecycle_states(firings: pd.DataFrame) -> pd.Series:
    """Each user's lifecycle state after the replay (the last allowed ``set_lifecycle``)."""
    m = (firings["action"] == "set_lifecycle") & (firings["status"] == "ok")
    last = firings.loc[m].drop_duplicates("user", keep="last")
    return pd.Series(
        last["detail"].astype(str).to_numpy(), index=last["user"].to_numpy(), name="lifecycle"
    )
