"""Identity rules as data: per-type priority and cardinality, blocklist, hub threshold.

A rule set says how raw identifiers may be linked into people. It is a plain dataclass
that round-trips through a dict / YAML file, so the rules a map was built with are saved
beside it and a rule file that contradicts itself is refused before any work is done.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mktlab.errors import ConfigError

ORDERS = ("recency", "frequency")
NORMALIZERS = ("none", "strip", "lower")

DEFAULT_BLOCK_VALUES = ("", "unknown", "null", "-1", "none", "nan", "undefined", "anonymous")
DEFAULT_BLOCK_REGEX = (r"^0+$",)


@dataclass(frozen=True)
class IdTypeRule:
    """How one identifier type behaves.

    Parameters
    ----------
    name : str
        The ``id_type`` value this rule governs, e.g. ``"phone"``.
    priority : int
        Lower is stronger. Decides which identifier anchors a record and which
        identifier a record is attributed by; two types may not share a priority.
    max_per_person : int
        Cardinality: 1 means single-valued (a person holds at most one), ``k`` means
        at most ``k`` values. A union that would exceed it is refused.
    normalize : {"strip", "lower", "none"}
        Applied to values before matching: ``"strip"`` trims whitespace, ``"lower"``
        trims and lower-cases (emails).
    hub_threshold : int or None
        Overrides :attr:`IdentityRules.hub_threshold` for identifiers of this type.
    """

    name: str
    priority: int
    max_per_person: int = 1
    normalize: str = "strip"
    hub_threshold: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"IdTypeRule.name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.priority, int) or isinstance(self.priority, bool):
            raise ConfigError(
                f"IdTypeRule({self.name}).priority must be an int, got {self.priority!r}"
            )
        if (
            not isinstance(self.max_per_person, int)
            or isinstance(self.max_per_person, bool)
            or self.max_per_person < 1
        ):
            raise ConfigError(
                f"IdTypeRule({self.name}).max_per_person must be an int >= 1, got {self.max_per_person!r}"
            )
        if self.normalize not in NORMALIZERS:
            raise ConfigError(
                f"IdTypeRule({self.name}).normalize must be one of {NORMALIZERS}, got {self.normalize!r}"
            )
        if self.hub_threshold is not None and (
            not isinstance(self.hub_threshold, int) or self.hub_threshold < 1
        ):
            raise ConfigError(
                f"IdTypeRule({self.name}).hub_threshold must be None or an int >= 1, "
                f"got {self.hub_threshold!r}"
            )

    @property
    def single_valued(self) -> bool:
        """True when a person may hold at most one value of this type."""
        return self.max_per_person == 1


def _default_types() -> tuple[IdTypeRule, ...]:
    return (
        IdTypeRule("user_id", priority=1, max_per_person=1),
        IdTypeRule("phone", priority=2, max_per_person=1),
        IdTypeRule("email", priority=3, max_per_person=3, normalize="lower"),
        IdTypeRule("openid", priority=4, max_per_person=3),
        IdTypeRule("device", priority=5, max_per_person=5),
    )


@dataclass(frozen=True)
class IdentityRules:
    """The full rule set for :func:`mktlab.identity.resolve`.

    Parameters
    ----------
    types : tuple of IdTypeRule
        One rule per identifier type; observations of other types are bad rows.
    order : {"recency", "frequency"}
        Order in which conflicting links are replayed: ``"recency"`` applies the most
        recently seen link first (a recycled phone ends with its latest owner),
        ``"frequency"`` the link seen in most records first (ties by recency).
    block_values : tuple of str
        Values never used as identifiers, compared case-insensitively after
        normalisation.
    block_regex : tuple of str
        Regular expressions (``re.fullmatch`` semantics are *not* implied; anchor them)
        whose matches are never used as identifiers.
    hub_threshold : int or None
        An identifier linked to more than this many distinct identifiers of one type
        is a hub and is not used for linking. ``None`` disables hub detection.
    """

    types: tuple[IdTypeRule, ...] = field(default_factory=_default_types)
    order: str = "recency"
    block_values: tuple[str, ...] = DEFAULT_BLOCK_VALUES
    block_regex: tuple[str, ...] = DEFAULT_BLOCK_REGEX
    hub_threshold: int | None = 50

    def __post_init__(self) -> None:
        types = tuple(
            t if isinstance(t, IdTypeRule) else IdTypeRule(**t) for t in (self.types or ())
        )
        object.__setattr__(self, "types", types)
        object.__setattr__(self, "block_values", tuple(str(v) for v in self.block_values))
        object.__setattr__(self, "block_regex", tuple(str(v) for v in self.block_regex))
        if not types:
            raise ConfigError("IdentityRules.types: at least one identifier type is required")
        names = [t.name for t in types]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"IdentityRules.types: id type(s) declared twice: {dup}")
        prios = [t.priority for t in types]
        clash = sorted({p for p in prios if prios.count(p) > 1})
        if clash:
            who = {p: [t.name for t in types if t.priority == p] for p in clash}
            raise ConfigError(
                f"IdentityRules.types: priority must be unique per type, but {who} share one"
            )
        if self.order not in ORDERS:
            raise ConfigError(f"IdentityRules.order must be one of {ORDERS}, got {self.order!r}")
        if self.hub_threshold is not None and (
            not isinstance(self.hub_threshold, int) or self.hub_threshold < 1
        ):
            raise ConfigError(
                f"IdentityRules.hub_threshold must be None or an int >= 1, got {self.hub_threshold!r}"
            )
        for rx in self.block_regex:
            try:
                re.compile(rx)
            except re.error as exc:
                raise ConfigError(
                    f"IdentityRules.block_regex: {rx!r} is not a valid regex: {exc}"
                ) from exc

    # ------------------------------------------------------------------ views
    @property
    def names(self) -> list[str]:
        """Type names ordered by priority (strongest first)."""
        return [t.name for t in self.ranked]

    @property
    def ranked(self) -> list[IdTypeRule]:
        """Type rules ordered by priority (strongest first)."""
        return sorted(self.types, key=lambda t: t.priority)

    def rule(self, name: str) -> IdTypeRule:
        """The rule of type ``name``."""
        for t in self.types:
            if t.name == name:
                return t
        raise ConfigError(f"IdentityRules: unknown id_type {name!r}; known: {self.names}")

    def canonical(self, name: object) -> str | None:
        """The declared type name matching ``name`` (exact, else trimmed and case-blind)."""
        text = str(name)
        if text in self.names:
            return text
        folded = {n.strip().lower(): n for n in self.names}
        return folded.get(text.strip().lower())

    def hub_limit(self, name: str) -> int | None:
        """Hub threshold that applies to identifiers of type ``name``."""
        t = self.rule(name)
        return t.hub_threshold if t.hub_threshold is not None else self.hub_threshold

    # ------------------------------------------------------------ round trip
    def to_dict(self) -> dict[str, Any]:
        """A plain dict (YAML / JSON friendly)."""
        d = asdict(self)
        d["types"] = [asdict(t) for t in self.types]
        d["block_values"] = list(self.block_values)
        d["block_regex"] = list(self.block_regex)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IdentityRules:
        """Build rules from :meth:`to_dict` output or a hand-written mapping."""
        if not isinstance(data, dict):
            raise ConfigError(f"identity rules must be a mapping, got {type(data).__name__}")
        unknown = set(data) - {"types", "order", "block_values", "block_regex", "hub_threshold"}
        if unknown:
            raise ConfigError(f"identity rules: unknown field(s) {sorted(unknown)}")
        data = dict(data)
        types = data.get("types")
        if isinstance(types, dict):  # {name: {priority: ..}} is the friendlier YAML form
            types = [{"name": k, **(v or {})} for k, v in types.items()]
        if types is not None:
            try:
                data["types"] = tuple(IdTypeRule(**t) for t in types)
            except TypeError as exc:
                raise ConfigError(f"identity rules.types: {exc}") from exc
        for key in ("block_values", "block_regex"):
            if key in data:
                data[key] = tuple(data[key] or ())
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> IdentityRules:
        """Read rules from a YAML file (same fields as :meth:`to_dict`)."""
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"identity rules file {path}: {exc}") from exc
        return cls.from_dict(data or {})

    def to_yaml(self) -> str:
        """The rules as YAML text."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)
