"""Rule governance: validation, conflict detection and versioning.

:func:`validate` checks a :class:`~mktlab.rules.model.RuleSet` against a
:class:`FieldSchema` (unknown fields, type errors, unknown event types / audiences,
unreachable rules) and raises one :class:`RuleValidationError` listing every problem.
:func:`find_conflicts` reports rules that would stack coupons on the same event and
rules that contradict a frequency cap. :class:`RuleRegistry` stores versions on disk.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mktlab.errors import NotFoundError, ValidationError
from mktlab.rules.model import (
    ALL_CHANNELS,
    ANY_EVENT,
    CONTEXT_FIELDS,
    ORDER_OPS,
    AtomicEvent,
    Predicate,
    Rule,
    RuleSet,
    WindowPattern,
)

KINDS = ("num", "str", "bool", "time")


class RuleValidationError(ValidationError):
    """One or more rules failed validation; ``problems`` lists them."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(f"{len(problems)} rule problem(s):\n  - " + "\n  - ".join(problems))


@dataclass
class FieldSchema:
    """The fields rules may use and their kinds (``num``, ``str``, ``bool``, ``time``).

    ``event_types`` / ``audiences`` of ``None`` mean "not known, do not check".
    """

    event: dict[str, str] = field(default_factory=dict)
    profile: dict[str, str] = field(default_factory=dict)
    event_types: set[str] | None = None
    audiences: set[str] | None = None

    def __post_init__(self) -> None:
        for ns in ("event", "profile"):
            for name, kind in getattr(self, ns).items():
                if kind not in KINDS:
                    raise ValidationError(f"schema {ns}.{name}: kind {kind!r} not in {KINDS}")

    @staticmethod
    def kind_of(dtype) -> str:
        import pandas as pd

        if pd.api.types.is_bool_dtype(dtype):
            return "bool"
        if pd.api.types.is_numeric_dtype(dtype):
            return "num"
        if pd.api.types.is_datetime64_any_dtype(dtype):
            return "time"
        return "str"

    @classmethod
    def from_frames(
        cls,
        events=None,
        profiles=None,
        *,
        event_col: str = "event",
        audiences: Iterable[str] | None = None,
    ) -> FieldSchema:
        """Infer a schema from an events DataFrame (and optionally a profiles DataFrame)."""
        ev = {} if events is None else {c: cls.kind_of(t) for c, t in events.dtypes.items()}
        pr = {} if profiles is None else {c: cls.kind_of(t) for c, t in profiles.dtypes.items()}
        types = None
        if events is not None and event_col in events.columns:
            types = {str(v) for v in events[event_col].dropna().unique()}
        return cls(ev, pr, types, None if audiences is None else set(audiences))

    def lookup(self, p: Predicate) -> str | None:
        ns, name = p.namespace, p.name
        if ns == "context":
            return CONTEXT_FIELDS.get(name)
        if ns == "audience":
            return "bool"
        return getattr(self, ns).get(name)


# ------------------------------------------------------------------ satisfiability
def _is_num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _type_ok(kind: str, v) -> bool:
    if kind == "num":
        return _is_num(v)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "str":
        return isinstance(v, str)
    return True  # time: compared as given


class _Domain:
    """The values a field may still take under a conjunction of predicates."""

    def __init__(self) -> None:
        self.lo, self.lo_open = -math.inf, False
        self.hi, self.hi_open = math.inf, False
        self.allowed: set | None = None
        self.excluded: set = set()
        self.null: bool | None = None  # True: must be null; False: must not be null
        self.dead = False

    def add(self, p: Predicate) -> None:
        op, v = p.op, p.value
        if op == "is_null":
            if self.null is False:
                self.dead = True
            self.null = True
            return
        if self.null is True:
            self.dead = True
        self.null = False
        if op in ("==", "member"):
            vals = {v} if op == "==" else {True}
            self.allowed = vals if self.allowed is None else self.allowed & vals
        elif op == "not_member":
            self.allowed = {False} if self.allowed is None else self.allowed & {False}
        elif op == "in":
            self.allowed = set(v) if self.allowed is None else self.allowed & set(v)
        elif op == "!=":
            self.excluded.add(v)
        elif op == "not_in":
            self.excluded |= set(v)
        elif op in ("<", "<="):
            self._upper(v, op == "<")
        elif op in (">", ">="):
            self._lower(v, op == ">")
        elif op == "between":
            self._lower(v[0], False)
            self._upper(v[1], False)

    def _upper(self, v, strict: bool) -> None:
        if not _is_num(v):
            return  # a type error, reported by validation; no range to reason about
        if v < self.hi or (v == self.hi and strict):
            self.hi, self.hi_open = v, strict

    def _lower(self, v, strict: bool) -> None:
        if not _is_num(v):
            return
        if v > self.lo or (v == self.lo and strict):
            self.lo, self.lo_open = v, strict

    def _in_range(self, x) -> bool:
        if not _is_num(x) and (self.lo != -math.inf or self.hi != math.inf):
            return False
        lo_ok = self.lo == -math.inf or (x > self.lo if self.lo_open else x >= self.lo)
        hi_ok = self.hi == math.inf or (x < self.hi if self.hi_open else x <= self.hi)
        return lo_ok and hi_ok

    def empty(self, integer: bool = False) -> bool:
        if self.dead:
            return True
        if self.null is True:
            return False  # only is_null: satisfiable by a missing value
        if self.allowed is not None:
            return not any(self._in_range(x) and x not in self.excluded for x in self.allowed)
        if self.lo == -math.inf or self.hi == math.inf:
            return False
        if self.lo > self.hi or (self.lo == self.hi and (self.lo_open or self.hi_open)):
            return True
        if integer:
            lo = (
                math.floor(self.lo) + 1
                if self.lo_open or self.lo != math.floor(self.lo)
                else self.lo
            )
            hi = (
                math.ceil(self.hi) - 1 if self.hi_open or self.hi != math.ceil(self.hi) else self.hi
            )
            return (
                lo > hi or all(x in self.excluded for x in range(int(lo), int(hi) + 1))
                if hi - lo < 50
                else False
            )
        return self.lo == self.hi and self.lo in self.excluded


def _trigger_preds(rule: Rule) -> list[Predicate]:
    t = rule.when
    ev = t.type if isinstance(t, AtomicEvent) else t.event
    return [] if ev == ANY_EVENT else [Predicate("event.event", "==", ev)]


def satisfiable(predicates: Iterable[Predicate]) -> bool:
    """Can some event satisfy every predicate at once? (conservative: True when unsure)."""
    domains: dict[str, _Domain] = {}
    for p in predicates:
        domains.setdefault(p.field, _Domain()).add(p)
    return not any(
        d.empty(integer=f in ("context.hour", "context.weekday", "context.minute_of_day"))
        for f, d in domains.items()
    )


_CONTEXT_RANGE = {"hour": (0, 23), "weekday": (0, 6), "minute_of_day": (0, 1439)}


def _reachability_preds(rule: Rule) -> list[Predicate]:
    preds = list(rule.conditions) + _trigger_preds(rule)
    for p in rule.conditions:
        if p.namespace == "context" and p.name in _CONTEXT_RANGE:
            preds.append(Predicate(p.field, "between", _CONTEXT_RANGE[p.name]))
    return preds


# ---------------------------------------------------------------------- validation
def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_predicate(p: Predicate, schema: FieldSchema, where: str) -> list[str]:
    """Problems with one predicate under ``schema`` (empty list when fine)."""
    out: list[str] = []
    if p.namespace == "audience":
        if schema.audiences is not None and p.name not in schema.audiences:
            out.append(f"{where}: unknown audience {p.name!r}{_suggest(p.name, schema.audiences)}")
        return out
    kind = schema.lookup(p)
    if kind is None:
        names = CONTEXT_FIELDS if p.namespace == "context" else getattr(schema, p.namespace)
        out.append(f"{where}: unknown field {p.field!r}{_suggest(p.name, names)}")
        return out
    if p.op in ("is_null", "not_null"):
        return out
    if p.op in ORDER_OPS and kind in ("str", "bool"):
        out.append(f"{where}: {p.field} is {kind}; op {p.op!r} needs a number")
        return out
    values = p.value if isinstance(p.value, tuple) else (p.value,)
    bad = [v for v in values if not _type_ok(kind, v)]
    if bad:
        out.append(f"{where}: {p.field} is {kind} but got {bad[0]!r} ({type(bad[0]).__name__})")
    if p.op == "between" and not bad and values[0] > values[1]:
        out.append(f"{where}: {p.field} between {values[0]!r} and {values[1]!r}: low > high")
    return out


def problems(ruleset: RuleSet, schema: FieldSchema | None = None) -> list[str]:
    """Every validation problem of ``ruleset`` as text (empty when it is valid)."""
    out: list[str] = []
    seen: set[str] = set()
    for r in ruleset.rules:
        where = f"rule {r.id!r}"
        if r.id in seen:
            out.append(f"{where}: duplicate rule id")
        seen.add(r.id)
        if not r.actions:
            out.append(f"{where}: has no actions")
        if schema is not None:
            t = r.when
            types = (
                [t.type]
                if isinstance(t, AtomicEvent)
                else [t.event] + ([t.absent] if t.absent else [])
            )
            for ev in types:
                if (
                    ev != ANY_EVENT
                    and schema.event_types is not None
                    and ev not in schema.event_types
                ):
                    out.append(
                        f"{where}: unknown event type {ev!r}{_suggest(ev, schema.event_types)}"
                    )
            if isinstance(t, WindowPattern):
                for s in t.same:
                    if s not in schema.event:
                        out.append(
                            f"{where}: pattern.same: unknown event field {s!r}{_suggest(s, schema.event)}"
                        )
            for i, p in enumerate(r.conditions):
                out += check_predicate(p, schema, f"{where}.if[{i}]")
        if r.enabled and not satisfiable(_reachability_preds(r)):
            conds = " and ".join(str(p) for p in _reachability_preds(r)[: len(r.conditions) + 1])
            out.append(f"{where}: unreachable: no event can satisfy {conds}")
    return out


def validate(ruleset: RuleSet, schema: FieldSchema | None = None) -> RuleSet:
    """Return ``ruleset`` if valid, else raise :class:`RuleValidationError` listing problems."""
    found = problems(ruleset, schema)
    if found:
        raise RuleValidationError(found)
    return ruleset


# ------------------------------------------------------------------------ conflicts
@dataclass(frozen=True)
class Conflict:
    """A governance finding: ``kind`` is ``coupon_stacking`` or ``cap_contradiction``."""

    kind: str
    rules: tuple[str, ...]
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {', '.join(self.rules)}: {self.detail}"


def _co_fire(a: Rule, b: Rule) -> bool:
    """Can ``a`` and ``b`` fire on the same event? (conservative: True when unsure)."""
    return satisfiable(_reachability_preds(a) + _reachability_preds(b))


def find_conflicts(ruleset: RuleSet) -> list[Conflict]:
    """Coupon-stacking pairs and rules that contradict a frequency cap.

    Stacking: two enabled rules that each issue a coupon and can fire on the same
    event. Cap contradiction: a rule whose single firing issues more actions on a
    channel than a cap on that channel ever allows.
    """
    out: list[Conflict] = []
    rules = ruleset.active_rules
    coupon_rules = [r for r in rules if r.issues_coupon]
    for i, a in enumerate(coupon_rules):
        for b in coupon_rules[i + 1 :]:
            if _co_fire(a, b):
                n = ruleset.max_coupons_per_event
                out.append(
                    Conflict(
                        "coupon_stacking",
                        (a.id, b.id),
                        f"both issue a coupon on the same event; at run time at most {n} coupon(s) "
                        f"per event are issued, by priority ({a.id!r} first)",
                    )
                )
    for r in rules:
        for c in ruleset.caps:
            k = sum(c.applies_to(a.channel) for a in r.actions)
            if k > c.max:
                out.append(
                    Conflict(
                        "cap_contradiction",
                        (r.id,),
                        f"one firing sends {k} action(s) counted by cap {c}; "
                        f"{k - c.max} of them will always be blocked",
                    )
                )
    for i, c1 in enumerate(ruleset.caps):
        for c2 in ruleset.caps[i + 1 :]:
            if c1.channel == c2.channel and c1.per == c2.per and c1.max != c2.max:
                out.append(
                    Conflict(
                        "cap_contradiction",
                        (),
                        f"caps {c1} and {c2} disagree on the same channel and window",
                    )
                )
    return out


# ----------------------------------------------------------------------- versioning
def diff(old: RuleSet, new: RuleSet) -> dict[str, list[str]]:
    """Rule ids added, removed and changed from ``old`` to ``new`` (plus cap changes)."""
    a = {r.id: r.to_dict() for r in old.rules}
    b = {r.id: r.to_dict() for r in new.rules}
    return {
        "added": sorted(set(b) - set(a)),
        "removed": sorted(set(a) - set(b)),
        "changed": sorted(k for k in set(a) & set(b) if a[k] != b[k]),
        "caps_changed": []
        if [c.to_dict() for c in old.caps] == [c.to_dict() for c in new.caps]
        else ["caps"],
    }


class RuleRegistry:
    """Versioned rule sets on disk: ``<root>/<name>/v<version>.yaml``, written atomically.

    A version, once saved, is immutable: saving different content under an existing
    version raises; saving identical content is a no-op. :meth:`save` with
    ``version=None`` assigns the next version number when the content changed.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def versions(self, name: str) -> list[int]:
        d = self.root / name
        return (
            sorted(int(p.stem[1:]) for p in d.glob("v*.yaml") if p.stem[1:].isdigit())
            if d.is_dir()
            else []
        )

    def load(self, name: str, version: int | None = None) -> RuleSet:
        vs = self.versions(name)
        if not vs:
            raise NotFoundError(f"no rule set {name!r} under {self.root}")
        v = vs[-1] if version is None else version
        if v not in vs:
            raise NotFoundError(f"rule set {name!r} has no version {v}; versions: {vs}")
        return RuleSet.from_yaml(self.root / name / f"v{v}.yaml")

    def save(self, ruleset: RuleSet, *, bump: bool = True) -> RuleSet:
        """Save ``ruleset``; with ``bump`` a changed ruleset gets the next free version."""
        from dataclasses import replace

        from mktlab.io import write_text

        vs = self.versions(ruleset.name)
        if vs:
            latest = self.load(ruleset.name)
            if latest.fingerprint == ruleset.fingerprint:
                return latest
            if bump:
                ruleset = replace(ruleset, version=max(vs[-1] + 1, ruleset.version))
            elif ruleset.version in vs:
                raise ValidationError(
                    f"rule set {ruleset.name!r} version {ruleset.version} already exists with other content"
                )
        write_text(ruleset.to_yaml(), self.root / ruleset.name / f"v{ruleset.version}.yaml")
        return ruleset


__all__ = [
    "ALL_CHANNELS",
    "Conflict",
    "FieldSchema",
    "RuleRegistry",
    "RuleValidationError",
    "diff",
    "find_conflicts",
    "problems",
    "satisfiable",
    "validate",
]
