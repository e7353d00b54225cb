"""The per-run report of :func:`mktlab.identity.resolve`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SIZE_BUCKETS = ((1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 10), (11, 20), (21, None))


def size_label(lo: int, hi: int | None) -> str:
    """Bucket label, e.g. ``"6-10"`` or ``"21+"``."""
    if hi is None:
        return f"{lo}+"
    return str(lo) if lo == hi else f"{lo}-{hi}"


@dataclass
class IdentityReport:
    """What a resolve run did, in numbers. ``print(report)`` gives a readable summary.

    Attributes
    ----------
    n_observations : int
        Rows given to this run.
    n_quarantined : int
        Bad rows set aside (``errors="quarantine"``).
    n_records : int
        Distinct ``record_id`` among usable rows of this run.
    n_identifiers : int
        Distinct identifiers that belong to a person (cumulative over runs).
    n_people : int
        People in the map.
    n_links : int
        Distinct links between identifiers (cumulative).
    refused : dict
        Refused links by reason (``"single_valued:phone"``, ``"limit:email"``, ``"hub"``).
    blocked : dict
        Observations dropped by the blocklist, per id type.
    hubs : dict
        Hub identifiers (not used for linking), per id type.
    hub_examples : list
        A few hub identifiers as ``"type:value (n links)"``.
    size_distribution : dict
        People by number of identifiers, bucketed.
    merges, splits, retired, new_people : int
        Changes against the previous map (incremental runs).
    """

    n_observations: int = 0
    n_quarantined: int = 0
    n_records: int = 0
    n_identifiers: int = 0
    n_people: int = 0
    n_links: int = 0
    order: str = "recency"
    refused: dict[str, int] = field(default_factory=dict)
    blocked: dict[str, int] = field(default_factory=dict)
    hubs: dict[str, int] = field(default_factory=dict)
    hub_examples: list[str] = field(default_factory=list)
    size_distribution: dict[str, int] = field(default_factory=dict)
    max_person_size: int = 0
    previous_people: int = 0
    merges: int = 0
    splits: int = 0
    retired: int = 0
    new_people: int = 0
    next_uid: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IdentityReport:
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def __getitem__(self, key: str) -> Any:  # dict-style access for notebooks
        return getattr(self, key)

    def __str__(self) -> str:
        def kv(d: dict[str, Any]) -> str:
            return ", ".join(f"{k}={v:,}" for k, v in d.items()) if d else "none"

        total = sum(self.size_distribution.values()) or 1
        sizes = "  ".join(
            f"{k}:{v:,} ({v / total:.1%})" for k, v in self.size_distribution.items() if v
        )
        lines = [
            "identity resolution report",
            f"  observations      {self.n_observations:,} (quarantined {self.n_quarantined:,})",
            f"  records           {self.n_records:,}",
            f"  identifiers       {self.n_identifiers:,}",
            f"  links             {self.n_links:,} (order: {self.order})",
            f"  people            {self.n_people:,} (largest holds {self.max_person_size} ids)",
            f"  refused links     {sum(self.refused.values()):,}: {kv(self.refused)}",
            f"  blocked (junk)    {sum(self.blocked.values()):,} observations: {kv(self.blocked)}",
            f"  hub identifiers   {sum(self.hubs.values()):,}: {kv(self.hubs)}",
        ]
        if self.hub_examples:
            lines.append(f"                    e.g. {'; '.join(self.hub_examples[:3])}")
        lines.append(f"  people by size    {sizes or 'none'}")
        if self.previous_people:
            lines.append(
                f"  vs previous map   {self.previous_people:,} people before: "
                f"{self.merges:,} merges, {self.splits:,} splits, {self.retired:,} retired, "
                f"{self.new_people:,} new"
            )
        lines.append(f"  next uid          {self.next_uid:,}")
        if self.seconds:
            lines.append(
                f"  seconds           {sum(self.seconds.values()):.2f} ({kv_s(self.seconds)})"
            )
        return "\n".join(lines)


def kv_s(d: dict[str, float]) -> str:
    """Timings as ``stage=1.23s`` pairs."""
    return ", ".join(f"{k}={v:.2f}s" for k, v in d.items())
