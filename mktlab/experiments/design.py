"""Experiment design: sample size per arm, minimum detectable effect, duration.

Proportions use the classic normal-approximation formula with the *pooled* variance
under the null and the unpooled variance under the alternative (Fleiss; the formula of
``statsmodels.stats.proportion.samplesize_proportions_2indep_onetail``)::

    n_c = (z_{1-a/2} sqrt(p̄ q̄ (1 + 1/k)) + z_{1-b} sqrt(p_c q_c + p_t q_t / k))² / d²
    p̄  = (p_c + k p_t) / (1 + k),   n_t = k n_c,   d = p_t - p_c

Means use ``n_c = (z_{1-a/2} + z_{1-b})² σ² (1 + 1/k) / d²`` (as statsmodels'
``NormalIndPower``). ``k`` is the allocation ratio ``n_treatment / n_control``. The far
tail of a two-sided test is ignored, as everywhere in practice (it changes nothing at
4 significant figures). With more than one treatment arm, every treatment is compared
with the control at the given alpha; pass ``alpha / (arms - 1)`` for a Bonferroni plan.

References
----------
Fleiss, Levin, Paik (2003), *Statistical Methods for Rates and Proportions*, ch. 4.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from scipy import optimize, stats

from mktlab.errors import ValidationError

ALTERNATIVES = ("two-sided", "larger", "smaller")


def _prob(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{name}: must be a number in (0, 1), got {value!r}") from exc
    if not 0 < v < 1:
        raise ValidationError(f"{name}: must be in (0, 1), got {value!r}")
    return v


def _positive(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{name}: must be a positive number, got {value!r}") from exc
    if not v > 0 or not math.isfinite(v):
        raise ValidationError(f"{name}: must be > 0, got {value!r}")
    return v


def _z(alpha: float, power: float, alternative: str) -> tuple[float, float]:
    if alternative not in ALTERNATIVES:
        raise ValidationError(f"alternative: must be one of {ALTERNATIVES}, got {alternative!r}")
    a = alpha / 2 if alternative == "two-sided" else alpha
    return float(stats.norm.isf(a)), float(stats.norm.isf(1 - power))


@dataclass(frozen=True)
class SampleSize:
    """A sample-size plan: units per arm and the inputs that produced it."""

    kind: str
    n_control: int
    n_treatment: int
    n_arms: int
    baseline: float
    mde_absolute: float
    mde_relative: float
    alpha: float
    power: float
    ratio: float
    alternative: str
    sd: float | None = None

    @property
    def per_arm(self) -> int:
        """Units in each treatment arm (equal to the control at ratio 1)."""
        return self.n_treatment

    @property
    def total(self) -> int:
        """Units over all arms: the control plus ``n_arms - 1`` treatment arms."""
        return self.n_control + (self.n_arms - 1) * self.n_treatment

    def duration(self, daily_traffic: float, traffic_share: float = 1.0) -> Duration:
        """Days needed at ``daily_traffic`` eligible units a day (see :func:`duration`)."""
        return duration(self.total, daily_traffic, traffic_share=traffic_share)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the plan (for logging)."""
        return {**asdict(self), "total": self.total}


@dataclass(frozen=True)
class Duration:
    """How long an experiment must run: raw days and whole weeks (at least one)."""

    total_units: int
    units_per_day: float
    days_needed: int
    weeks: int

    @property
    def days(self) -> int:
        """Days to run: whole weeks, so every weekday is seen equally often."""
        return 7 * self.weeks


def duration(total_units: int, daily_traffic: float, *, traffic_share: float = 1.0) -> Duration:
    """Run time for ``total_units`` at ``daily_traffic`` eligible units a day.

    Rounded up to whole weeks and never shorter than one week, so weekly seasonality is
    balanced and day-of-week novelty washes out.

    Parameters
    ----------
    total_units : int
        Units needed over all arms (``SampleSize.total``).
    daily_traffic : float
        New eligible units a day.
    traffic_share : float, default 1.0
        Share of the eligible traffic sent into the experiment, in (0, 1].
    """
    total = _positive(total_units, "total_units")
    per_day = _positive(daily_traffic, "daily_traffic")
    share = float(traffic_share)
    if not 0 < share <= 1:
        raise ValidationError(f"traffic_share: must be in (0, 1], got {traffic_share!r}")
    units_per_day = per_day * share
    days = math.ceil(total / units_per_day - 1e-9)
    return Duration(int(total), units_per_day, days, max(1, math.ceil(days / 7)))


def _ratio(ratio: Any) -> float:
    return _positive(ratio, "ratio")


def _arms(n_arms: Any) -> int:
    if not isinstance(n_arms, int) or isinstance(n_arms, bool) or n_arms < 2:
        raise ValidationError(f"n_arms: an experiment needs at least two arms, got {n_arms!r}")
    return n_arms


def _n_control_prop(p_c: float, p_t: float, k: float, za: float, zb: float) -> float:
    p_bar = (p_c + k * p_t) / (1 + k)
    sd_null = math.sqrt(p_bar * (1 - p_bar) * (1 + 1 / k))
    sd_alt = math.sqrt(p_c * (1 - p_c) + p_t * (1 - p_t) / k)
    return (za * sd_null + zb * sd_alt) ** 2 / (p_t - p_c) ** 2


def sample_size_proportion(
    baseline: float,
    mde: float,
    *,
    relative: bool = True,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    n_arms: int = 2,
    alternative: str = "two-sided",
) -> SampleSize:
    """Units per arm to detect a change of a conversion rate.

    Parameters
    ----------
    baseline : float
        Control conversion rate, in (0, 1).
    mde : float
        Minimum detectable effect (> 0): relative (0.05 = +5 %) or absolute (0.005 =
        +0.5 points) per ``relative``.
    relative : bool, default True
    alpha : float, default 0.05
        Type I error, in (0, 1).
    power : float, default 0.8
        1 - type II error, in (0, 1).
    ratio : float, default 1.0
        Allocation ratio ``n_treatment / n_control``.
    n_arms : int, default 2
        Arms including the control (for ``total``).
    alternative : {"two-sided", "larger", "smaller"}

    Returns
    -------
    SampleSize
        ``n_control`` and ``n_treatment`` rounded up.

    Examples
    --------
    >>> sample_size_proportion(0.10, 0.05).n_control
    57763
    """
    p_c = _prob(baseline, "baseline")
    d_in = _positive(mde, "mde")
    alpha, power, k = _prob(alpha, "alpha"), _prob(power, "power"), _ratio(ratio)
    za, zb = _z(alpha, power, alternative)
    d = d_in * p_c if relative else d_in
    p_t = p_c + d
    if not 0 < p_t < 1:
        raise ValidationError(
            f"mde: baseline {p_c} plus the effect gives a rate {p_t:.6g} outside (0, 1)"
        )
    n_c = _n_control_prop(p_c, p_t, k, za, zb)
    return SampleSize(
        "proportion", math.ceil(n_c - 1e-9), math.ceil(k * n_c - 1e-9), _arms(n_arms),
        p_c, d, d / p_c, alpha, power, k, alternative,
    )  # fmt: skip


def sample_size_mean(
    baseline: float,
    sd: float,
    mde: float,
    *,
    relative: bool = True,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    n_arms: int = 2,
    alternative: str = "two-sided",
) -> SampleSize:
    """Units per arm to detect a change of a mean (e.g. revenue per user).

    Parameters
    ----------
    baseline : float
        Control mean (needed for a relative MDE; must be non-zero then).
    sd : float
        Standard deviation of the metric per unit (> 0), assumed equal in both arms.
    mde : float
        Minimum detectable effect (> 0), relative to ``baseline`` or absolute.
    relative, alpha, power, ratio, n_arms, alternative
        As in :func:`sample_size_proportion`.
    """
    s = _positive(sd, "sd")
    d_in = _positive(mde, "mde")
    base = float(baseline)
    if relative and (base == 0 or not math.isfinite(base)):
        raise ValidationError(
            f"baseline: a relative MDE needs a non-zero baseline mean, got {baseline!r}"
        )
    alpha, power, k = _prob(alpha, "alpha"), _prob(power, "power"), _ratio(ratio)
    za, zb = _z(alpha, power, alternative)
    d = d_in * abs(base) if relative else d_in
    n_c = (za + zb) ** 2 * s**2 * (1 + 1 / k) / d**2
    return SampleSize(
        "mean", math.ceil(n_c - 1e-9), math.ceil(k * n_c - 1e-9), _arms(n_arms),
        base, d, d / abs(base) if base else math.nan, alpha, power, k, alternative, s,
    )  # fmt: skip


def _n(value: Any, name: str) -> float:
    v = _positive(value, name)
    if v < 2:
        raise ValidationError(f"{name}: need at least 2 units, got {value!r}")
    return v


def mde_proportion(
    baseline: float,
    n_control: float,
    *,
    relative: bool = True,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: str = "two-sided",
) -> float:
    """Smallest upward change of a rate detectable with ``n_control`` units in the control.

    The inverse of :func:`sample_size_proportion`: returns the relative MDE (or the
    absolute one when ``relative=False``).
    """
    p_c = _prob(baseline, "baseline")
    n = _n(n_control, "n_control")
    alpha, power, k = _prob(alpha, "alpha"), _prob(power, "power"), _ratio(ratio)
    za, zb = _z(alpha, power, alternative)
    hi = (1 - p_c) * (1 - 1e-12)
    if _n_control_prop(p_c, p_c + hi, k, za, zb) > n:
        raise ValidationError(
            f"n_control: {n:g} units cannot detect any change from {p_c} at this power"
        )
    d = optimize.brentq(
        lambda x: _n_control_prop(p_c, p_c + x, k, za, zb) - n, 1e-12, hi, xtol=1e-14, rtol=1e-12
    )
    return d / p_c if relative else d


def mde_mean(
    sd: float,
    n_control: float,
    *,
    baseline: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
    alternative: str = "two-sided",
) -> float:
    """Smallest change of a mean detectable with ``n_control`` units in the control.

    Absolute, or relative to ``baseline`` when it is given.
    """
    s = _positive(sd, "sd")
    n = _n(n_control, "n_control")
    alpha, power, k = _prob(alpha, "alpha"), _prob(power, "power"), _ratio(ratio)
    za, zb = _z(alpha, power, alternative)
    d = (za + zb) * s * math.sqrt((1 + 1 / k) / n)
    if baseline is None:
        return d
    if float(baseline) == 0:
        raise ValidationError("baseline: must be non-zero for a relative MDE")
    return d / abs(float(baseline))
