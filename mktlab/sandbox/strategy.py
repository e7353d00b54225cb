"""A strategy as data: audience, treatment policy, rules, coupon terms, budget and caps.

Example YAML::

    name: email-top30
    audience: null                 # an audience name / expression, or null for everyone
    policy: {kind: uplift_threshold, model: hillstrom-tlearner, top_fraction: 0.3,
             arm: Womens E-Mail}
    coupon: {face_value: 0, send_cost: 0.1, margin: 1.0}
    budget: {max_coupons: 20000}
    caps: [{channel: coupon, max: 1, per: 30d}]

Policy kinds: ``none`` (treat nobody), ``all`` (everyone in the audience), ``random``
(``rate``, ``seed``), ``uplift_threshold`` (``model`` + ``threshold`` or
``top_fraction``), ``rule`` (treat when a rule issues a coupon or message; ``rules``
holds the rule set), ``logged`` (the logging policy itself, for a baseline).

A ``rule`` policy runs either over the logged decision rows themselves (fields
``event.<log column>``) or, when :func:`mktlab.sandbox.replay` gets an event stream, over
those events in time order: a decision is treated when a rule touched the user (an
allowed coupon or message) before it, within ``policy.lookback`` if given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mktlab.errors import ValidationError
from mktlab.rules.caps import Budget
from mktlab.rules.model import FrequencyCap, RuleSet, cap_from_dict, parse_duration

POLICY_KINDS = ("none", "all", "random", "uplift_threshold", "rule", "logged")


@dataclass(frozen=True)
class Policy:
    """How the strategy picks who is treated (see module docstring for the kinds)."""

    kind: str
    rate: float | None = None
    seed: int = 0
    model: str | None = None
    threshold: float | None = None
    top_fraction: float | None = None
    arm: Any = None
    lookback: Any = None

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise ValidationError(f"policy.kind: expected one of {POLICY_KINDS}, got {self.kind!r}")
        if self.kind == "random" and (
            isinstance(self.rate, bool)
            or not isinstance(self.rate, int | float)
            or not 0 <= self.rate <= 1
        ):
            raise ValidationError(f"policy.rate: random needs a rate in [0, 1], got {self.rate!r}")
        if self.lookback is not None:
            object.__setattr__(
                self, "lookback", parse_duration(self.lookback, what="policy.lookback")
            )
        if self.kind == "uplift_threshold":
            if not self.model:
                raise ValidationError("policy.model: uplift_threshold needs a model name")
            if (self.threshold is None) == (self.top_fraction is None):
                raise ValidationError(
                    "policy: uplift_threshold needs exactly one of threshold or top_fraction"
                )
            if self.top_fraction is not None and not 0 < self.top_fraction <= 1:
                raise ValidationError(
                    f"policy.top_fraction: expected (0, 1], got {self.top_fraction!r}"
                )

    def to_dict(self) -> dict:
        return {
            k: v for k, v in self.__dict__.items() if v is not None and not (k == "seed" and v == 0)
        }


@dataclass(frozen=True)
class CouponTerms:
    """What a treatment costs and earns.

    ``face_value`` is paid per redemption (a treated user who converts), ``send_cost``
    per treated user, and ``margin`` turns incremental revenue into profit.
    """

    face_value: float = 0.0
    send_cost: float = 0.0
    margin: float = 1.0
    channel: str = "coupon"

    def __post_init__(self) -> None:
        for name in ("face_value", "send_cost", "margin"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise ValidationError(f"coupon.{name}: expected a number >= 0, got {v!r}")

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Strategy:
    """A named strategy: who (audience), how (policy / rules), at what price and limits."""

    name: str
    policy: Policy
    audience: str | None = None
    rules: RuleSet | None = None
    coupon: CouponTerms = field(default_factory=CouponTerms)
    budget: Budget = field(default_factory=Budget)
    caps: tuple[FrequencyCap, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError(f"strategy.name: expected a name, got {self.name!r}")
        if not isinstance(self.policy, Policy):
            raise ValidationError("strategy.policy: expected a Policy")
        if self.policy.kind == "rule" and self.rules is None:
            raise ValidationError(f"strategy {self.name!r}: policy 'rule' needs a rules section")
        object.__setattr__(self, "caps", tuple(self.caps))

    @classmethod
    def from_dict(cls, d: Any, *, base_dir: Path | None = None) -> Strategy:
        if not isinstance(d, dict):
            raise ValidationError(f"strategy: expected a mapping, got {type(d).__name__}")
        unknown = set(d) - {
            "name",
            "policy",
            "audience",
            "rules",
            "coupon",
            "budget",
            "caps",
            "description",
        }
        if unknown:
            raise ValidationError(f"strategy: unknown key(s) {sorted(unknown)}")
        pol = d.get("policy")
        if isinstance(pol, str):
            pol = {"kind": pol}
        if not isinstance(pol, dict):
            raise ValidationError(f"strategy.policy: expected a mapping with 'kind', got {pol!r}")
        bad = set(pol) - set(Policy.__dataclass_fields__)
        if bad:
            raise ValidationError(f"strategy.policy: unknown key(s) {sorted(bad)}")
        rules = d.get("rules")
        if isinstance(rules, str):
            path = (
                Path(rules) if base_dir is None or Path(rules).is_absolute() else base_dir / rules
            )
            rules = RuleSet.from_yaml(path)
        elif rules is not None:
            rules = RuleSet.from_dict(rules)
        coupon = d.get("coupon") or {}
        if not isinstance(coupon, dict) or set(coupon) - set(CouponTerms.__dataclass_fields__):
            raise ValidationError(
                f"strategy.coupon: expected {{face_value, send_cost, margin, channel}}, got {coupon!r}"
            )
        return cls(
            name=d.get("name", ""),
            policy=Policy(**pol),
            audience=d.get("audience"),
            rules=rules,
            coupon=CouponTerms(**coupon),
            budget=Budget.from_dict(d.get("budget")),
            caps=tuple(
                cap_from_dict(c, where=f"caps[{i}]") for i, c in enumerate(d.get("caps") or [])
            ),
            description=d.get("description", ""),
        )

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> Strategy:
        """Parse YAML text or a file (paths inside resolve relative to the file)."""
        import yaml

        base = None
        text = str(text_or_path)
        if isinstance(text_or_path, Path) or (
            "\n" not in text and text.endswith((".yaml", ".yml"))
        ):
            path = Path(text_or_path)
            if not path.exists():
                from mktlab.errors import NotFoundError

                raise NotFoundError(f"strategy file {str(path)!r} does not exist")
            text, base = path.read_text(), path.parent
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValidationError(f"strategy YAML: {exc}") from None
        return cls.from_dict(d, base_dir=base)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {
            "name": self.name,
            "policy": self.policy.to_dict(),
            "audience": self.audience,
        }
        if self.rules is not None:
            d["rules"] = self.rules.to_dict()
        d["coupon"] = self.coupon.to_dict()
        d["budget"] = self.budget.to_dict()
        d["caps"] = [c.to_dict() for c in self.caps]
        if self.description:
            d["description"] = self.description
        return d

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
