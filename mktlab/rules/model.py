"""ECA rules declared as data: events, conditions, actions, caps and rule sets.

A rule reads *when* (an :class:`AtomicEvent` or a windowed :class:`WindowPattern`),
*if* (a conjunction of :class:`Predicate`) and *then* (a list of actions). Everything is
a frozen dataclass validated in ``__post_init__`` and round-trips through plain dicts /
YAML, so strategies are data that can be diffed, versioned and reviewed.

Example YAML::

    name: browse-rescue
    version: 2
    caps:
      - {channel: push, max: 1, per: 1d}
      - {channel: "*", max: 3, per: 7d}
    rules:
      - id: browse_abandon
        when: {pattern: {event: view, count: 3, within: 30m, same: [category], absent: order}}
        if:
          - {field: profile.tier_level, op: ">=", value: 2}
          - {field: context.hour, op: between, value: [9, 21]}
          - {audience: active_buyers}
        then:
          - {send_message: {channel: push, template: browse_reminder}}
          - {issue_coupon: {coupon: C10, value: 10}}
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mktlab.errors import ValidationError

OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not_in", "between", "is_null", "not_null",
       "member", "not_member")  # fmt: skip
ORDER_OPS = ("<", "<=", ">", ">=", "between")
NAMESPACES = ("event", "profile", "context", "audience")
CONTEXT_FIELDS = {"hour": "num", "weekday": "num", "minute_of_day": "num", "is_weekend": "bool"}
ANY_EVENT = "*"
ALL_CHANNELS = "*"
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
Scalar = int | float | str | bool


def parse_duration(value: Any, *, what: str = "duration") -> int:
    """Seconds in a duration such as ``"30m"``, ``"1d"``, ``"7d"`` or an int of seconds.

    Raises
    ------
    ValidationError
        The value is not a positive duration.
    """
    if isinstance(value, bool):
        raise ValidationError(f"{what}: expected a duration like '30m' or '7d', got {value!r}")
    if isinstance(value, int):
        seconds = value
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValidationError(
                f"{what}: expected a duration like '45s', '30m', '2h', '1d', '1w', got {value!r}"
            )
        seconds = int(m.group(1)) * _UNIT[m.group(2)]
    if seconds <= 0:
        raise ValidationError(f"{what}: must be positive, got {value!r}")
    return seconds


def format_duration(seconds: int) -> str:
    """The shortest exact text form of ``seconds`` (``86400 -> '1d'``)."""
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNIT[unit] == 0:
            return f"{seconds // _UNIT[unit]}{unit}"
    return f"{seconds}s"


# --------------------------------------------------------------------------- events
@dataclass(frozen=True)
class AtomicEvent:
    """Fires on every event of type ``type`` (``"*"`` = any event)."""

    type: str

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or not self.type:
            raise ValidationError(f"when.event: expected a non-empty event type, got {self.type!r}")

    @property
    def key(self) -> tuple:
        return ("event", self.type)

    def to_dict(self) -> dict:
        return {"event": self.type}


@dataclass(frozen=True)
class WindowPattern:
    """``count`` events of type ``event`` by the same user within ``within`` seconds.

    ``same`` lists event fields that must be equal across those events (e.g. the same
    ``category``); ``absent`` names an event type the user must *not* have produced in
    the same window. The pattern fires on the event that completes it (and on each later
    matching event while it still holds; frequency caps de-duplicate). The window of an
    event at time ``t`` is ``(t - within, t]`` over events that arrived before it.
    """

    event: str
    count: int
    within: int
    same: tuple[str, ...] = ()
    absent: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.event, str) or not self.event or self.event == ANY_EVENT:
            raise ValidationError(f"pattern.event: expected an event type, got {self.event!r}")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValidationError(f"pattern.count: expected an integer >= 1, got {self.count!r}")
        object.__setattr__(self, "within", parse_duration(self.within, what="pattern.within"))
        same = (self.same,) if isinstance(self.same, str) else tuple(self.same or ())
        for s in same:
            if not isinstance(s, str) or not s:
                raise ValidationError(
                    f"pattern.same: expected event field names, got {self.same!r}"
                )
        object.__setattr__(self, "same", tuple(s.removeprefix("event.") for s in same))
        if self.absent is not None and (
            not isinstance(self.absent, str) or self.absent == self.event
        ):
            raise ValidationError(
                f"pattern.absent: expected an event type other than {self.event!r}, got {self.absent!r}"
            )

    @property
    def key(self) -> tuple:
        return ("pattern", self.event, self.count, self.within, self.same, self.absent)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {
            "event": self.event,
            "count": self.count,
            "within": format_duration(self.within),
        }
        if self.same:
            d["same"] = list(self.same)
        if self.absent:
            d["absent"] = self.absent
        return {"pattern": d}


Trigger = AtomicEvent | WindowPattern


def trigger_from_dict(d: Any, *, where: str) -> Trigger:
    if isinstance(d, str):
        return AtomicEvent(d)
    if not isinstance(d, dict) or len(d) != 1 or next(iter(d)) not in ("event", "pattern"):
        raise ValidationError(
            f"{where}.when: expected {{event: TYPE}} or {{pattern: {{...}}}}, got {d!r}"
        )
    if "event" in d:
        return AtomicEvent(d["event"])
    p = d["pattern"]
    if not isinstance(p, dict):
        raise ValidationError(f"{where}.when.pattern: expected a mapping, got {p!r}")
    unknown = set(p) - {"event", "count", "within", "same", "absent"}
    if unknown:
        raise ValidationError(f"{where}.when.pattern: unknown key(s) {sorted(unknown)}")
    try:
        return WindowPattern(
            p.get("event", ""),
            p.get("count", 1),
            p.get("within", ""),
            p.get("same", ()),
            p.get("absent"),
        )
    except ValidationError as exc:
        raise ValidationError(f"{where}: {exc}") from None


# ----------------------------------------------------------------------- conditions
@dataclass(frozen=True)
class Predicate:
    """``field op value``: one test of an event field, profile tag, context or audience.

    ``field`` is namespaced: ``event.amount``, ``profile.tier``, ``context.hour``, or
    ``audience.<name>`` with op ``member`` / ``not_member``. Comparisons with a missing
    value are false (except ``is_null``), as in SQL.
    """

    field: str
    op: str
    value: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.field, str) or "." not in self.field:
            raise ValidationError(
                f"field: expected 'namespace.name' (e.g. event.amount), got {self.field!r}"
            )
        ns, name = self.field.split(".", 1)
        if ns not in NAMESPACES or not name:
            raise ValidationError(f"field {self.field!r}: namespace must be one of {NAMESPACES}")
        if self.op not in OPS:
            raise ValidationError(f"{self.field}: unknown op {self.op!r}; expected one of {OPS}")
        if (ns == "audience") != (self.op in ("member", "not_member")):
            raise ValidationError(
                f"{self.field}: ops member/not_member go with audience.<name> and only there"
            )
        v = self.value
        if self.op in ("in", "not_in"):
            if not isinstance(v, list | tuple | set | frozenset) or not v:
                raise ValidationError(
                    f"{self.field} {self.op}: expected a non-empty list, got {v!r}"
                )
            object.__setattr__(self, "value", tuple(sorted(set(v), key=repr)))
        elif self.op == "between":
            if not isinstance(v, list | tuple) or len(v) != 2:
                raise ValidationError(f"{self.field} between: expected [low, high], got {v!r}")
            object.__setattr__(self, "value", tuple(v))
        elif self.op in ("is_null", "not_null", "member", "not_member"):
            object.__setattr__(self, "value", None)
        elif v is None or isinstance(v, list | tuple | dict | set):
            raise ValidationError(f"{self.field} {self.op}: expected a scalar value, got {v!r}")

    @property
    def namespace(self) -> str:
        return self.field.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.field.split(".", 1)[1]

    @property
    def key(self) -> tuple:
        return (self.field, self.op, self.value)

    def __str__(self) -> str:
        if self.op in ("is_null", "not_null", "member", "not_member"):
            return f"{self.field} {self.op}"
        return f"{self.field} {self.op} {self.value!r}"

    def to_dict(self) -> dict:
        if self.namespace == "audience":
            d: dict[str, Any] = {"audience": self.name}
            if self.op == "not_member":
                d["negate"] = True
            return d
        d = {"field": self.field, "op": self.op}
        if self.op not in ("is_null", "not_null"):
            d["value"] = list(self.value) if isinstance(self.value, tuple) else self.value
        return d


def predicate_from_dict(d: Any, *, where: str) -> Predicate:
    if not isinstance(d, dict):
        raise ValidationError(
            f"{where}: expected a mapping like {{field: event.amount, op: '>', value: 100}}, got {d!r}"
        )
    if "audience" in d:
        unknown = set(d) - {"audience", "negate"}
        if unknown:
            raise ValidationError(f"{where}: unknown key(s) {sorted(unknown)}")
        op = "not_member" if d.get("negate") else "member"
        return Predicate(f"audience.{d['audience']}", op)
    unknown = set(d) - {"field", "op", "value"}
    if unknown:
        raise ValidationError(f"{where}: unknown key(s) {sorted(unknown)}")
    try:
        return Predicate(d.get("field", ""), d.get("op", "=="), d.get("value"))
    except ValidationError as exc:
        raise ValidationError(f"{where}: {exc}") from None


# -------------------------------------------------------------------------- actions
@dataclass(frozen=True)
class IssueCoupon:
    """Issue coupon ``coupon`` worth ``value`` (face value) through ``channel``."""

    coupon: str
    value: float = 0.0
    channel: str = "coupon"
    kind: str = field(default="issue_coupon", init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.coupon, str) or not self.coupon:
            raise ValidationError(f"issue_coupon.coupon: expected a coupon id, got {self.coupon!r}")
        if (
            isinstance(self.value, bool)
            or not isinstance(self.value, int | float)
            or self.value < 0
        ):
            raise ValidationError(f"issue_coupon.value: expected a number >= 0, got {self.value!r}")
        object.__setattr__(self, "value", float(self.value))

    def to_dict(self) -> dict:
        return {
            "issue_coupon": {"coupon": self.coupon, "value": self.value, "channel": self.channel}
        }


@dataclass(frozen=True)
class SendMessage:
    """Send ``template`` on ``channel`` (push, sms, email, ...)."""

    channel: str
    template: str = ""
    kind: str = field(default="send_message", init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.channel, str) or not self.channel or self.channel == ALL_CHANNELS:
            raise ValidationError(
                f"send_message.channel: expected a channel name, got {self.channel!r}"
            )

    def to_dict(self) -> dict:
        return {"send_message": {"channel": self.channel, "template": self.template}}


@dataclass(frozen=True)
class SetLifecycle:
    """Move the user to lifecycle ``state`` (not capped: it touches nobody)."""

    state: str
    kind: str = field(default="set_lifecycle", init=False)

    @property
    def channel(self) -> None:
        return None

    def __post_init__(self) -> None:
        if not isinstance(self.state, str) or not self.state:
            raise ValidationError(f"set_lifecycle.state: expected a state name, got {self.state!r}")

    def to_dict(self) -> dict:
        return {"set_lifecycle": {"state": self.state}}


Action = IssueCoupon | SendMessage | SetLifecycle
_ACTIONS = {"issue_coupon": IssueCoupon, "send_message": SendMessage, "set_lifecycle": SetLifecycle}


def action_from_dict(d: Any, *, where: str) -> Action:
    if not isinstance(d, dict) or len(d) != 1 or next(iter(d)) not in _ACTIONS:
        raise ValidationError(
            f"{where}: expected one of {{{', '.join(_ACTIONS)}: {{...}}}}, got {d!r}"
        )
    kind, args = next(iter(d.items()))
    if not isinstance(args, dict):
        raise ValidationError(f"{where}.{kind}: expected a mapping of arguments, got {args!r}")
    try:
        return _ACTIONS[kind](**args)
    except TypeError as exc:
        raise ValidationError(f"{where}.{kind}: {exc}") from None


# ----------------------------------------------------------------------------- caps
@dataclass(frozen=True)
class FrequencyCap:
    """At most ``max`` actions per user on ``channel`` in any window of ``per`` seconds.

    ``channel="*"`` caps every touch (messages and coupons) together. An action at time
    ``t`` is allowed when fewer than ``max`` allowed actions fall in ``(t - per, t]``.
    """

    channel: str
    max: int
    per: int

    def __post_init__(self) -> None:
        if not isinstance(self.channel, str) or not self.channel:
            raise ValidationError(
                f"cap.channel: expected a channel name or '*', got {self.channel!r}"
            )
        if isinstance(self.max, bool) or not isinstance(self.max, int) or self.max < 0:
            raise ValidationError(f"cap.max: expected an integer >= 0, got {self.max!r}")
        object.__setattr__(self, "per", parse_duration(self.per, what="cap.per"))

    def applies_to(self, channel: str | None) -> bool:
        return channel is not None and self.channel in (ALL_CHANNELS, channel)

    def __str__(self) -> str:
        return f"<= {self.max} {self.channel} per {format_duration(self.per)}"

    def to_dict(self) -> dict:
        return {"channel": self.channel, "max": self.max, "per": format_duration(self.per)}


def cap_from_dict(d: Any, *, where: str) -> FrequencyCap:
    if not isinstance(d, dict) or set(d) - {"channel", "max", "per"}:
        raise ValidationError(f"{where}: expected {{channel, max, per}}, got {d!r}")
    return FrequencyCap(d.get("channel", ALL_CHANNELS), d.get("max", -1), d.get("per", ""))


# ---------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Rule:
    """One ECA rule. Higher ``priority`` acts first on an event (ties: declaration order)."""

    id: str
    when: Trigger
    conditions: tuple[Predicate, ...] = ()
    actions: tuple[Action, ...] = ()
    priority: int = 0
    enabled: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]+", self.id):
            raise ValidationError(f"rule.id: expected letters, digits, _ . : -, got {self.id!r}")
        if not isinstance(self.when, AtomicEvent | WindowPattern):
            raise ValidationError(f"rule {self.id}: when must be an AtomicEvent or WindowPattern")
        object.__setattr__(self, "conditions", tuple(self.conditions))
        object.__setattr__(self, "actions", tuple(self.actions))
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise ValidationError(
                f"rule {self.id}: priority must be an integer, got {self.priority!r}"
            )

    @property
    def issues_coupon(self) -> bool:
        return any(isinstance(a, IssueCoupon) for a in self.actions)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"id": self.id, "when": self.when.to_dict()}
        if self.conditions:
            d["if"] = [p.to_dict() for p in self.conditions]
        d["then"] = [a.to_dict() for a in self.actions]
        if self.priority:
            d["priority"] = self.priority
        if not self.enabled:
            d["enabled"] = False
        if self.description:
            d["description"] = self.description
        return d


def rule_from_dict(d: Any, *, index: int = 0) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(d, dict):
        raise ValidationError(f"{where}: expected a mapping, got {d!r}")
    where = f"rule {d.get('id', index)!r}"
    unknown = set(d) - {"id", "when", "if", "then", "priority", "enabled", "description"}
    if unknown:
        raise ValidationError(f"{where}: unknown key(s) {sorted(unknown)}")
    conds = d.get("if") or []
    acts = d.get("then") or []
    if not isinstance(conds, list) or not isinstance(acts, list):
        raise ValidationError(f"{where}: 'if' and 'then' must be lists")
    return Rule(
        id=d.get("id", ""),
        when=trigger_from_dict(d.get("when"), where=where),
        conditions=tuple(
            predicate_from_dict(c, where=f"{where}.if[{i}]") for i, c in enumerate(conds)
        ),
        actions=tuple(action_from_dict(a, where=f"{where}.then[{i}]") for i, a in enumerate(acts)),
        priority=d.get("priority", 0),
        enabled=bool(d.get("enabled", True)),
        description=d.get("description", ""),
    )


@dataclass(frozen=True)
class RuleSet:
    """A named, versioned set of rules with frequency caps.

    ``max_coupons_per_event`` (default 1) stops coupons stacking at run time: when
    several rules would issue coupons on one event, only the highest-priority ones up to
    this number are issued; :func:`mktlab.rules.find_conflicts` reports such pairs.
    """

    name: str
    rules: tuple[Rule, ...] = ()
    caps: tuple[FrequencyCap, ...] = ()
    version: int = 1
    max_coupons_per_event: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError(f"ruleset.name: expected a name, got {self.name!r}")
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "caps", tuple(self.caps))
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ValidationError(
                f"ruleset.version: expected an integer >= 1, got {self.version!r}"
            )
        if not isinstance(self.max_coupons_per_event, int) or self.max_coupons_per_event < 1:
            raise ValidationError(
                f"ruleset.max_coupons_per_event: expected >= 1, got {self.max_coupons_per_event!r}"
            )

    @property
    def active_rules(self) -> tuple[Rule, ...]:
        """Enabled rules in firing order (priority descending, then declaration order)."""
        enabled = [(i, r) for i, r in enumerate(self.rules) if r.enabled]
        return tuple(r for _, r in sorted(enabled, key=lambda t: (-t[1].priority, t[0])))

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        from mktlab.errors import NotFoundError

        raise NotFoundError(f"ruleset {self.name!r} has no rule {rule_id!r}")

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.description:
            d["description"] = self.description
        if self.max_coupons_per_event != 1:
            d["max_coupons_per_event"] = self.max_coupons_per_event
        d["caps"] = [c.to_dict() for c in self.caps]
        d["rules"] = [r.to_dict() for r in self.rules]
        return d

    @property
    def fingerprint(self) -> str:
        """Hash of the content (everything but ``version``): equal rules, equal hash."""
        body = self.to_dict()
        body.pop("version")
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[
            :16
        ]

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_dict(cls, d: Any) -> RuleSet:
        if not isinstance(d, dict):
            raise ValidationError(f"ruleset: expected a mapping, got {type(d).__name__}")
        unknown = set(d) - {
            "name",
            "version",
            "rules",
            "caps",
            "max_coupons_per_event",
            "description",
        }
        if unknown:
            raise ValidationError(f"ruleset: unknown key(s) {sorted(unknown)}")
        rules = d.get("rules") or []
        caps = d.get("caps") or []
        if not isinstance(rules, list) or not isinstance(caps, list):
            raise ValidationError("ruleset: 'rules' and 'caps' must be lists")
        return cls(
            name=d.get("name", "rules"),
            rules=tuple(rule_from_dict(r, index=i) for i, r in enumerate(rules)),
            caps=tuple(cap_from_dict(c, where=f"caps[{i}]") for i, c in enumerate(caps)),
            version=d.get("version", 1),
            max_coupons_per_event=d.get("max_coupons_per_event", 1),
            description=d.get("description", ""),
        )

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> RuleSet:
        """Parse YAML text, or read it from a path."""
        import yaml

        text = str(text_or_path)
        if isinstance(text_or_path, Path) or (
            ("\n" not in text) and text.endswith((".yaml", ".yml"))
        ):
            text = Path(text_or_path).read_text()
        try:
            return cls.from_dict(yaml.safe_load(text))
        except yaml.YAMLError as exc:
            raise ValidationError(f"ruleset YAML: {exc}") from None
