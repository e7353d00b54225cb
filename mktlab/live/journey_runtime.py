"""A journey step by step: a pure, deterministic function of (journey, state, event | timer).

:func:`on_event` and :func:`on_timer` take a user's compact :class:`JourneyState` (or
``None``) and return a :class:`StepResult`: the new state, the effects to execute
(coupons, messages, profile updates, each with an idempotency key), the decisions to
log (with the propensity of every branch drawn) and when to wake the user next. They do
no I/O; what they need to know about the world they ask a :class:`JourneyContext`.

Time is event time: a delay's wake-up is computed from the event's ``ts``; a timer step
runs at the wake-up it was scheduled for, however late it fires, so a live worker and
the simulation (:mod:`mktlab.live.journey_sim`) produce the same keys and decisions.

State lifecycle: ``None`` = the user has never entered (or left a journey with
``reentry: always``: nothing to remember). A state with ``done=True`` = the user has
left and the journey must remember when, to apply ``reentry: never`` / ``after <d>``.
Otherwise the user is at ``node`` (a wait or a delay), with ``wake_at`` set.

Windowed entry triggers (``3 view within 30m``) keep their counts in an
:class:`EntryWindows` — the rules' :class:`~mktlab.rules.online.OnlineEngine`, so there is
one window implementation — and pass the result as ``triggered=``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from mktlab.errors import ValidationError
from mktlab.experiments._hash import N_BUCKETS, hash_buckets
from mktlab.live.journey import (
    CouponNode,
    DelayNode,
    EntryNode,
    ExitNode,
    Journey,
    JourneyError,
    MessageNode,
    RateLimitNode,
    SplitNode,
    UpdateNode,
    WaitNode,
)
from mktlab.live.localtime import next_local as _next_local
from mktlab.live.localtime import zone as _zone
from mktlab.rules.caps import NS
from mktlab.rules.model import AtomicEvent, WindowPattern
from mktlab.rules.semantics import context_value, test_value
from mktlab.strategy.runtime import Effect

# "resume" = the awaited event came; "rate_limit" / "rate_limited" = let through / refused
ACTIONS = ("enter", "split", "coupon", "message", "update", "exit", "wait", "resume", "delay",
           "timeout", "rate_limit", "rate_limited")  # fmt: skip
NO_ARM = 255
_U32 = 2**32 - 1
_FORMAT = 1  # first byte of an encoded state: lets a later layout read old states
_LAYOUT = struct.Struct("<BHHIIIBBf")  # format, version, node, entered, wake, exited, flags, arm, p
_WAITING, _HOLDOUT, _DONE = 1, 2, 4
_F32_TINY = 1.1754943508222875e-38  # smallest normal float32: a product of draws never hits 0


@dataclass(frozen=True, slots=True)
class JourneyState:
    """Where one user is in one journey, in 23 bytes once encoded.

    ``node`` indexes ``journey.nodes``; times are whole epoch seconds (u32); ``arm``
    indexes the journey's drawn branch labels (255 = none); ``propensity`` is the product
    of the probabilities of the branches drawn since entry (stored as float32).
    """

    node: int
    entered_at: int
    wake_at: int = 0
    waiting: bool = False
    holdout: bool = False
    done: bool = False
    arm: int = NO_ARM
    propensity: float = 1.0
    exited_at: int = 0
    version: int = 1

    def __post_init__(self) -> None:
        for name, top in (("node", 65535), ("version", 65535), ("arm", 255), ("entered_at", _U32),
                          ("wake_at", _U32), ("exited_at", _U32)):  # fmt: skip
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= top:
                raise ValidationError(f"state.{name}: expected an integer in [0, {top}], got {v!r}")
        p = self.propensity
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p <= 1:
            raise ValidationError(f"state.propensity: expected a probability in (0, 1], got {p!r}")
        p32 = struct.unpack("<f", struct.pack("<f", float(p)))[0]  # exactly what encode keeps
        object.__setattr__(self, "propensity", max(p32, _F32_TINY))

    @property
    def active(self) -> bool:
        """The user is in the journey (not yet left)."""
        return not self.done

    def encode(self) -> bytes:
        flags = self.waiting * _WAITING | self.holdout * _HOLDOUT | self.done * _DONE
        return _LAYOUT.pack(_FORMAT, self.version, self.node, self.entered_at, self.wake_at,
                            self.exited_at, flags, self.arm, self.propensity)  # fmt: skip

    @classmethod
    def decode(cls, b: bytes) -> JourneyState:
        if len(b) != _LAYOUT.size or b[0] != _FORMAT:
            raise ValidationError(
                f"state: expected {_LAYOUT.size} bytes of format {_FORMAT}, got {len(b)} bytes"
                + (f" of format {b[0]}" if b else "")
            )
        _, version, node, entered, wake, exited, flags, arm, p = _LAYOUT.unpack(b)
        return cls(node, entered, wake, bool(flags & _WAITING), bool(flags & _HOLDOUT),
                   bool(flags & _DONE), arm, p, exited, version)  # fmt: skip


class JourneyContext(Protocol):
    """What a journey asks about the world (see :class:`mktlab.live.journey_sim.SimpleContext`)."""

    def in_audience(self, audience: str, user_id: str) -> bool: ...
    def uplift(self, user_id: str) -> float | None: ...
    def user_tz(self, user_id: str) -> str | None: ...
    def allow_rate(self, key: str, max: int, per: int, now: float) -> bool: ...


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One logged journey decision; ``propensity`` is the probability of the path taken.

    For a split it is the probability of the branch taken (1.0 when deterministic); for
    an action it is the product over the draws since entry, as the sandbox needs.
    """

    journey: str
    version: int
    node_id: str
    user_id: str
    ts: float
    action: str
    arm: str | None = None
    propensity: float = 1.0
    holdout: bool = False
    event_id: str | None = None
    status: str = "ok"  # or rate_limited, or the campaign gate's campaign_paused / not_in_rollout
    reason: str = ""

    def to_row(self) -> dict[str, Any]:
        """The record as a decision-log row (:data:`mktlab.strategy.DECISION_COLUMNS`)."""
        src = self.event_id or f"timer@{int(self.ts)}"
        refused = self.action == "rate_limited"
        return {
            "key": f"{self.journey}:v{self.version}:{self.node_id}:{self.user_id}:{src}:{self.action}",
            "source": self.journey, "version": self.version, "node": self.node_id,
            "user_id": self.user_id, "ts": self.ts, "event_id": self.event_id,
            "action": self.action, "status": "rate_limited" if refused else self.status,
            "reason": "rate_limit" if refused else self.reason, "arm": self.arm,
            "p_treat": 0.0 if self.holdout else 1.0, "propensity": self.propensity,
            "holdout": self.holdout, "uplift": None,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class StepResult:
    """The outcome of one step: ``state`` None or ``state.done`` = not in the journey."""

    state: JourneyState | None
    effects: tuple[Effect, ...] = ()
    decisions: tuple[DecisionRecord, ...] = ()
    wake_at: float | None = None


_NOTHING = StepResult(None)
_ENTRY, _DELAY, _WAIT, _SPLIT, _COUPON, _MESSAGE, _UPDATE, _RATE, _EXIT = range(9)
_KIND = {EntryNode: _ENTRY, DelayNode: _DELAY, WaitNode: _WAIT, SplitNode: _SPLIT,
         CouponNode: _COUPON, MessageNode: _MESSAGE, UpdateNode: _UPDATE, RateLimitNode: _RATE,
         ExitNode: _EXIT}  # fmt: skip


class CompiledJourney:
    """A journey as index arrays and dicts, built once, so a step is a few lookups."""

    def __init__(self, journey: Journey):
        self.journey = journey
        self.name, self.version = journey.name, journey.version
        self.nodes = journey.nodes
        self.index = {n.id: i for i, n in enumerate(journey.nodes)}
        self.kind = [_KIND[type(n)] for n in journey.nodes]
        self.targets = [{k: self.index[t] for k, t in n.targets().items()} for n in journey.nodes]
        entry = journey.entry
        self.entry = entry
        self.entry_index = self.index[entry.id]
        self.windowed = entry.windowed
        t = entry.trigger
        # None = any event may enter (an audience entry without a trigger, or '*')
        self.entry_events: frozenset[str] | None = (
            None if t is None or (isinstance(t, AtomicEvent) and t.type == "*")
            else frozenset([t.type if isinstance(t, AtomicEvent) else t.event])
        )  # fmt: skip
        self.reentry_after = entry.reentry_after
        self.wait_event = [n.event if isinstance(n, WaitNode) else None for n in journey.nodes]
        base = journey.split_salt
        # one salt per split node: two splits of one journey must not pick the same users
        self.salts = [f"{base}:{n.id}" for n in journey.nodes]
        self.arm_names: list[str] = []
        self.arm_of: dict[tuple[int, str], int] = {}
        self.edges: dict[int, tuple[tuple[str, int, float], ...]] = {}
        horizon = 0
        for i, n in enumerate(journey.nodes):
            if isinstance(n, SplitNode) and n.probabilities is not None:
                for label in n.branches:
                    self.arm_of[(i, label)] = len(self.arm_names)
                    self.arm_names.append(label)
                if n.by != "holdout":  # cumulative bucket edges, as experiments assign arms
                    acc, rows = 0.0, []
                    for label, p in n.probabilities.items():
                        acc += p
                        rows.append((label, round(acc * N_BUCKETS), p))
                    self.edges[i] = tuple(rows)
            if isinstance(n, DelayNode):
                horizon += n.max_wait
            elif isinstance(n, WaitNode):
                horizon += n.timeout
        if len(self.arm_names) > NO_ARM:
            raise JourneyError(f"journey {self.name}: more than {NO_ARM} drawn branches")
        self.horizon = horizon  # no acyclic path holds a user longer than this


def compile_journey(journey: Journey | CompiledJourney) -> CompiledJourney:
    """The compiled form of ``journey``, built once and kept on the journey object."""
    if isinstance(journey, CompiledJourney):
        return journey
    cj = journey.__dict__.get("_compiled")
    if cj is None:
        cj = CompiledJourney(journey)
        # a cache on the frozen value object: not a field, so eq/hash/fingerprint ignore it
        object.__setattr__(journey, "_compiled", cj)
    return cj


# ------------------------------------------------------------------------- helpers
def _bucket(user_id: str, salt: str) -> int:
    return int(hash_buckets([user_id], salt)[0])


def _matches(preds: Sequence, props: Mapping, ts: float, user: str, ctx: JourneyContext) -> bool:
    for p in preds:
        ns = p.namespace
        if ns == "audience":
            hit = bool(ctx.in_audience(p.name, user))
            ok = hit if p.op == "member" else not hit
        elif ns == "context":
            ok = test_value(p.op, context_value(p.name, int(ts * NS)), p.value)
        else:
            ok = test_value(p.op, props.get(p.name), p.value)
        if not ok:
            return False
    return True


class _Run:
    """The mutable scratch of one step: where the user is and what was decided."""

    __slots__ = ("arm", "cj", "ctx", "decisions", "effects", "entered", "gate", "holdout", "p",
                 "user")  # fmt: skip

    def __init__(self, cj: CompiledJourney, ctx: JourneyContext, user: str, gate: Any = None):
        self.cj, self.ctx, self.user, self.gate = cj, ctx, user, gate
        self.decisions: list[DecisionRecord] = []
        self.effects: list[Effect] = []
        self.entered, self.arm, self.p, self.holdout = 0, NO_ARM, 1.0, False

    def load(self, st: JourneyState) -> None:
        self.entered, self.arm, self.p, self.holdout = (st.entered_at, st.arm, st.propensity,
                                                         st.holdout)  # fmt: skip

    def record(self, i: int, t: float, action: str, event_id: str | None, *,
               arm: str | None = None, p: float | None = None,
               refused: tuple[str, str] | None = None) -> None:  # fmt: skip
        cj = self.cj
        if arm is None and self.arm != NO_ARM:
            arm = cj.arm_names[self.arm]
        status, reason = refused or ("ok", "")
        self.decisions.append(DecisionRecord(cj.name, cj.version, cj.nodes[i].id, self.user, t,
                                             action, arm, self.p if p is None else p,
                                             self.holdout, event_id, status, reason))  # fmt: skip

    def state(self, i: int, wake: int = 0, *, waiting: bool = False, done: bool = False,
              exited: int = 0) -> JourneyState:  # fmt: skip
        return JourneyState(i, self.entered, wake, waiting, self.holdout, done, self.arm,
                            self.p, exited, self.cj.version)  # fmt: skip

    def result(self, st: JourneyState | None) -> StepResult:
        wake = float(st.wake_at) if st is not None and not st.done and st.wake_at else None
        return StepResult(st, tuple(self.effects), tuple(self.decisions), wake)

    def advance(
        self, i: int, t: float, event_id: str | None, props: Mapping
    ) -> JourneyState | None:
        """Walk from node ``i`` at time ``t`` until the user waits or leaves."""
        cj, ctx, user = self.cj, self.ctx, self.user
        src = event_id or f"timer@{int(t)}"
        for _ in range(len(cj.nodes) + 1):
            node, kind = cj.nodes[i], cj.kind[i]
            if kind == _WAIT:
                self.record(i, t, "wait", event_id)
                wake = math.ceil(t + node.timeout)  # type: ignore[attr-defined]
                return self.state(i, min(wake, _U32), waiting=True)
            if kind == _DELAY:
                self.record(i, t, "delay", event_id)
                wake_t = self._delay_until(node, t, props)  # type: ignore[arg-type]
                if wake_t > t:
                    return self.state(i, min(math.ceil(wake_t), _U32))
                i = cj.targets[i]["next"]
            elif kind == _SPLIT:
                label, p = self._split(i, node, t)  # type: ignore[arg-type]
                self.record(i, t, "split", event_id, arm=label, p=p)
                i = cj.targets[i][label]
            elif kind in (_COUPON, _MESSAGE, _UPDATE):
                action = ("coupon", "message", "update")[kind - _COUPON]
                shut = self._gated(node) if kind != _UPDATE else None
                if shut is not None:  # the campaign is paused, or the user is outside its rollout
                    self.record(i, t, action, event_id, refused=shut)
                    i = cj.targets[i]["next"]
                    continue
                self.record(i, t, action, event_id)
                key = f"{cj.name}:v{cj.version}:{node.id}:{user}:{src}"
                self.effects.append(Effect(action, key, user, node.id, t, self._payload(node)))
                i = cj.targets[i]["next"]
            elif kind == _RATE:
                if ctx.allow_rate(f"{cj.name}:{node.id}", node.max, node.per, t):  # type: ignore[attr-defined]
                    self.record(i, t, "rate_limit", event_id)
                    i = cj.targets[i]["next"]
                    continue
                self.record(i, t, "rate_limited", event_id)
                if "overflow" in cj.targets[i]:
                    i = cj.targets[i]["overflow"]
                    continue
                return self._exit(i, t, event_id)
            elif kind == _EXIT:
                return self._exit(i, t, event_id)
            else:  # _ENTRY cannot be a target: validation forbids it
                raise JourneyError(f"journey {cj.name}: node {node.id}: reached the entry node")
        raise JourneyError(f"journey {cj.name}: user {user} ran more than {len(cj.nodes) + 1} "
                           "nodes in one step (a loop without a wait)")  # fmt: skip

    def _gated(self, node: Any) -> tuple[str, str] | None:
        """The campaign gate's refusal of this coupon / message node for the user, if any."""
        if self.gate is None:
            return None
        campaign = getattr(node, "campaign", None) or self.cj.journey.campaign_id
        return self.gate.refuse(campaign, self.user)

    def _exit(self, i: int, t: float, event_id: str | None) -> JourneyState | None:
        self.record(i, t, "exit", event_id)
        if self.cj.reentry_after == 0:
            return None  # re-entry at once: nothing to remember
        return self.state(i, done=True, exited=min(int(t), _U32))

    def _delay_until(self, node: DelayNode, t: float, props: Mapping) -> float:
        if node.duration is not None:
            return t + node.duration
        zone = None
        for name in (props.get("tz"), self.ctx.user_tz(self.user), node.tz):
            if isinstance(name, str) and name and (zone := _zone(name)) is not None:
                break
        return _next_local(t, node.window, zone or ZoneInfo("UTC"))  # type: ignore[arg-type]

    def _split(self, i: int, node: SplitNode, t: float) -> tuple[str, float]:
        cj, user = self.cj, self.user
        if node.by == "audience":
            return ("yes" if self.ctx.in_audience(node.audience, user) else "no"), 1.0  # type: ignore[arg-type]
        if node.by == "uplift":
            u = self.ctx.uplift(user)
            ok = u is not None and math.isfinite(u) and u >= node.threshold  # type: ignore[operator]
            return ("yes" if ok else "no"), 1.0
        if node.by == "holdout":
            frac = float(node.fraction)  # type: ignore[arg-type]
            held = _bucket(user, cj.salts[i]) < round(frac * N_BUCKETS)
            label, p = ("holdout", frac) if held else ("treated", 1.0 - frac)
            self.holdout = self.holdout or held
        else:
            # an experiment arm is sticky per user; a random draw is fresh at each visit
            unit = user if node.by == "experiment" else f"{user}@{int(t)}"
            b = _bucket(unit, cj.salts[i])
            label, p = cj.edges[i][-1][0], cj.edges[i][-1][2]
            for lab, edge, q in cj.edges[i]:
                if b < edge:
                    label, p = lab, q
                    break
        self.arm = cj.arm_of[(i, label)]
        self.p *= p
        return label, p

    def _payload(self, node: Any) -> dict[str, Any]:
        cj = self.cj
        if isinstance(node, CouponNode):
            d: dict[str, Any] = {"campaign": node.campaign or cj.journey.campaign_id}
            return d | ({"value": node.value} if node.value is not None else {})
        if isinstance(node, MessageNode):
            return {"template": node.template, "channels": list(node.channels),
                    "campaign_id": cj.journey.campaign_id}  # fmt: skip
        d = {"set": dict(node.set_fields)} if node.set_fields else {}
        return d | ({"tag": dict(node.tags)} if node.tags else {})


# --------------------------------------------------------------------------- steps
def _timer(run: _Run, st: JourneyState) -> JourneyState | None:
    cj, t = run.cj, float(st.wake_at)
    run.load(st)
    i = st.node
    if cj.kind[i] == _WAIT:
        run.record(i, t, "timeout", None)
        return run.advance(cj.targets[i]["on_timeout"], t, None, {})
    return run.advance(cj.targets[i]["next"], t, None, {})


def _check_version(cj: CompiledJourney, st: JourneyState) -> None:
    if st.version != cj.version:
        raise JourneyError(f"journey {cj.name}: state of version {st.version} given to version "
                           f"{cj.version}; migrate or finish the old version's users")  # fmt: skip
    if st.node >= len(cj.nodes) or cj.kind[st.node] not in (_WAIT, _DELAY):
        raise JourneyError(f"journey {cj.name}: state at node #{st.node}, not a wait or delay")


def on_event(
    journey: Journey | CompiledJourney,
    state: JourneyState | None,
    event: Any,
    ctx: JourneyContext,
    *,
    triggered: bool | None = None,
    gate: Any = None,
) -> StepResult:
    """Advance one user through ``journey`` on one event.

    Parameters
    ----------
    journey : Journey or CompiledJourney
    state : JourneyState or None
        The user's state in this journey (``None`` if never entered).
    event : object
        With ``event_id``, ``user_id``, ``ts`` (epoch seconds), ``event`` and ``props``
        (e.g. :class:`mktlab.live.events.Event`).
    ctx : JourneyContext
    triggered : bool, optional
        Whether the journey's windowed entry trigger fired on this event (from
        :class:`EntryWindows`); required for such journeys, ignored otherwise.
    gate : CampaignStates, optional
        The campaign lifecycle's published states (:mod:`mktlab.campaigns.rollout`): a
        user outside the rollout of the journey's campaign does not enter, and while the
        campaign is paused its coupon and message nodes act for nobody (logged with the
        gate's status; the user walks on).

    Returns
    -------
    StepResult
        A timer overdue at ``event.ts`` fires first, as it would have in time order.
    """
    cj = journey if isinstance(journey, CompiledJourney) else compile_journey(journey)
    etype = event.event
    if state is None or state.done:
        if cj.entry_events is not None and etype not in cj.entry_events:
            return _NOTHING if state is None else StepResult(state)  # one set lookup
        run = _Run(cj, ctx, event.user_id, gate)
        return run.result(_enter(run, state, event, triggered))
    _check_version(cj, state)
    ts = event.ts
    overdue = 0 < state.wake_at <= ts
    if not overdue and not (state.waiting and etype == cj.wait_event[state.node]):
        return StepResult(state, (), (), float(state.wake_at) if state.wake_at else None)
    run = _Run(cj, ctx, event.user_id, gate)
    st = state
    if overdue:
        after = _timer(run, state)
        if after is None or after.done:
            if cj.entry_events is None or etype in cj.entry_events:
                after = _enter(run, after, event, triggered)
            return run.result(after)
        st = after
    if st.waiting and etype == cj.wait_event[st.node]:
        props = event.props or {}
        node = cj.nodes[st.node]
        if _matches(node.where, props, ts, run.user, ctx):  # type: ignore[attr-defined]
            run.load(st)
            run.record(st.node, ts, "resume", event.event_id)
            return run.result(
                run.advance(cj.targets[st.node]["on_event"], ts, event.event_id, props)
            )
    return run.result(st)


def _enter(run: _Run, state: JourneyState | None, event: Any, triggered: bool | None):
    cj, entry, ts = run.cj, run.cj.entry, event.ts
    if state is not None:  # left earlier: may they come back?
        after = cj.reentry_after
        if after is None or ts < state.exited_at + after:
            return state
    if cj.windowed:
        if triggered is None:
            raise JourneyError(f"journey {cj.name}: node {entry.id}: a windowed entry trigger "
                               "needs triggered= (count windows with EntryWindows)")  # fmt: skip
        if not triggered:
            return state
    props = event.props or {}
    if entry.audience is not None and not run.ctx.in_audience(entry.audience, run.user):
        return state
    if entry.where and not _matches(entry.where, props, ts, run.user, run.ctx):
        return state
    if run.gate is not None and run.gate.refuse(cj.journey.campaign_id, run.user) is not None:
        return state  # the journey's campaign is paused, or the user is outside its rollout
    run.entered, run.arm, run.p, run.holdout = min(int(ts), _U32), NO_ARM, 1.0, False
    run.record(cj.entry_index, ts, "enter", event.event_id)
    return run.advance(cj.targets[cj.entry_index]["next"], ts, event.event_id, props)


def on_timer(
    journey: Journey | CompiledJourney,
    state: JourneyState | None,
    now: float,
    ctx: JourneyContext,
    *,
    user_id: str,
    gate: Any = None,
) -> StepResult:
    """Wake ``user_id`` if their ``wake_at`` has come (a no-op before it, or once they left).

    The step runs at the scheduled ``state.wake_at``, not at ``now``, so a late timer
    gives the same decisions and effect keys as a punctual one. ``user_id`` is not in
    the compact state; the timer store keeps it (it keys the state).
    """
    if state is None or state.done or not state.wake_at or now < state.wake_at:
        wake = (
            float(state.wake_at) if state is not None and not state.done and state.wake_at else None
        )
        return StepResult(state, (), (), wake)
    cj = journey if isinstance(journey, CompiledJourney) else compile_journey(journey)
    _check_version(cj, state)
    run = _Run(cj, ctx, user_id, gate)
    return run.result(_timer(run, state))


class EntryWindows:
    """Counts the windowed entry triggers of several journeys with the rules' engine.

    Feed *every* event, in per-user time order, to :meth:`observe`: an event that only
    matters to the window (a ``view``, or the ``absent`` type) must still be counted.

    Parameters
    ----------
    journeys : sequence of Journey
        Those with a windowed entry trigger are tracked; names must be unique.
    """

    def __init__(self, journeys: Sequence[Journey | CompiledJourney]):
        from mktlab.rules.compiler import compile_rules
        from mktlab.rules.model import Rule, RuleSet, SetLifecycle
        from mktlab.rules.online import OnlineEngine

        rules: list[Rule] = []
        types: set[str] = set()
        self.names: dict[str, str] = {}
        for k, j in enumerate(journeys):
            cj = compile_journey(j)
            if not cj.windowed:
                continue
            if cj.name in self.names.values():
                raise ValidationError(f"journeys: {cj.name!r} is listed twice")
            t = cj.entry.trigger
            assert isinstance(t, WindowPattern)  # cj.windowed
            # a marker action: the engine reports fired rules through their actions
            rules.append(Rule(id=f"j{k}", when=t, actions=(SetLifecycle("entered"),)))
            self.names[f"j{k}"] = cj.name
            types |= {t.event} | ({t.absent} if t.absent else set())
        self.event_types = frozenset(types)
        net = (
            compile_rules(RuleSet("journey-entries", tuple(rules)), check=False) if rules else None
        )
        self._engine = OnlineEngine(net, order="per_user") if net is not None else None

    def observe(self, event: Any) -> frozenset[str]:
        """Count ``event``; return the names of the journeys whose trigger it completes."""
        if self._engine is None or event.event not in self.event_types:
            return frozenset()
        row = dict(event.props or {})
        row.update(user_id=event.user_id, ts=round(event.ts * NS), event=event.event)
        return frozenset(self.names[d.rule_id] for d in self._engine.process(row))

    engine = property(
        lambda self: self._engine, doc="The rules' OnlineEngine counting the windows (or None)."
    )

    def snapshot(self) -> bytes:
        """The window counts as bytes (a worker checkpoint); see :meth:`restore`."""
        return self._engine.snapshot() if self._engine is not None else b""

    def restore(self, data: bytes) -> None:
        if self._engine is not None and data:
            self._engine.restore(data)
