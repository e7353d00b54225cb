"""The controls at each step of a campaign's life; each finding names the problem.

- :func:`check_definition` (create, update, submit): the budget under the ceiling, coupon
  stock the budget can pay for, a known audience, no rule conflicts
  (:func:`mktlab.rules.governance.find_conflicts`), no sensitive words in the message
  templates (:attr:`CampaignSettings.sensitive_words`, configurable).
- :func:`check_overlap` (approve, launch, resume): a campaign whose window overlaps a
  running one's and whose audience shares users with it (counted exactly from the
  saved bitmaps) is refused unless both say their coupons stack (``coupon.stackable``):
  otherwise a user would hold two coupons that were priced to be exclusive.
- :func:`check_approvals` (launch): approvals of the version being launched, by
  approvers other than the owner; above :attr:`CampaignSettings.two_approvals_above`
  of budget, two distinct approvers.
- :func:`check_simulation` (launch): a sandbox simulation of exactly this version's
  strategy, with its predicted spend inside the budget.

Each returns a list of :class:`Problem`; :class:`CampaignRefused` carries them all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mktlab.campaigns.spec import CampaignSpec, iso
from mktlab.errors import ValidationError

DEFAULT_SENSITIVE_WORDS = (
    "guaranteed",
    "risk-free",
    "free money",
    "act now or",
    "winner",
    "cure",
    "lottery",
)


@dataclass(frozen=True)
class CampaignSettings:
    """Limits the checks enforce (defaults suit a demo; set your own per workspace).

    Parameters
    ----------
    budget_ceiling : float
        No campaign may budget more than this.
    two_approvals_above : float
        Budgets above this need two distinct approvers (one otherwise).
    sensitive_words : tuple of str
        Words and phrases refused in message templates (case-insensitive, whole words).
    require_simulation : bool
        Launch needs a stored sandbox simulation of the version.
    """

    budget_ceiling: float = 1_000_000.0
    two_approvals_above: float = 10_000.0
    sensitive_words: tuple[str, ...] = DEFAULT_SENSITIVE_WORDS
    require_simulation: bool = True

    def __post_init__(self) -> None:
        for name in ("budget_ceiling", "two_approvals_above"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise ValidationError(f"CampaignSettings.{name}: expected a number >= 0, got {v!r}")
        object.__setattr__(self, "sensitive_words", tuple(str(w) for w in self.sensitive_words))


@dataclass(frozen=True)
class Problem:
    """One finding: which ``check`` and what is wrong."""

    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.check}: {self.message}"


class CampaignRefused(ValidationError):
    """A step was refused; ``problems`` lists every finding."""

    def __init__(self, campaign_id: str, step: str, problems: Sequence[Problem]):
        self.campaign_id, self.step, self.problems = campaign_id, step, list(problems)
        lines = "; ".join(str(p) for p in self.problems)
        super().__init__(f"campaign {campaign_id!r}: {step} refused: {lines}")


# ------------------------------------------------------------------------- audiences
def audience_bitmap(audiences: Any, name: str) -> Any:
    """The bitmap (or set) of saved audience ``name`` in ``audiences``, or None if unknown.

    ``audiences`` is a mapping name -> bitmap/set, a :class:`~mktlab.audience.membership.SavedAudiences`
    (``bitmap(name)``) or an :class:`~mktlab.audience.catalog.AudienceCatalog` (``get(name).bitmap``).
    """
    from mktlab.errors import NotFoundError

    try:
        if isinstance(audiences, Mapping):
            return audiences.get(name)
        if hasattr(audiences, "bitmap"):
            return audiences.bitmap(name)
        if hasattr(audiences, "get"):
            return audiences.get(name).bitmap
    except (NotFoundError, KeyError):
        return None
    raise ValidationError(f"audiences: cannot look up audiences in a {type(audiences).__name__}")


def _overlap(a: Any, b: Any) -> int:
    if hasattr(a, "intersection_cardinality"):
        try:
            return int(a.intersection_cardinality(b))
        except TypeError:
            pass
    return len(set(a) & set(b))


# ------------------------------------------------------------------------- checks
_TEMPLATE_FIELDS = ("body", "title")


def sensitive_hits(text: str, words: Iterable[str]) -> list[str]:
    """The ``words`` (whole words or phrases, any case) found in ``text``."""
    out = []
    for w in words:
        if re.search(rf"(?<!\w){re.escape(w)}(?!\w)", text, flags=re.IGNORECASE):
            out.append(w)
    return out


def check_definition(
    spec: CampaignSpec, settings: CampaignSettings, *, audiences: Any = None
) -> list[Problem]:
    """Budget ceiling, stock vs budget, known audience, rule conflicts, sensitive words."""
    out: list[Problem] = []
    if spec.max_spend > settings.budget_ceiling:
        out.append(
            Problem(
                "budget",
                f"max_spend {spec.max_spend:,.2f} is above the ceiling {settings.budget_ceiling:,.2f}",
            )
        )
    fv = spec.face_value
    if fv > 0 and spec.stock * fv > spec.max_spend * 10:
        out.append(
            Problem("budget", f"stock {spec.stock} x face value {fv:g} = {spec.stock * fv:,.2f} "
                    f"is more than ten times the budget {spec.max_spend:,.2f}; lower the stock")
        )  # fmt: skip
    if (
        spec.audience is not None
        and audiences is not None
        and audience_bitmap(audiences, spec.audience) is None
    ):
        out.append(
            Problem(
                "audience",
                f"unknown audience {spec.audience!r}: save it first (mktlab audience save)",
            )
        )
    if spec.strategy.rules is not None:
        from mktlab.rules.governance import find_conflicts

        for c in find_conflicts(spec.strategy.rules):
            if c.kind == "coupon_stacking":
                out.append(Problem("rule_conflict", str(c)))
    for name, t in spec.strategy.templates.items():
        for f in _TEMPLATE_FIELDS:
            hits = sensitive_hits(getattr(t, f) or "", settings.sensitive_words)
            if hits:
                out.append(Problem("sensitive_words", f"template {name!r} {f} contains {hits}"))
    return out


def windows_overlap(a: CampaignSpec, b: CampaignSpec) -> bool:
    return a.start < b.end and b.start < a.end


def check_overlap(
    spec: CampaignSpec, running: Iterable[CampaignSpec], *, audiences: Any = None
) -> list[Problem]:
    """Overlap in time and audience with running campaigns, unless both stack."""
    out: list[Problem] = []
    mine = (
        None
        if spec.audience is None or audiences is None
        else audience_bitmap(audiences, spec.audience)
    )
    for other in running:
        if other.campaign_id == spec.campaign_id or not windows_overlap(spec, other):
            continue
        if spec.stackable and other.stackable:
            continue
        theirs = (
            None
            if other.audience is None or audiences is None
            else audience_bitmap(audiences, other.audience)
        )
        if spec.audience is None or other.audience is None:
            shared = (
                "all"
                if mine is None and theirs is None
                else len(mine if theirs is None else theirs)
            )
        elif mine is None or theirs is None:
            shared = "unknown"  # an audience could not be read: refuse rather than guess
        else:
            shared = _overlap(mine, theirs)
        if shared == 0:
            continue
        out.append(
            Problem(
                "overlap",
                f"window {iso(spec.start)}..{iso(spec.end)} overlaps running campaign "
                f"{other.campaign_id!r} ({iso(other.start)}..{iso(other.end)}) and "
                f"{shared} user(s) are in both audiences; coupons would stack "
                "(mark both coupon.stackable, or move the window or the audience)",
            )
        )
    return out


def required_approvals(spec: CampaignSpec, settings: CampaignSettings) -> int:
    return 2 if spec.max_spend > settings.two_approvals_above else 1


def check_approvals(
    spec: CampaignSpec, owner: str, approvers: Iterable[str], settings: CampaignSettings
) -> list[Problem]:
    """Enough distinct approvers of this version, none of them the owner."""
    got = sorted({a for a in approvers if a != owner})
    need = required_approvals(spec, settings)
    if len(got) >= need:
        return []
    return [
        Problem(
            "approvals",
            f"budget {spec.max_spend:,.2f} needs {need} distinct approver(s) other than the "
            f"owner {owner!r}; has {len(got)}{' (' + ', '.join(got) + ')' if got else ''}",
        )
    ]


def check_simulation(
    spec: CampaignSpec, simulation: Mapping[str, Any] | None, settings: CampaignSettings
) -> list[Problem]:
    """A stored simulation of exactly this strategy, predicting spend inside the budget."""
    if not settings.require_simulation:
        return []
    if not simulation:
        return [
            Problem(
                "simulation",
                "no sandbox simulation of this version; run `mktlab campaign simulate` first",
            )
        ]
    out = []
    if simulation.get("strategy_fingerprint") != spec.strategy.fingerprint():
        out.append(
            Problem(
                "simulation",
                "the stored simulation is of another strategy definition; simulate again",
            )
        )
    spend = simulation.get("spend")
    if isinstance(spend, bool) or not isinstance(spend, int | float) or not math.isfinite(spend):
        out.append(
            Problem(
                "simulation",
                f"the stored predicted spend {spend!r} is not a number; simulate again",
            )
        )
    elif spend > spec.max_spend:
        out.append(
            Problem(
                "simulation",
                f"predicted spend {spend:,.2f} is above the budget {spec.max_spend:,.2f}",
            )
        )
    return out
