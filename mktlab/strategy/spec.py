"""A strategy as data: audience, triggers, treatment policy, caps, coupon, budget, messages.

One versioned object means the same thing everywhere: :func:`mktlab.sandbox.replay`
replays it over logged decisions, :func:`mktlab.strategy.simulate` runs it over an event
log on an event-time clock, the live workers (:mod:`mktlab.live`) run it on the event
bus, and the service's ``/issue`` checks a coupon request against it
(:mod:`mktlab.strategy.eligibility` is the one home of "who gets what, how often").

Example YAML::

    name: cart-rescue
    version: 3
    campaign_id: spring-sale          # the issuer's campaign for coupons (live and /issue)
    audience: young                   # a saved audience name, or null for everyone
    holdout: 0.1                      # 10% never treated, by salted hash (kept for the campaign)
    policy: {kind: uplift_threshold, model: uplift, threshold: 0.01}
    rules: rules/cart.yaml            # triggers: atomic and windowed events (mktlab.rules)
    caps: [{channel: coupon, max: 1, per: 7d}, {channel: null, max: 3, per: 1d}]
    coupon: {face_value: 5, send_cost: 0.05, margin: 0.3}
    budget: {max_coupons: 20000, max_spend: 100000}
    channels: [push, sms]             # message fallback order after the rule's own channel
    templates:
      cart: {body: "Your cart misses you, {name}", channels: [push, sms]}

Policy kinds: ``none`` (treat nobody), ``all`` (everyone in the audience), ``random``
(``rate``; drawn by salted hash, so a user's draw is the same in every runtime),
``uplift_threshold`` (``model`` + ``threshold`` or ``top_fraction``; live and ``/issue``
need ``threshold``), ``rule`` (treat when a rule fires; ``rules`` holds the rule set),
``logged`` (the logging policy itself, for a sandbox baseline).

A ``rule`` policy runs either over the logged decision rows themselves (fields
``event.<log column>``) or, when :func:`mktlab.sandbox.replay` gets an event stream, over
those events in time order: a decision is treated when a rule touched the user (an
allowed coupon or message) before it, within ``policy.lookback`` if given.

:func:`Strategy.from_dict` checks the document against :data:`STRATEGY_SCHEMA` (JSON
Schema) first, so a typo names its path (``strategy.policy.rate: ...``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mktlab.errors import ValidationError
from mktlab.rules.caps import Budget
from mktlab.rules.model import FrequencyCap, RuleSet, cap_from_dict, parse_duration
from mktlab.strategy.schema import check_schema

POLICY_KINDS = ("none", "all", "random", "uplift_threshold", "rule", "logged")


@dataclass(frozen=True)
class TreatmentPolicy:
    """How the strategy picks who is treated (see the module docstring for the kinds)."""

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


CHANNEL_NAMES = ("push", "sms", "wechat", "inapp", "email", "webhook")


@dataclass(frozen=True)
class TemplateSpec:
    """A message template a strategy sends: ``body`` with ``{placeholders}``, allowed channels."""

    body: str
    channels: tuple[str, ...] = ()
    title: str | None = None

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"body": self.body}
        if self.channels:
            d["channels"] = list(self.channels)
        if self.title:
            d["title"] = self.title
        return d


@dataclass(frozen=True)
class Strategy:
    """A named, versioned strategy: who (audience, holdout), when (rules), how (policy),
    at what price and limits (coupon, budget, caps), and what it says (templates, channels).
    """

    name: str
    policy: TreatmentPolicy
    audience: str | None = None
    rules: RuleSet | None = None
    coupon: CouponTerms = field(default_factory=CouponTerms)
    budget: Budget = field(default_factory=Budget)
    caps: tuple[FrequencyCap, ...] = ()
    description: str = ""
    version: int = 1
    campaign_id: str | None = None
    holdout: float = 0.0
    salt: str | None = None
    channels: tuple[str, ...] = ()
    templates: Mapping[str, TemplateSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError(f"strategy.name: expected a name, got {self.name!r}")
        if not isinstance(self.policy, TreatmentPolicy):
            raise ValidationError("strategy.policy: expected a TreatmentPolicy")
        if self.policy.kind == "rule" and self.rules is None:
            raise ValidationError(f"strategy {self.name!r}: policy 'rule' needs a rules section")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ValidationError(
                f"strategy.version: expected an integer >= 1, got {self.version!r}"
            )
        if (
            isinstance(self.holdout, bool)
            or not isinstance(self.holdout, int | float)
            or not (0 <= self.holdout < 1)
        ):
            raise ValidationError(
                f"strategy.holdout: expected a fraction in [0, 1), got {self.holdout!r}"
            )
        if self.campaign_id is not None:
            from mktlab.coupons.campaign import CAMPAIGN_ID_RE

            if not isinstance(self.campaign_id, str) or not CAMPAIGN_ID_RE.fullmatch(
                self.campaign_id
            ):
                raise ValidationError(
                    f"strategy.campaign_id={self.campaign_id!r}: expected 1-64 letters, digits, _.-"
                )
        object.__setattr__(self, "caps", tuple(self.caps))
        object.__setattr__(self, "channels", tuple(self.channels))
        for c in self.channels:
            if c not in CHANNEL_NAMES:
                raise ValidationError(
                    f"strategy.channels: unknown channel {c!r}; known: {CHANNEL_NAMES}"
                )
        templates = {}
        for k, t in dict(self.templates).items():
            if isinstance(t, str):
                t = TemplateSpec(t)
            elif isinstance(t, Mapping):
                t = TemplateSpec(t.get("body", ""), tuple(t.get("channels") or ()), t.get("title"))
            if not isinstance(t, TemplateSpec) or not t.body:
                raise ValidationError(f"strategy.templates.{k}: expected a body")
            templates[k] = t
        object.__setattr__(self, "templates", templates)
        if self.rules is not None:
            from mktlab.rules.model import SendMessage

            for r in self.rules.rules:
                for a in r.actions:
                    if (
                        isinstance(a, SendMessage)
                        and self.templates
                        and a.template not in self.templates
                    ):
                        raise ValidationError(
                            f"strategy {self.name!r}: rule {r.id!r} sends template {a.template!r}, "
                            f"which strategy.templates does not define ({sorted(self.templates)})"
                        )

    @property
    def key(self) -> str:
        """``name:v<version>``: the prefix of every live decision and effect key."""
        return f"{self.name}:v{self.version}"

    @property
    def assignment_salt(self) -> str:
        return self.salt or self.name

    def message_channels(self, first: str | None) -> tuple[str, ...]:
        """Delivery order of a message: the rule's channel, then :attr:`channels`."""
        order = [first] if first in CHANNEL_NAMES else []
        order += [c for c in self.channels if c not in order]
        return tuple(order) or ("push",)

    @classmethod
    def from_dict(cls, d: Any, *, base_dir: Path | None = None) -> Strategy:
        check_schema(d)
        pol = d.get("policy")
        if isinstance(pol, str):
            pol = {"kind": pol}
        rules = d.get("rules")
        if isinstance(rules, str):
            path = (
                Path(rules) if base_dir is None or Path(rules).is_absolute() else base_dir / rules
            )
            rules = RuleSet.from_yaml(path)
        elif rules is not None:
            rules = RuleSet.from_dict(rules)
        return cls(
            name=d.get("name", ""),
            policy=TreatmentPolicy(**pol),
            audience=d.get("audience"),
            rules=rules,
            coupon=CouponTerms(**(d.get("coupon") or {})),
            budget=Budget.from_dict(d.get("budget")),
            caps=tuple(
                cap_from_dict(c, where=f"caps[{i}]") for i, c in enumerate(d.get("caps") or [])
            ),
            description=d.get("description", ""),
            version=d.get("version", 1),
            campaign_id=d.get("campaign_id"),
            holdout=d.get("holdout", 0.0),
            salt=d.get("salt"),
            channels=tuple(d.get("channels") or ()),
            templates=d.get("templates") or {},
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
        d["version"] = self.version
        for k in ("campaign_id", "salt"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.holdout:
            d["holdout"] = self.holdout
        if self.channels:
            d["channels"] = list(self.channels)
        if self.templates:
            d["templates"] = {k: t.to_dict() for k, t in self.templates.items()}
        return d

    def fingerprint(self) -> str:
        """A short hash of the whole definition: two runtimes agree they run the same thing."""
        import hashlib
        import json

        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
