"""The node types of a journey, each a frozen dataclass checked in ``__post_init__``.

A node has an ``id`` (letters, digits, ``_ . -``), a YAML ``type`` and the node(s) it
leads to (``next``, or labelled branches); :func:`mktlab.live.journey.node_from_dict`
reads one from its YAML mapping. Errors are :class:`JourneyError` starting ``node <id>: ...``; the
:class:`~mktlab.live.journey.Journey` prefixes ``journey <name>: ``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mktlab.errors import ValidationError
from mktlab.rules.model import (
    AtomicEvent,
    Predicate,
    Trigger,
    WindowPattern,
    format_duration,
    parse_duration,
    predicate_from_dict,
    trigger_from_dict,
)

# ':' separates the parts of an effect's idempotency key, so ids may not contain it
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")
SPLIT_BY = ("audience", "uplift", "experiment", "holdout", "random")
_SPLIT_LABELS = {
    "audience": ("yes", "no"),
    "uplift": ("yes", "no"),
    "holdout": ("holdout", "treated"),
}


class JourneyError(ValidationError):
    """A journey or one of its nodes is invalid; the message names the journey and node."""

    def __init__(self, message: str, *, journey: str | None = None, node: str | None = None):
        super().__init__(message)
        self.journey = journey
        self.node = node


def _fail(node_id: Any, msg: str) -> JourneyError:
    return JourneyError(f"node {node_id}: {msg}", node=str(node_id))


def _target(node_id: str, label: str, value: Any) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise _fail(node_id, f"{label}: expected a node id, got {value!r}")
    return value


def _duration(node_id: str, label: str, value: Any) -> int:
    try:
        return parse_duration(value, what=label)
    except ValidationError as exc:
        raise _fail(node_id, str(exc)) from None


def _number(node_id: str, label: str, value: Any, *, low: float = -math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(node_id, f"{label}: expected a number, got {value!r}")
    if value < low:
        raise _fail(node_id, f"{label}: expected a number >= {low:g}, got {value!r}")
    return float(value)


def _predicates(node_id: str, raw: Any) -> tuple[Predicate, ...]:
    items = [raw] if isinstance(raw, Mapping | Predicate) else list(raw or ())
    out = []
    for i, p in enumerate(items):
        try:
            pred = p if isinstance(p, Predicate) else predicate_from_dict(p, where=f"where[{i}]")
        except ValidationError as exc:
            raise _fail(node_id, str(exc)) from None
        if pred.namespace == "profile":
            # journeys see the event, the clock and audiences; profile segments are audiences
            raise _fail(
                node_id,
                f"where[{i}]: {pred.field}: profile fields are not available in journeys; "
                "use an audience (audience.<name>)",
            )
        out.append(pred)
    return tuple(out)


def _scalar_map(node_id: str, label: str, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise _fail(node_id, f"{label}: expected a mapping name -> value, got {raw!r}")
    for k, v in raw.items():
        if not isinstance(k, str) or not k:
            raise _fail(node_id, f"{label}: keys must be non-empty names, got {k!r}")
        if v is not None and not isinstance(v, str | int | float | bool):
            raise _fail(node_id, f"{label}.{k}: expected a scalar value, got {v!r}")
    return dict(raw)


def _check_tz(node_id: str, tz: Any) -> None:
    from zoneinfo import ZoneInfo

    try:
        if not isinstance(tz, str):
            raise ValueError(tz)
        ZoneInfo(tz)
    except Exception:  # ZoneInfoNotFoundError, or ValueError for a malformed key
        raise _fail(node_id, f"tz: unknown time zone {tz!r} (e.g. 'Europe/Paris')") from None


def _clock(node_id: str, text: str) -> int:
    m = _CLOCK.match(text)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise _fail(node_id, f"until: expected 'HH:MM' or 'HH:MM-HH:MM', got {text!r}")
    return int(m.group(1)) * 60 + int(m.group(2))


# ---------------------------------------------------------------------------- nodes
@dataclass(frozen=True, kw_only=True)
class Node:
    """Base of every node: an ``id`` and its targets."""

    id: str
    type: ClassVar[str] = ""
    yaml_keys: ClassVar[dict[str, str]] = {}  # YAML key -> field, for the plain from_dict

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not ID_PATTERN.fullmatch(self.id):
            raise _fail(repr(self.id), "id must be letters, digits, '_', '.' or '-'")

    def targets(self) -> dict[str, str]:
        """Branch label -> target node id, in a fixed order."""
        nxt = getattr(self, "next", None)
        return {"next": nxt} if nxt else {}

    def summary(self) -> str:
        """The key parameter in a few words (diagram labels)."""
        return ""

    def params(self) -> dict[str, Any]:
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, **self.params(), **self.targets()}

    @classmethod
    def from_dict(cls, d: Mapping) -> Node:
        nid = d["id"]
        _check_keys(nid, d, cls.yaml_keys)
        return cls(id=nid, **{f: d[k] for k, f in cls.yaml_keys.items() if d.get(k) is not None})


def _check_keys(nid: str, d: Mapping, allowed: Mapping[str, str]) -> None:
    extra = set(d) - set(allowed) - {"id", "type"}
    if extra:
        raise _fail(nid, f"unknown key(s) {sorted(map(str, extra))}; expected {sorted(allowed)}")


@dataclass(frozen=True, kw_only=True)
class EntryNode(Node):
    """Where users come in: on an event or windowed trigger, and/or audience membership.

    ``reentry`` is ``"never"`` (default), ``"always"`` (once they have left) or
    ``"after <duration>"`` (that long after they left).
    """

    next: str
    trigger: Trigger | None = None
    audience: str | None = None
    where: tuple[Predicate, ...] = ()
    reentry: str = "never"
    type: ClassVar[str] = "entry"

    def __post_init__(self) -> None:
        super().__post_init__()
        _target(self.id, "next", self.next)
        if self.trigger is None and self.audience is None:
            raise _fail(self.id, "an entry needs 'event:', 'trigger:' or 'audience:'")
        if self.trigger is not None and not isinstance(self.trigger, AtomicEvent | WindowPattern):
            raise _fail(self.id, f"trigger: expected an event or a pattern, got {self.trigger!r}")
        if self.audience is not None and (not isinstance(self.audience, str) or not self.audience):
            raise _fail(self.id, f"audience: expected an audience name, got {self.audience!r}")
        object.__setattr__(self, "where", _predicates(self.id, self.where))
        text = self.reentry.strip().lower() if isinstance(self.reentry, str) else ""
        if text.startswith("after "):
            seconds = _duration(self.id, "reentry", text.removeprefix("after ").strip())
            text = f"after {format_duration(seconds)}"
        elif text not in ("never", "always"):
            raise _fail(
                self.id,
                f"reentry: expected 'never', 'always' or 'after <duration>', got {self.reentry!r}",
            )
        object.__setattr__(self, "reentry", text)

    @property
    def reentry_after(self) -> int | None:
        """Seconds after leaving before re-entry (0 = at once), ``None`` = never."""
        if self.reentry == "never":
            return None
        return 0 if self.reentry == "always" else parse_duration(self.reentry.split()[1])

    @property
    def windowed(self) -> bool:
        """The trigger is a window pattern (entry needs the precomputed fired flag)."""
        return isinstance(self.trigger, WindowPattern)

    def summary(self) -> str:
        parts = []
        t = self.trigger
        if isinstance(t, AtomicEvent):
            parts.append(f"on {t.type}")
        elif isinstance(t, WindowPattern):
            same = f" same {','.join(t.same)}" if t.same else ""
            no = f" no {t.absent}" if t.absent else ""
            parts.append(f"{t.count}x {t.event}/{format_duration(t.within)}{same}{no}")
        if self.audience:
            parts.append(f"in {self.audience}")
        return " ".join(parts)

    def params(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if isinstance(self.trigger, AtomicEvent):
            d["event"] = self.trigger.type
        elif self.trigger is not None:
            d["trigger"] = self.trigger.to_dict()
        if self.audience:
            d["audience"] = self.audience
        if self.where:
            d["where"] = [p.to_dict() for p in self.where]
        d["reentry"] = self.reentry
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> EntryNode:
        nid = d["id"]
        d = {k: v for k, v in d.items() if v is not None}  # an empty YAML key means absent
        _check_keys(
            nid, d, dict.fromkeys(("event", "trigger", "audience", "where", "reentry", "next"), "")
        )
        if "event" in d and "trigger" in d:
            raise _fail(nid, "give 'event:' or 'trigger:', not both")
        trigger: Trigger | None = None
        try:
            if "event" in d:
                trigger = AtomicEvent(d["event"])
            elif "trigger" in d:
                trigger = trigger_from_dict(d["trigger"], where="trigger")
        except ValidationError as exc:
            raise _fail(nid, str(exc)) from None
        return cls(
            id=nid,
            next=d.get("next"),  # type: ignore[arg-type]  # checked in __post_init__
            trigger=trigger,
            audience=d.get("audience"),
            where=d.get("where") or (),
            reentry=d.get("reentry", "never"),
        )


@dataclass(frozen=True, kw_only=True)
class DelayNode(Node):
    """Hold users for ``duration``, or ``until`` a local time of day in their time zone.

    ``until: "09:00"`` waits for the next 09:00 strictly after now; ``until:
    "09:00-21:00"`` lets users through at once inside the window and holds the others
    until it next opens. ``tz`` applies when neither the event (``props.tz``) nor the
    context knows the user's zone.
    """

    next: str
    duration: int | None = None
    until: str | None = None
    tz: str = "UTC"
    type: ClassVar[str] = "delay"
    yaml_keys: ClassVar[dict[str, str]] = {k: k for k in ("duration", "until", "tz", "next")}

    def __post_init__(self) -> None:
        super().__post_init__()
        _target(self.id, "next", self.next)
        if (self.duration is None) == (self.until is None):
            raise _fail(self.id, "a delay needs exactly one of 'duration:' or 'until:'")
        if self.duration is not None:
            object.__setattr__(self, "duration", _duration(self.id, "duration", self.duration))
        else:
            until = self.until
            if isinstance(until, int) and not isinstance(until, bool):
                # YAML 1.1 reads an unquoted 9:00 as the base-60 integer 540 (minutes)
                until = f"{until // 60:02d}:{until % 60:02d}"
            if not isinstance(until, str):
                raise _fail(self.id, f"until: expected 'HH:MM' or 'HH:MM-HH:MM', got {until!r}")
            parts = [_clock(self.id, p) for p in until.split("-")]
            if len(parts) > 2 or (len(parts) == 2 and parts[0] == parts[1]):
                raise _fail(self.id, f"until: expected 'HH:MM' or 'HH:MM-HH:MM', got {until!r}")
            text = "-".join(f"{m // 60:02d}:{m % 60:02d}" for m in parts)
            object.__setattr__(self, "until", text)
        _check_tz(self.id, self.tz)

    @property
    def window(self) -> tuple[int, int | None] | None:
        """``(start, end)`` minutes of the day (``end`` None for a single time)."""
        if self.until is None:
            return None
        parts = [_clock(self.id, p) for p in self.until.split("-")]
        return parts[0], (parts[1] if len(parts) == 2 else None)

    @property
    def always_waits(self) -> bool:
        """A window may let users straight through; a duration or a single time never does."""
        return self.until is None or "-" not in self.until

    @property
    def max_wait(self) -> int:
        """Longest hold in seconds (a local day may last 25 h)."""
        return self.duration if self.duration is not None else 25 * 3600

    def summary(self) -> str:
        if self.duration is not None:
            return format_duration(self.duration)
        return f"until {self.until}" + (f" {self.tz}" if self.tz != "UTC" else "")

    def params(self) -> dict[str, Any]:
        d: dict[str, Any] = (
            {"duration": format_duration(self.duration)}
            if self.duration is not None
            else {"until": self.until}
        )
        return d | ({"tz": self.tz} if self.tz != "UTC" else {})


@dataclass(frozen=True, kw_only=True)
class WaitNode(Node):
    """Wait up to ``timeout`` for ``event`` (matching ``where``); branch on what comes first."""

    event: str
    timeout: int
    on_event: str
    on_timeout: str
    where: tuple[Predicate, ...] = ()
    type: ClassVar[str] = "wait"
    yaml_keys: ClassVar[dict[str, str]] = {
        k: k for k in ("event", "where", "timeout", "on_event", "on_timeout")
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.event, str) or not self.event or self.event == "*":
            raise _fail(self.id, f"event: expected an event type, got {self.event!r}")
        object.__setattr__(self, "timeout", _duration(self.id, "timeout", self.timeout))
        _target(self.id, "on_event", self.on_event)
        _target(self.id, "on_timeout", self.on_timeout)
        object.__setattr__(self, "where", _predicates(self.id, self.where))

    def targets(self) -> dict[str, str]:
        return {"on_event": self.on_event, "on_timeout": self.on_timeout}

    def summary(self) -> str:
        return f"{self.event} within {format_duration(self.timeout)}"

    def params(self) -> dict[str, Any]:
        d: dict[str, Any] = {"event": self.event, "timeout": format_duration(self.timeout)}
        return d | ({"where": [p.to_dict() for p in self.where]} if self.where else {})


@dataclass(frozen=True, kw_only=True)
class SplitNode(Node):
    """Branch users by audience, uplift score, experiment arm, holdout or a random draw.

    ``branches`` maps labels to targets: ``yes``/``no`` (audience, uplift),
    ``holdout``/``treated`` (holdout), one per arm of ``weights`` (experiment, random).
    An experiment arm is sticky per user; a random draw is made afresh at every visit.
    """

    by: str
    branches: Mapping[str, str]
    audience: str | None = None
    threshold: float | None = None
    weights: Mapping[str, float] | None = None
    fraction: float | None = None
    type: ClassVar[str] = "split"

    def __post_init__(self) -> None:
        super().__post_init__()
        nid = self.id
        if self.by not in SPLIT_BY:
            raise _fail(nid, f"by: expected one of {SPLIT_BY}, got {self.by!r}")
        if not isinstance(self.branches, Mapping):
            raise _fail(nid, f"branches: expected label -> node id, got {self.branches!r}")
        branches = {str(k): _target(nid, str(k), v) for k, v in self.branches.items()}
        if self.by in ("experiment", "random"):
            what = "arms" if self.by == "experiment" else "weights"
            w = self.weights
            if not isinstance(w, Mapping) or len(w) < 2:
                raise _fail(nid, f"{what}: a {self.by} split needs at least two positive weights, "
                                 f"e.g. {{a: 1, b: 1}}; got {w!r}")  # fmt: skip
            for k, v in w.items():
                if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < math.inf:
                    raise _fail(nid, f"{what}.{k}: weights must be positive numbers, got {v!r}")
            if set(map(str, w)) != set(branches):
                raise _fail(nid, f"branches: need one target per arm {sorted(map(str, w))}, "
                                 f"got {sorted(branches)}")  # fmt: skip
            object.__setattr__(self, "weights", {str(k): float(v) for k, v in w.items()})
            object.__setattr__(self, "branches", {str(k): branches[str(k)] for k in w})
            return
        want = _SPLIT_LABELS[self.by]
        if set(branches) != set(want):
            raise _fail(
                nid, f"split by {self.by} needs targets {list(want)}, got {sorted(branches)}"
            )
        object.__setattr__(self, "branches", {w: branches[w] for w in want})
        if self.by == "audience" and (not isinstance(self.audience, str) or not self.audience):
            raise _fail(nid, f"audience: expected an audience name, got {self.audience!r}")
        if self.by == "uplift":
            object.__setattr__(self, "threshold", _number(nid, "threshold", self.threshold))
        if self.by == "holdout":
            f = self.fraction
            if isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f < 1:
                raise _fail(nid, f"fraction: a holdout fraction must be in (0, 1), got {f!r}")
            object.__setattr__(self, "fraction", float(f))

    @property
    def probabilities(self) -> dict[str, float] | None:
        """Branch label -> probability for drawn splits (``None`` when deterministic)."""
        if self.by == "holdout":
            f = float(self.fraction)  # type: ignore[arg-type]
            return {"holdout": f, "treated": 1.0 - f}
        if self.weights is None:
            return None
        total = sum(self.weights.values())
        return {k: v / total for k, v in self.weights.items()}

    def targets(self) -> dict[str, str]:
        return dict(self.branches)

    def summary(self) -> str:
        if self.by == "audience":
            return f"in {self.audience}?"
        if self.by == "uplift":
            return f"uplift >= {self.threshold:g}?"
        if self.by == "holdout":
            return f"holdout {self.fraction:.0%}"
        return f"{self.by} " + " / ".join(f"{p:.0%}" for p in (self.probabilities or {}).values())

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "type": self.type, "by": self.by}
        if self.by in ("experiment", "random"):
            d["arms" if self.by == "experiment" else "weights"] = dict(self.weights or {})
            return d | {"branches": dict(self.branches)}
        key = {"audience": "audience", "uplift": "threshold", "holdout": "fraction"}[self.by]
        return d | {key: getattr(self, key)} | dict(self.branches)

    @classmethod
    def from_dict(cls, d: Mapping) -> SplitNode:
        nid = d["id"]
        # YAML 1.1 reads bare yes/no keys as booleans
        d = {({True: "yes", False: "no"}[k] if isinstance(k, bool) else k): v for k, v in d.items()}
        by = d.get("by")
        if by not in SPLIT_BY:
            raise _fail(nid, f"by: expected one of {SPLIT_BY}, got {by!r}")
        if by in ("experiment", "random"):
            key = "arms" if by == "experiment" else "weights"
            _check_keys(nid, d, dict.fromkeys(("by", key, "branches"), ""))
            return cls(id=nid, by=by, branches=d.get("branches") or {}, weights=d.get(key))
        labels = _SPLIT_LABELS[by]
        param = {"audience": "audience", "uplift": "threshold", "holdout": "fraction"}[by]
        _check_keys(nid, d, dict.fromkeys(("by", param, *labels), ""))
        return cls(
            id=nid,
            by=by,
            branches={k: d[k] for k in labels if k in d},
            **{param: d.get(param)},
        )


@dataclass(frozen=True, kw_only=True)
class CouponNode(Node):
    """Issue a coupon of ``campaign`` (default: the journey's ``campaign_id``)."""

    next: str
    campaign: str | None = None
    value: float | None = None
    type: ClassVar[str] = "coupon"
    yaml_keys: ClassVar[dict[str, str]] = {k: k for k in ("campaign", "value", "next")}

    def __post_init__(self) -> None:
        super().__post_init__()
        _target(self.id, "next", self.next)
        if self.campaign is not None and (not isinstance(self.campaign, str) or not self.campaign):
            raise _fail(self.id, f"campaign: expected a campaign id, got {self.campaign!r}")
        if self.value is not None:
            object.__setattr__(self, "value", _number(self.id, "value", self.value, low=0))

    def summary(self) -> str:
        value = f"value {self.value:g}" if self.value is not None else ""
        return " ".join(filter(None, (self.campaign, value)))

    def params(self) -> dict[str, Any]:
        d: dict[str, Any] = {"campaign": self.campaign} if self.campaign else {}
        return d | ({"value": self.value} if self.value is not None else {})


@dataclass(frozen=True, kw_only=True)
class MessageNode(Node):
    """Send ``template`` through the first available of ``channels`` (priority order)."""

    next: str
    template: str
    channels: tuple[str, ...] = ("push",)
    type: ClassVar[str] = "message"
    yaml_keys: ClassVar[dict[str, str]] = {k: k for k in ("template", "channels", "next")}

    def __post_init__(self) -> None:
        super().__post_init__()
        _target(self.id, "next", self.next)
        if not isinstance(self.template, str) or not self.template:
            raise _fail(self.id, f"template: expected a template name, got {self.template!r}")
        ch = (self.channels,) if isinstance(self.channels, str) else tuple(self.channels or ())
        if not ch or any(not isinstance(c, str) or not c or c == "*" for c in ch):
            raise _fail(self.id, f"channels: expected channel names, got {self.channels!r}")
        if len(set(ch)) != len(ch):
            raise _fail(self.id, f"channels: a channel is listed twice in {list(ch)}")
        object.__setattr__(self, "channels", ch)

    def summary(self) -> str:
        return f"{self.template} via {'/'.join(self.channels)}"

    def params(self) -> dict[str, Any]:
        return {"template": self.template, "channels": list(self.channels)}


@dataclass(frozen=True, kw_only=True)
class UpdateNode(Node):
    """Write profile fields (``set``, e.g. the lifecycle stage) and/or tags (``tag``)."""

    next: str
    set_fields: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, Any] = field(default_factory=dict)
    type: ClassVar[str] = "update"
    yaml_keys: ClassVar[dict[str, str]] = {"set": "set_fields", "tag": "tags", "next": "next"}

    def __post_init__(self) -> None:
        super().__post_init__()
        _target(self.id, "next", self.next)
        object.__setattr__(self, "set_fields", _scalar_map(self.id, "set", self.set_fields))
        object.__setattr__(self, "tags", _scalar_map(self.id, "tag", self.tags))
        if not self.set_fields and not self.tags:
            raise _fail(self.id, "an update needs 'set: {field: value}' or 'tag: {name: value}'")

    def summary(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in {**self.set_fields, **self.tags}.items())

    def params(self) -> dict[str, Any]:
        d: dict[str, Any] = {"set": dict(self.set_fields)} if self.set_fields else {}
        return d | ({"tag": dict(self.tags)} if self.tags else {})


@dataclass(frozen=True, kw_only=True)
class RateLimitNode(Node):
    """Let at most ``max`` users through per ``per`` seconds; others go to ``overflow`` or exit."""

    next: str
    max: int
    per: int
    overflow: str | None = None
    type: ClassVar[str] = "rate_limit"
    yaml_keys: ClassVar[dict[str, str]] = {k: k for k in ("max", "per", "overflow", "next")}

    def __post_init__(self) -> None:
        super().__post_init__()
        _target(self.id, "next", self.next)
        if isinstance(self.max, bool) or not isinstance(self.max, int) or self.max < 1:
            raise _fail(self.id, f"max: expected an integer >= 1, got {self.max!r}")
        object.__setattr__(self, "per", _duration(self.id, "per", self.per))
        if self.overflow is not None:
            _target(self.id, "overflow", self.overflow)

    def targets(self) -> dict[str, str]:
        return {"next": self.next} | ({"overflow": self.overflow} if self.overflow else {})

    def summary(self) -> str:
        return f"<= {self.max} per {format_duration(self.per)}"

    def params(self) -> dict[str, Any]:
        return {"max": self.max, "per": format_duration(self.per)}


@dataclass(frozen=True, kw_only=True)
class ExitNode(Node):
    """The user leaves the journey."""

    type: ClassVar[str] = "exit"


# every node class above, by its YAML type
NODE_TYPES: dict[str, type[Node]] = {c.type: c for c in Node.__subclasses__()}
