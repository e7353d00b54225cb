"""A strategy run event by event: rules fire, eligibility decides, effects come out.

:class:`StrategyRuntime` is the one execution of a strategy over events. The event-time
simulation (:func:`simulate`) drives it over a whole log in memory; the live workers
(:mod:`mktlab.live`) drive the same class per bus partition, with its window state
checkpointed (:meth:`StrategyRuntime.snapshot`) and caps counted in Redis. Equal inputs
give equal decisions, which ``tests/live`` checks end to end.

Effects are data (:class:`Effect`): the runtime never issues a coupon or sends a message
itself. Each carries an idempotency key ``<strategy>:v<version>:<rule>:<action#>:<user>:<event id>``,
so executing an effect twice (a redelivered event) has no second consequence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from mktlab.errors import SchemaError
from mktlab.rules.model import IssueCoupon, RuleSet, SendMessage, SetLifecycle
from mktlab.rules.online import OnlineEngine
from mktlab.strategy.eligibility import CapLedger, Eligibility, EligibilityContext, MemoryCapLedger
from mktlab.strategy.spec import Strategy

DECISION_COLUMNS = (
    "key",
    "source",
    "version",
    "node",
    "user_id",
    "ts",
    "event_id",
    "action",
    "status",
    "reason",
    "arm",
    "p_treat",
    "propensity",
    "holdout",
    "uplift",
)


@dataclass(frozen=True, slots=True)
class Effect:
    """Something to do in the world: ``coupon``, ``message`` or ``update``."""

    kind: str
    key: str
    user_id: str
    node_id: str
    ts: float
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    """Decisions (one row per considered action) and effects of some events."""

    decisions: list[dict[str, Any]] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)

    def extend(self, other: RunResult) -> None:
        self.decisions.extend(other.decisions)
        self.effects.extend(other.effects)

    def decisions_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.decisions, columns=list(DECISION_COLUMNS))


class StrategyRuntime:
    """Run one strategy's rules on events and decide each action through :class:`Eligibility`.

    Parameters
    ----------
    strategy : Strategy
        Needs a ``rules`` section (its triggers); a strategy without rules acts only
        through ``/issue`` and journeys.
    context : EligibilityContext
        Audience membership and uplift scores (also feeds ``audience.*`` rule conditions).
    caps : CapLedger, optional
        Default: a fresh :class:`MemoryCapLedger`.
    profiles : DataFrame, optional
        For ``profile.*`` rule conditions.
    gate : CampaignGate, optional
        The lifecycle's campaign states (see :class:`~mktlab.strategy.eligibility.Eligibility`).
    """

    def __init__(
        self,
        strategy: Strategy,
        context: EligibilityContext,
        caps: CapLedger | None = None,
        *,
        profiles: pd.DataFrame | None = None,
        audiences: Mapping[str, Any] | None = None,
        gate: Any = None,
    ):
        if strategy.rules is None:
            raise SchemaError(f"strategy {strategy.name!r}: no rules section, nothing triggers it")
        self.strategy = strategy
        self.eligibility = Eligibility(strategy, context, caps or MemoryCapLedger(), gate=gate)
        # caps and budget belong to eligibility and the issuer; the rules only match
        bare = RuleSet(
            name=strategy.rules.name,
            rules=strategy.rules.rules,
            caps=(),
            version=strategy.rules.version,
            max_coupons_per_event=strategy.rules.max_coupons_per_event,
        )
        self._bare, self._profiles, self._audiences = bare, profiles, audiences
        self._engine: OnlineEngine | None = (
            None  # built on first direct use (StrategySet has its own)
        )
        self.events = self._events_used(bare)

    @property
    def engine(self) -> OnlineEngine:
        if self._engine is None:
            self._engine = OnlineEngine(
                self._bare, profiles=self._profiles, audiences=self._audiences, order="per_user"
            )
        return self._engine

    @staticmethod
    def _events_used(rules: RuleSet) -> frozenset[str] | None:
        names: set[str] = set()
        for r in rules.active_rules:
            t = r.when
            typ = getattr(t, "type", None)
            if typ is not None:
                if typ == "*":
                    return None
                names.add(typ)
            else:
                names.add(t.event)
                if t.absent:
                    names.add(t.absent)
        return frozenset(names)

    def snapshot(self) -> bytes:
        return self.engine.snapshot()

    def restore(self, data: bytes) -> None:
        self.engine.restore(data)

    def on_event(
        self,
        user_id: str,
        ts: float,
        event: str,
        event_id: str,
        props: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Decisions and effects of one event (``ts`` in epoch seconds, event time)."""
        out = RunResult()
        if self.events is not None and event not in self.events:
            return out  # no rule reads this event type: nothing to match or remember
        row = dict(props or {})
        row.update(user_id=user_id, ts=round(ts * 1e9), event=event)
        return self.decide(self.engine.process(row), user_id, ts, event_id, props)

    def decide(self, fired, user_id: str, ts: float, event_id: str, props) -> RunResult:
        """Eligibility and effects of this strategy's fired rule actions on one event."""
        out = RunResult()
        s = self.strategy
        for i, d in enumerate(fired):
            a = d.action
            key = f"{s.key}:{d.rule_id}:{i}:{user_id}:{event_id}"
            base = {
                "key": key,
                "source": s.name,
                "version": s.version,
                "node": d.rule_id,
                "user_id": user_id,
                "ts": ts,
                "event_id": event_id,
            }
            if isinstance(a, SetLifecycle):
                out.effects.append(
                    Effect("update", key, user_id, d.rule_id, ts, {"lifecycle": a.state})
                )
                out.decisions.append(
                    {
                        **base,
                        "action": "update",
                        "status": "ok",
                        "reason": "",
                        "arm": "treated",
                        "p_treat": 1.0,
                        "propensity": 1.0,
                        "holdout": False,
                        "uplift": None,
                    }
                )
                continue
            kind = "coupon" if isinstance(a, IssueCoupon) else "message"
            if not d.allowed:  # stacked: more coupons than the rule set allows per event
                out.decisions.append(
                    {
                        **base,
                        "action": kind,
                        "status": d.status,
                        "reason": d.reason,
                        "arm": "control",
                        "p_treat": 0.0,
                        "propensity": 1.0,
                        "holdout": False,
                        "uplift": None,
                    }
                )
                continue
            v = self.eligibility.check(user_id, a.channel, ts, key)
            arm = "treated" if v.allowed else ("holdout" if v.holdout else "control")
            out.decisions.append(
                {
                    **base,
                    "action": kind,
                    "status": v.status,
                    "reason": v.reason,
                    "arm": arm,
                    "p_treat": v.p_treat,
                    "propensity": v.propensity,
                    "holdout": v.holdout,
                    "uplift": v.uplift,
                }
            )
            if not v.allowed:
                continue
            if isinstance(a, IssueCoupon):
                payload = {
                    "campaign_id": s.campaign_id or a.coupon,
                    "value": a.value or s.coupon.face_value,
                    "source": s.name,
                }
            else:
                assert isinstance(a, SendMessage)
                payload = {
                    "template": a.template,
                    "channels": list(s.message_channels(a.channel)),
                    "campaign_id": s.campaign_id,
                    "params": {
                        k: v for k, v in (props or {}).items() if isinstance(v, str | int | float)
                    },
                    "source": s.name,
                }
            out.effects.append(Effect(kind, key, user_id, d.rule_id, ts, payload))
        return out


class StrategySet:
    """Several strategies over one event stream, their rules matched in one network.

    Every strategy's rules are compiled together, so a test shared by many rules (an
    event type, a category) runs once per event whatever the number of strategies; the
    fired actions then go to each strategy's own :class:`StrategyRuntime` logic
    (stacking limit, eligibility, effects). The decisions equal running each strategy on
    its own. This is what :func:`simulate` and the live workers run.

    ``markers`` (name -> trigger) are counted in the same network without acting: the
    live engine's windowed journey entries, so each event is matched once for rules and
    entries together (:meth:`match_all` reports which fired). A marker shares the window
    state of any rule with the same trigger; it never changes what the rules decide.
    """

    def __init__(
        self,
        strategies: Iterable[Strategy],
        context: EligibilityContext,
        caps: CapLedger | None = None,
        *,
        profiles: pd.DataFrame | None = None,
        audiences: Mapping[str, Any] | None = None,
        network: Any = None,
        gate: Any = None,
        markers: Mapping[str, Any] | None = None,
    ):
        from mktlab.rules.model import Rule, SetLifecycle

        self.strategies = list(strategies)
        names = [s.name for s in self.strategies]
        if len(set(names)) != len(names):
            raise SchemaError(f"strategies: names must be unique, got {names}")
        ledger = caps or MemoryCapLedger()
        self.runtimes = [
            StrategyRuntime(s, context, ledger, profiles=profiles, audiences=audiences, gate=gate)
            for s in self.strategies
        ]
        merged, self._owner = [], []
        for k, rt in enumerate(self.runtimes):
            for r in rt.strategy.rules.active_rules:
                merged.append(
                    Rule(
                        id=f"s{k}.{r.id}",
                        when=r.when,
                        conditions=r.conditions,
                        actions=r.actions,
                        priority=0,
                    )
                )
                self._owner.append((k, r.id))
        self._rule_of = {f"s{k}.{rid}": (k, rid) for k, rid in self._owner}
        # markers come after every rule: the rules' indexes, and so their firing order, stay
        self._marker_of: dict[str, str] = {}
        marks: list[Rule] = []
        for name, t in (markers or {}).items():
            rid = f"m{len(marks)}"
            self._marker_of[rid] = name
            marks.append(Rule(id=rid, when=t, actions=(SetLifecycle("entered"),)))
        net = network
        if net is None and (merged or marks):
            from mktlab.rules.compiler import compile_rules
            from mktlab.rules.governance import validate

            if merged:  # the strategies' rules, as before; markers are bare triggers
                validate(RuleSet(name="live", rules=tuple(merged), max_coupons_per_event=10**9))
            net = compile_rules(RuleSet(name="live", rules=(*merged, *marks),
                                        max_coupons_per_event=10**9), check=False)  # fmt: skip
        self.network = net
        self.engine = (
            OnlineEngine(net, profiles=profiles, audiences=audiences, order="per_user")
            if net
            else None
        )
        used = [rt.events for rt in self.runtimes]
        self.events = None if any(u is None for u in used) else frozenset().union(*used)
        self._seen = self.events  # the event types the network counts: rules' and markers'
        if self._seen is not None and marks:
            types = [(getattr(t, "type", None), getattr(t, "event", None), getattr(t, "absent", None))
                     for t in (markers or {}).values()]  # fmt: skip
            if any(x[0] == "*" for x in types):
                self._seen = None
            else:
                self._seen = self._seen | frozenset(x for tr in types for x in tr if x)

    def match(self, user_id: str, ts: float, event: str, props: Mapping[str, Any] | None = None):
        """The rules fired by one event, per strategy (stacking applied); None when none fired.

        Matching never reads caps or eligibility, so a caller can match a whole batch
        first and fetch the cap histories of only the users something fired for.
        """
        return self.match_all(user_id, ts, event, props)[0]

    def match_all(self, user_id: str, ts: float, event: str,
                  props: Mapping[str, Any] | None = None) -> tuple[Any, frozenset[str]]:  # fmt: skip
        """:meth:`match`, and the names of the markers the event fired, in one pass."""
        if self.engine is None or (self._seen is not None and event not in self._seen):
            return None, _NONE
        row = dict(props) if props else {}
        row["user_id"], row["ts"], row["event"] = user_id, round(ts * 1e9), event
        fired = self.engine.process(row)
        if not fired:
            return None, _NONE
        per: dict[int, list] = {}
        marked: list[str] = []
        rule_of = self._rule_of
        for d in fired:
            got = rule_of.get(d.rule_id)
            if got is None:
                marked.append(self._marker_of[d.rule_id])
                continue
            k, rid = got
            per.setdefault(k, []).append(d.__class__(rid, d.action, d.status, d.reason))
        matched = [
            (k, _stack(per[k], self.runtimes[k].strategy.rules.max_coupons_per_event))
            for k in sorted(per)
        ] or None
        return matched, (frozenset(marked) if marked else _NONE)

    def decide(self, matched, user_id: str, ts: float, event_id: str, props=None) -> RunResult:
        """Eligibility and effects of what :meth:`match` returned, in strategy order."""
        out = RunResult()
        for k, fired in matched or ():
            out.extend(self.runtimes[k].decide(fired, user_id, ts, event_id, props))
        return out

    def on_event(
        self,
        user_id: str,
        ts: float,
        event: str,
        event_id: str,
        props: Mapping[str, Any] | None = None,
    ) -> RunResult:
        return self.decide(self.match(user_id, ts, event, props), user_id, ts, event_id, props)


_NONE: frozenset[str] = frozenset()


def _stack(fired: list, limit: int) -> list:
    """Mark coupon actions after the first ``limit`` of one event as stacked (as one rule set does)."""
    out, n = [], 0
    for d in fired:
        if isinstance(d.action, IssueCoupon):
            if n >= limit:
                d = d.__class__(d.rule_id, d.action, "stacked", "stacked")
            else:
                n += 1
        out.append(d)
    return out


def simulate(
    strategies: Strategy | Iterable[Strategy],
    events: pd.DataFrame,
    context: EligibilityContext,
    *,
    profiles: pd.DataFrame | None = None,
    audiences: Mapping[str, Any] | None = None,
) -> RunResult:
    """Run strategies over an event log in time order, in memory: the live loop's reference.

    ``events`` needs ``user_id, ts`` (epoch seconds or timestamps), ``event`` and
    ``event_id`` (made from the row number when absent); other columns are event fields.
    Caps are counted per strategy in a :class:`MemoryCapLedger` with the live ledger's rule.
    """
    strategies = [strategies] if isinstance(strategies, Strategy) else list(strategies)
    missing = [c for c in ("user_id", "ts", "event") if c not in events.columns]
    if missing:
        raise SchemaError(f"events: missing column(s) {missing}; got {list(events.columns)}")
    ev = events.copy()
    if not pd.api.types.is_numeric_dtype(ev["ts"]):
        ev["ts"] = pd.to_datetime(ev["ts"], utc=True).dt.as_unit("ns").astype("int64") / 1e9
    if "event_id" not in ev.columns:
        ev["event_id"] = [f"row{i}" for i in range(len(ev))]
    ev = ev.sort_values("ts", kind="stable")
    runtime = StrategySet(
        strategies, context, MemoryCapLedger(), profiles=profiles, audiences=audiences
    )
    extra = [c for c in ev.columns if c not in ("user_id", "ts", "event", "event_id")]
    out = RunResult()
    cols = ["user_id", "ts", "event", "event_id", *extra]
    for row in ev[cols].itertuples(index=False, name=None):
        props = dict(zip(extra, row[4:], strict=True)) if extra else None
        out.extend(runtime.on_event(row[0], float(row[1]), row[2], str(row[3]), props))
    return out


def with_version(strategy: Strategy, version: int) -> Strategy:
    """A copy of ``strategy`` at another version (every live key changes with it)."""
    return replace(strategy, version=version)
