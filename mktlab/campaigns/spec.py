"""A campaign as data: its strategy, window, coupon stock, stacking and spending plan.

Example YAML::

    campaign_id: spring-sale
    name: Spring sale
    window: {start: "2026-03-01T00:00:00+00:00", end: "2026-03-31T00:00:00+00:00"}
    coupon: {stock: 20000, per_user_limit: 1, stackable: false}
    plan: {daily_spend: 3000}          # the burn-rate breaker compares spend to this
    strategy:                          # a mktlab.strategy.Strategy (audience, holdout,
      name: spring-sale                # policy, rules, caps, coupon terms, budget,
      policy: {kind: random, rate: 0.5}  # channels, templates); its campaign_id is this
      audience: young                  # campaign's, set here when absent
      holdout: 0.1
      coupon: {face_value: 5}
      budget: {max_spend: 100000}

The budget, audience, channels, holdout and coupon terms are the strategy's own (one
home: the sandbox replays, the live loop runs and ``/issue`` checks exactly these); the
campaign adds what only a campaign has: when it runs, how many coupons exist, whether
they stack with other campaigns' coupons, and the plan its spending is watched against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mktlab.coupons.campaign import CAMPAIGN_ID_RE
from mktlab.errors import ValidationError
from mktlab.strategy.spec import Strategy

_TOP = ("campaign_id", "name", "strategy", "window", "coupon", "plan", "description")


def _epoch(value: Any, where: str) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    raise ValidationError(
        f"{where}={value!r}: expected an ISO timestamp, a datetime or epoch seconds"
    )


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def _positive_int(value: Any, where: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValidationError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class CampaignSpec:
    """One version of a campaign's definition (see the module docstring)."""

    campaign_id: str
    strategy: Strategy
    start: float
    end: float
    stock: int
    name: str = ""
    per_user_limit: int = 1
    stackable: bool = False
    daily_spend: float | None = None
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.campaign_id, str) or not CAMPAIGN_ID_RE.fullmatch(self.campaign_id):
            raise ValidationError(
                f"campaign.campaign_id={self.campaign_id!r}: expected 1-64 letters, digits, _.-"
            )
        if not isinstance(self.strategy, Strategy):
            raise ValidationError("campaign.strategy: expected a strategy")
        if self.strategy.campaign_id is None:
            object.__setattr__(
                self, "strategy", replace(self.strategy, campaign_id=self.campaign_id)
            )
        elif self.strategy.campaign_id != self.campaign_id:
            raise ValidationError(
                f"campaign.strategy.campaign_id={self.strategy.campaign_id!r}: must be the "
                f"campaign's own id {self.campaign_id!r}"
            )
        if self.end <= self.start:
            raise ValidationError(
                f"campaign.window: end {iso(self.end)} must be after start {iso(self.start)}"
            )
        _positive_int(self.stock, "campaign.coupon.stock")
        _positive_int(self.per_user_limit, "campaign.coupon.per_user_limit")
        if not isinstance(self.stackable, bool):
            raise ValidationError(
                f"campaign.coupon.stackable: expected true or false, got {self.stackable!r}"
            )
        b = self.strategy.budget
        if b.max_spend is None or b.max_spend <= 0:
            raise ValidationError(
                "campaign.strategy.budget.max_spend: a campaign needs a spending ceiling > 0 "
                f"(got {b.max_spend!r})"
            )
        if self.daily_spend is not None and (
            isinstance(self.daily_spend, bool)
            or not isinstance(self.daily_spend, int | float)
            or not self.daily_spend > 0
        ):
            raise ValidationError(
                f"campaign.plan.daily_spend: expected a number > 0, got {self.daily_spend!r}"
            )
        if not self.name:
            object.__setattr__(self, "name", self.campaign_id)

    # -- what the strategy holds, named as a campaign manager would --------------------
    @property
    def max_spend(self) -> float:
        return float(self.strategy.budget.max_spend or 0.0)

    @property
    def max_coupons(self) -> int | None:
        return self.strategy.budget.max_coupons

    @property
    def audience(self) -> str | None:
        return self.strategy.audience

    @property
    def holdout(self) -> float:
        return float(self.strategy.holdout)

    @property
    def face_value(self) -> float:
        return float(self.strategy.coupon.face_value)

    @property
    def salt(self) -> str:
        return self.strategy.assignment_salt

    def planned_spend(self, elapsed: float) -> float:
        """Spend the plan allows after ``elapsed`` seconds of running (pro rata)."""
        per_day = self.daily_spend
        if per_day is None:
            per_day = self.max_spend / max((self.end - self.start) / 86400.0, 1e-9)
        return per_day * max(elapsed, 0.0) / 86400.0

    # -- (de)serialisation ------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Any, *, base_dir: Path | None = None) -> CampaignSpec:
        if not isinstance(d, Mapping):
            raise ValidationError(f"campaign: expected a mapping, got {type(d).__name__}")
        unknown = sorted(set(d) - set(_TOP))
        if unknown:
            raise ValidationError(f"campaign: unknown field(s) {unknown}; known: {list(_TOP)}")
        for k in ("campaign_id", "strategy", "window", "coupon"):
            if k not in d:
                raise ValidationError(f"campaign.{k}: missing")
        s = d["strategy"]
        if isinstance(s, str):
            path = Path(s) if base_dir is None or Path(s).is_absolute() else base_dir / s
            strategy = Strategy.from_yaml(path)
        elif isinstance(s, Strategy):
            strategy = s
        else:
            strategy = Strategy.from_dict(s, base_dir=base_dir)
        w, c, p = d["window"], d["coupon"], d.get("plan") or {}
        for name, part, keys in (
            ("window", w, ("start", "end")),
            ("coupon", c, ("stock", "per_user_limit", "stackable")),
            ("plan", p, ("daily_spend",)),
        ):
            if not isinstance(part, Mapping):
                raise ValidationError(f"campaign.{name}: expected a mapping, got {part!r}")
            bad = sorted(set(part) - set(keys))
            if bad:
                raise ValidationError(
                    f"campaign.{name}: unknown field(s) {bad}; known: {list(keys)}"
                )
        for k in ("start", "end"):
            if k not in w:
                raise ValidationError(f"campaign.window.{k}: missing")
        if "stock" not in c:
            raise ValidationError("campaign.coupon.stock: missing (how many coupons exist)")
        return cls(
            campaign_id=d["campaign_id"],
            name=d.get("name") or "",
            strategy=strategy,
            start=_epoch(w["start"], "campaign.window.start"),
            end=_epoch(w["end"], "campaign.window.end"),
            stock=c["stock"],
            per_user_limit=c.get("per_user_limit", 1),
            stackable=c.get("stackable", False),
            daily_spend=p.get("daily_spend"),
            description=d.get("description", ""),
        )

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> CampaignSpec:
        import yaml

        text, base = str(text_or_path), None
        if isinstance(text_or_path, Path) or (
            "\n" not in text and text.endswith((".yaml", ".yml"))
        ):
            path = Path(text_or_path)
            if not path.exists():
                from mktlab.errors import NotFoundError

                raise NotFoundError(f"campaign file {str(path)!r} does not exist")
            text, base = path.read_text(), path.parent
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValidationError(f"campaign YAML: {exc}") from None
        return cls.from_dict(d, base_dir=base)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "campaign_id": self.campaign_id,
            "name": self.name,
            "window": {"start": iso(self.start), "end": iso(self.end)},
            "coupon": {
                "stock": self.stock,
                "per_user_limit": self.per_user_limit,
                "stackable": self.stackable,
            },
            "strategy": self.strategy.to_dict(),
        }
        if self.daily_spend is not None:
            d["plan"] = {"daily_spend": self.daily_spend}
        if self.description:
            d["description"] = self.description
        return d


def coerce(spec: Any) -> CampaignSpec:
    """A :class:`CampaignSpec` from itself, a dict, YAML text or a YAML file."""
    if isinstance(spec, CampaignSpec):
        return spec
    if isinstance(spec, Mapping):
        return CampaignSpec.from_dict(spec)
    if isinstance(spec, str | Path):
        return CampaignSpec.from_yaml(spec)
    raise ValidationError(f"campaign: expected a spec, mapping or YAML, got {type(spec).__name__}")


def require_inline(spec: Any, where: str = "the request") -> Mapping[str, Any]:
    """``spec`` as a mapping whose strategy and rules are inline, never file paths.

    A service must not read files a caller names (``strategy: /etc/...``): over HTTP a
    campaign arrives whole, as JSON.
    """
    if not isinstance(spec, Mapping):
        raise ValidationError(
            f"{where}: the campaign spec must be a JSON object, got {type(spec).__name__}"
        )
    strategy = spec.get("strategy")
    if strategy is not None and not isinstance(strategy, Mapping):
        raise ValidationError(
            f"{where}: campaign.strategy must be an inline object, not a file path"
        )
    rules = strategy.get("rules") if isinstance(strategy, Mapping) else None
    if rules is not None and not isinstance(rules, Mapping):
        raise ValidationError(
            f"{where}: campaign.strategy.rules must be an inline object, not a file path"
        )
    return spec


def diff(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """Field-level changes between two spec dicts: ``{"path": {"old": .., "new": ..}}``."""
    out: dict[str, Any] = {}

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in sorted(set(a) | set(b), key=str):
                walk(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        elif a != b:
            out[path or "."] = {"old": a, "new": b}

    walk(old or {}, new, "")
    return out
