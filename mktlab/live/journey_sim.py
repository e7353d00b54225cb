"""Journeys over an event log, in memory: the reference the live engine must equal.

:func:`simulate` feeds events in time order to :func:`~mktlab.live.journey_runtime.on_event`
and fires timers from a heap in time order between them, exactly as a live worker
would (a timer due at or before an event fires first). The sandbox uses it to see what a
journey would have done before it is launched.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from mktlab.errors import NotFoundError, SchemaError, ValidationError, require_columns
from mktlab.live.events import Event
from mktlab.live.journey import Journey
from mktlab.live.journey_runtime import (
    CompiledJourney,
    DecisionRecord,
    EntryWindows,
    JourneyContext,
    JourneyState,
    StepResult,
    compile_journey,
    on_event,
    on_timer,
)

DECISION_FIELDS = tuple(DecisionRecord.__dataclass_fields__)
EFFECT_COLUMNS = ("journey", "kind", "key", "user_id", "node_id", "ts", "payload")
PROGRESS_ABOVE = 100_000  # show a progress bar for longer logs


class SimpleContext:
    """An in-memory :class:`~mktlab.live.journey_runtime.JourneyContext` for notebooks and tests.

    Parameters
    ----------
    audiences : mapping of str to a set of user ids, optional
    uplift : mapping of user id to float, optional
        Users without a score have none (an uplift split sends them to ``no``).
    tz : str or mapping of user id to str, optional
        Every user's time zone, or one per user (missing = the node's default).

    Rate limits slide over event time: at most ``max`` passes in any ``(now - per, now]``.
    """

    def __init__(
        self,
        audiences: Mapping[str, set[str]] | None = None,
        uplift: Mapping[str, float] | None = None,
        tz: str | Mapping[str, str] | None = None,
    ):
        self.audiences = {a: frozenset(map(str, m)) for a, m in (audiences or {}).items()}
        self.scores = {str(k): float(v) for k, v in (uplift or {}).items()}
        self.tz = tz
        self._passes: dict[str, deque] = {}

    def in_audience(self, audience: str, user_id: str) -> bool:
        members = self.audiences.get(audience)
        if members is None:
            raise NotFoundError(
                f"audience {audience!r}: not in this context; known: {sorted(self.audiences)}"
            )
        return user_id in members

    def uplift(self, user_id: str) -> float | None:
        return self.scores.get(user_id)

    def user_tz(self, user_id: str) -> str | None:
        if self.tz is None or isinstance(self.tz, str):
            return self.tz
        return self.tz.get(user_id)

    def allow_rate(self, key: str, max: int, per: int, now: float) -> bool:
        q = self._passes.setdefault(key, deque())
        while q and q[0] <= now - per:
            q.popleft()
        if len(q) >= max:
            return False
        q.append(now)
        return True

    def reset(self) -> None:
        """Forget the rate-limit counts (before simulating the same log again)."""
        self._passes.clear()


@dataclass(frozen=True)
class SimResult:
    """What the journeys did: decisions and effects in time order, and final states."""

    decisions: pd.DataFrame
    effects: pd.DataFrame
    states: Mapping[tuple[str, str], JourneyState] = field(default_factory=dict)

    def decision_rows(self) -> list[dict]:
        """The decisions as decision-log rows (what a live worker writes for them)."""
        fields = list(DecisionRecord.__dataclass_fields__)
        return [DecisionRecord(**{f: r[f] for f in fields}).to_row()
                for r in self.decisions.to_dict("records")]  # fmt: skip

    def node_counts(self, journey: str) -> dict[str, int]:
        """Distinct users with a decision at each node of ``journey`` (for diagrams)."""
        d = self.decisions[self.decisions["journey"] == journey]
        return {
            str(k): int(v) for k, v in d.groupby("node_id", sort=False)["user_id"].nunique().items()
        }


def _event_frame(events: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    if not isinstance(events, pd.DataFrame):
        raise SchemaError(f"events: expected a pandas DataFrame, got {type(events).__name__}")
    require_columns(events, ["user_id", "ts", "event"], table="events")
    ev = events.reset_index(drop=True)
    ts = ev["ts"]
    if not pd.api.types.is_numeric_dtype(ts):
        # via ns explicitly: pandas keeps the input's unit (s, ms, us) in datetime64
        ts = pd.to_datetime(ts, utc=True).dt.as_unit("ns").astype("int64") / 1e9
    ev = ev.assign(ts=ts.astype(float), user_id=ev["user_id"].astype(str))
    if "event_id" not in ev.columns:
        ev["event_id"] = [f"row{i}" for i in range(len(ev))]
    ev = ev.sort_values("ts", kind="stable").reset_index(drop=True)
    props = [c for c in ev.columns if c not in ("user_id", "ts", "event", "event_id")]
    return ev, props


def _horizon(cjs: Sequence[CompiledJourney]) -> float:
    return float(max((cj.horizon for cj in cjs), default=0))


def simulate(
    journeys: Sequence[Journey],
    events: pd.DataFrame,
    ctx: JourneyContext,
    *,
    until: float | None = None,
) -> SimResult:
    """Run ``journeys`` over an event log in time order, timers included.

    Parameters
    ----------
    journeys : sequence of Journey
        Names must be unique (a user's state is kept per journey name).
    events : DataFrame
        ``user_id``, ``ts`` (epoch seconds or timestamps), ``event``, optional
        ``event_id`` (the row number otherwise); other columns are event ``props``
        (missing values are left out).
    ctx : JourneyContext
        E.g. :class:`SimpleContext`; its rate-limit counts carry over between runs.
    until : float, optional
        Ignore events after ``until`` and fire timers up to it. By default timers fire
        until every user has settled, at most the longest hold of any journey (the sum
        of its waits and delays) after the last event — so a journey that loops forever
        through a delay still ends.

    Returns
    -------
    SimResult
    """
    if isinstance(journeys, Journey):
        journeys = [journeys]
    cjs = [compile_journey(j) for j in journeys]
    names = [cj.name for cj in cjs]
    if len(set(names)) != len(names):
        raise ValidationError(f"journeys: names must be unique, got {names}")
    ev, prop_cols = _event_frame(events)
    windows = EntryWindows(cjs) if any(cj.windowed for cj in cjs) else None
    states: dict[tuple[int, str], JourneyState] = {}
    heap: list[tuple[int, int, int, str]] = []
    decisions: list[DecisionRecord] = []
    effects: list[tuple] = []
    seq = 0

    def apply(k: int, user: str, res: StepResult) -> None:
        nonlocal seq
        if res.state is None:
            states.pop((k, user), None)
        else:
            states[(k, user)] = res.state
        decisions.extend(res.decisions)
        effects.extend((names[k], e.kind, e.key, e.user_id, e.node_id, e.ts, dict(e.payload))
                       for e in res.effects)  # fmt: skip
        if res.wake_at is not None and (res.decisions or res.effects):
            seq += 1
            heapq.heappush(heap, (int(res.wake_at), seq, k, user))

    def fire_until(t: float) -> None:
        while heap and heap[0][0] <= t:
            wake, _, k, user = heapq.heappop(heap)
            st = states.get((k, user))
            if st is None or st.done or st.wake_at != wake:
                continue  # superseded: the user moved on before this timer came due
            apply(k, user, on_timer(cjs[k], st, wake, ctx, user_id=user))

    cols = {c: ev[c].tolist() for c in ("user_id", "ts", "event", "event_id", *prop_cols)}
    n = len(ev)
    rows = range(n)
    if n > PROGRESS_ABOVE:
        from tqdm.auto import tqdm

        rows = tqdm(rows, total=n, desc="journeys", unit="event")
    last = -math.inf
    for r in rows:
        ts = cols["ts"][r]
        if until is not None and ts > until:
            break
        fire_until(ts)
        props = {c: cols[c][r] for c in prop_cols if not _missing(cols[c][r])}
        e = Event(str(cols["event_id"][r]), cols["user_id"][r], ts, cols["event"][r], props)
        fired = windows.observe(e) if windows is not None else frozenset()
        for k, cj in enumerate(cjs):
            st = states.get((k, e.user_id))
            res = on_event(cj, st, e, ctx, triggered=(cj.name in fired) if cj.windowed else None)
            if res.decisions or res.effects or res.state is not st:
                apply(k, e.user_id, res)
        last = ts
    fire_until(until if until is not None else last + _horizon(cjs))
    return SimResult(
        decisions=_decision_frame(decisions),
        effects=pd.DataFrame(effects, columns=list(EFFECT_COLUMNS)),
        states={(names[k], u): s for (k, u), s in states.items()},
    )


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT


def _decision_frame(decisions: list[DecisionRecord]) -> pd.DataFrame:
    df = pd.DataFrame([tuple(getattr(d, f) for f in DECISION_FIELDS) for d in decisions],
                      columns=list(DECISION_FIELDS))  # fmt: skip
    return df.astype({"version": "int64", "ts": "float64", "propensity": "float64",
                      "holdout": bool, "arm": "string", "event_id": "string"})  # fmt: skip
