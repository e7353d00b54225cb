"""The statistics of an A/B comparison, on summary numbers (counts, means, sds).

* Proportions: two-sided z-test with the pooled proportion (the classic test; equal to
  ``statsmodels.stats.proportion.proportions_ztest``); Wald CI of the difference with
  the unpooled variance; exact Beta-Binomial chance to beat control.
* Means: Welch's t-test and Welch CI (``scipy.stats.ttest_ind(equal_var=False)``);
  chance to beat control from the normal approximation of the difference (flat prior).
* Relative lift ``m_t / m_c - 1``: delta-method standard error
  ``sqrt(v_t / m_c² + m_t² v_c / m_c⁴)`` (``v`` the variance of each mean) and a normal CI.
* CUPED: ``y - θ (x - mean(x))`` with ``θ = cov(x, y) / var(x)`` pooled over all arms.
* Sample ratio mismatch: χ² goodness of fit of the arm counts to the planned shares.
* Multiple comparisons: Bonferroni, Holm (step-down), Benjamini–Hochberg (step-up).

References
----------
Deng, Xu, Kohavi, Walker (2013), "Improving the sensitivity of online controlled
experiments by utilizing pre-experiment data" (CUPED).
Kohavi, Tang, Xu (2020), *Trustworthy Online Controlled Experiments*, ch. 3 and 21.
Holm (1979); Benjamini and Hochberg (1995).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import special, stats

from mktlab.errors import ValidationError

CORRECTIONS = ("bonferroni", "holm", "bh", "none")
SRM_THRESHOLD = 1e-3
_EXACT_BETA_MAX = 5_000_000  # terms in the exact Beta sum before the normal approximation


def check_alpha(alpha: Any, name: str = "alpha") -> float:
    """``alpha`` as a float in (0, 1), else :class:`ValidationError` naming ``name``."""
    try:
        a = float(alpha)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{name}: must be a number in (0, 1), got {alpha!r}") from exc
    if not 0 < a < 1:
        raise ValidationError(f"{name}: must be in (0, 1), got {alpha!r}")
    return a


@dataclass(frozen=True)
class Comparison:
    """One treatment arm against the control on one metric."""

    metric: str
    kind: str
    arm: str
    control: str
    n_control: int
    n_arm: int
    mean_control: float
    mean_arm: float
    abs_lift: float
    abs_ci_low: float
    abs_ci_high: float
    rel_lift: float
    rel_ci_low: float
    rel_ci_high: float
    p_value: float
    chance_to_beat: float
    statistic: float
    test: str
    std_error: float

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (one row of a results table)."""
        return asdict(self)


def _z(alpha: float) -> float:
    # scipy.special is ~50x faster per call than the scipy.stats distribution objects
    return float(-special.ndtri(alpha / 2))


def _count(value: Any, name: str) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{name}: must be a count, got {value!r}") from exc
    if not math.isfinite(f) or f < 0 or f != int(f):
        raise ValidationError(f"{name}: must be a non-negative integer count, got {value!r}")
    return int(f)


def _relative(
    m_c: float, m_t: float, v_c: float, v_t: float, z: float
) -> tuple[float, float, float]:
    if m_c == 0:
        return math.nan, math.nan, math.nan
    rel = m_t / m_c - 1
    se = math.sqrt(v_t / m_c**2 + m_t**2 * v_c / m_c**4)
    return rel, rel - z * se, rel + z * se


def beta_chance_to_beat(a_c: float, b_c: float, a_t: float, b_t: float) -> float:
    """``P(p_t > p_c)`` for independent ``p_c ~ Beta(a_c, b_c)``, ``p_t ~ Beta(a_t, b_t)``.

    Exact closed form (a finite sum over ``a_t`` terms) when ``a_t`` is an integer;
    otherwise, or for more than 5 million terms, the normal approximation of the Betas.
    """
    for v, name in ((a_c, "a_c"), (b_c, "b_c"), (a_t, "a_t"), (b_t, "b_t")):
        if not (v > 0 and math.isfinite(v)):
            raise ValidationError(f"{name}: Beta parameters must be positive, got {v!r}")
    if float(a_t).is_integer() and a_t <= _EXACT_BETA_MAX:
        i = np.arange(int(a_t), dtype=float)
        logs = (
            special.betaln(a_c + i, b_c + b_t)
            - np.log(b_t + i)
            - special.betaln(1 + i, b_t)
            - special.betaln(a_c, b_c)
        )
        return float(min(1.0, max(0.0, np.exp(logs).sum())))

    def mv(a: float, b: float) -> tuple[float, float]:
        return a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))

    (mc, vc), (mt, vt) = mv(a_c, b_c), mv(a_t, b_t)
    return float(special.ndtr((mt - mc) / math.sqrt(vc + vt)))


def compare_proportions(
    x_control: int,
    n_control: int,
    x_arm: int,
    n_arm: int,
    *,
    alpha: float = 0.05,
    prior: tuple[float, float] = (1.0, 1.0),
    metric: str = "conversion",
    arm: str = "treatment",
    control: str = "control",
) -> Comparison:
    """Compare two conversion rates (successes ``x`` out of ``n`` units).

    Parameters
    ----------
    x_control, n_control, x_arm, n_arm : int
        Successes and units per arm; ``0 <= x <= n`` and ``n > 0``.
    alpha : float, default 0.05
        For the ``1 - alpha`` confidence intervals.
    prior : (float, float), default (1, 1)
        Beta prior of each rate for the chance to beat control.

    Returns
    -------
    Comparison
        Two-sided pooled z-test p-value; unpooled Wald CI of the difference.

    Examples
    --------
    >>> round(compare_proportions(1000, 10000, 1100, 10000).p_value, 5)
    0.02108
    """
    alpha = check_alpha(alpha)
    xc, nc = _count(x_control, f"{control}: conversions"), _count(n_control, f"{control}: units")
    xt, nt = _count(x_arm, f"{arm}: conversions"), _count(n_arm, f"{arm}: units")
    for x, n, who in ((xc, nc, control), (xt, nt, arm)):
        if n == 0:
            raise ValidationError(f"{who}: units must be > 0 (empty arm) for metric {metric!r}")
        if x > n:
            raise ValidationError(
                f"{who}: conversions ({x}) exceed units ({n}) for metric {metric!r}"
            )
    pc, pt = xc / nc, xt / nt
    d = pt - pc
    p_pool = (xc + xt) / (nc + nt)
    se0 = math.sqrt(p_pool * (1 - p_pool) * (1 / nc + 1 / nt))
    zstat = d / se0 if se0 > 0 else 0.0
    p = float(2 * special.ndtr(-abs(zstat))) if se0 > 0 else 1.0
    vc, vt = pc * (1 - pc) / nc, pt * (1 - pt) / nt
    se = math.sqrt(vc + vt)
    zq = _z(alpha)
    rel, rlo, rhi = _relative(pc, pt, vc, vt, zq)
    a0, b0 = prior
    ctb = beta_chance_to_beat(a0 + xc, b0 + nc - xc, a0 + xt, b0 + nt - xt)
    return Comparison(
        metric, "proportion", arm, control, nc, nt, pc, pt, d, d - zq * se, d + zq * se,
        rel, rlo, rhi, p, ctb, zstat, "z (pooled)", se,
    )  # fmt: skip


def compare_means(
    mean_control: float,
    sd_control: float,
    n_control: int,
    mean_arm: float,
    sd_arm: float,
    n_arm: int,
    *,
    alpha: float = 0.05,
    metric: str = "value",
    arm: str = "treatment",
    control: str = "control",
) -> Comparison:
    """Compare two means with Welch's t-test (unequal variances).

    Parameters
    ----------
    mean_control, sd_control, n_control, mean_arm, sd_arm, n_arm
        Per-arm mean, sample standard deviation (ddof=1) and units (>= 2).
    alpha : float, default 0.05

    Returns
    -------
    Comparison
        Welch p-value and Welch-t CI of the difference; normal delta-method CI of the
        relative lift; chance to beat control ``Φ(d / se)``.
    """
    alpha = check_alpha(alpha)
    nc, nt = _count(n_control, f"{control}: units"), _count(n_arm, f"{arm}: units")
    for n, who in ((nc, control), (nt, arm)):
        if n < 2:
            raise ValidationError(f"{who}: needs at least 2 units for metric {metric!r}, got {n}")
    vals = {
        "mean_control": mean_control,
        "sd_control": sd_control,
        "mean_arm": mean_arm,
        "sd_arm": sd_arm,
    }
    for k, v in vals.items():
        if not isinstance(v, int | float | np.number) or not math.isfinite(float(v)):
            raise ValidationError(f"{k}: must be a finite number for metric {metric!r}, got {v!r}")
        if k.startswith("sd") and v < 0:
            raise ValidationError(f"{k}: must be >= 0 for metric {metric!r}, got {v!r}")
    mc, mt = float(mean_control), float(mean_arm)
    vc, vt = float(sd_control) ** 2 / nc, float(sd_arm) ** 2 / nt
    d = mt - mc
    se = math.sqrt(vc + vt)
    if se > 0:
        df = se**4 / (vc**2 / (nc - 1) + vt**2 / (nt - 1))
        t = d / se
        p = float(2 * special.stdtr(df, -abs(t)))
        tq = float(-special.stdtrit(df, alpha / 2))
        ctb = float(special.ndtr(d / se))
    else:
        t, p, tq = 0.0, 1.0 if d == 0 else 0.0, 0.0
        ctb = 0.5 if d == 0 else float(d > 0)
    rel, rlo, rhi = _relative(mc, mt, vc, vt, _z(alpha))
    return Comparison(
        metric, "mean", arm, control, nc, nt, mc, mt, d, d - tq * se, d + tq * se,
        rel, rlo, rhi, p, ctb, t, "Welch t", se,
    )  # fmt: skip


@dataclass(frozen=True)
class SRMResult:
    """Sample ratio mismatch check: χ² of observed arm counts against planned shares."""

    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float
    p_value: float
    threshold: float

    @property
    def mismatch(self) -> bool:
        """True when ``p_value < threshold``: the split is broken, do not trust the lifts."""
        return self.p_value < self.threshold


def srm_test(
    counts: Mapping[str, int] | Sequence[int],
    shares: Mapping[str, float] | Sequence[float] | None = None,
    *,
    threshold: float = SRM_THRESHOLD,
) -> SRMResult:
    """χ² test that units split over arms as planned.

    Parameters
    ----------
    counts : mapping arm -> units, or sequence of units
    shares : mapping or sequence, optional
        Planned share (or weight) of each arm; equal shares by default.
    threshold : float, default 0.001
        Flag a mismatch below this p-value (a strict level: SRM checks run on every
        experiment, and a true mismatch gives tiny p-values).

    Examples
    --------
    >>> round(srm_test([4900, 5100]).p_value, 4)
    0.0455
    """
    threshold = check_alpha(threshold, "threshold")
    if isinstance(counts, Mapping):
        names = [str(k) for k in counts]
        obs = [_count(v, f"{k}: units") for k, v in counts.items()]
    else:
        obs = [_count(v, f"counts[{i}]") for i, v in enumerate(counts)]
        names = [f"arm{i}" for i in range(len(obs))]
    if len(obs) < 2:
        raise ValidationError(f"counts: an SRM check needs at least two arms, got {names}")
    if shares is None:
        w = np.ones(len(obs))
    elif isinstance(shares, Mapping):
        unknown = sorted(set(map(str, shares)) - set(names))
        missing = sorted(set(names) - set(map(str, shares)))
        if unknown or missing:
            raise ValidationError(f"shares: unknown arms {unknown}, arms without a share {missing}")
        w = np.array([float(shares[n]) for n in names])
    else:
        w = np.asarray(list(shares), dtype=float)
        if w.size != len(obs):
            raise ValidationError(f"shares: {w.size} shares for {len(obs)} arms")
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValidationError(f"shares: must be positive, got {w.tolist()}")
    total = sum(obs)
    if total == 0:
        raise ValidationError("counts: all arms are empty")
    exp = w / w.sum() * total
    chi2 = float(((np.asarray(obs) - exp) ** 2 / exp).sum())
    p = float(stats.chi2.sf(chi2, len(obs) - 1))
    return SRMResult(
        dict(zip(names, obs)), dict(zip(names, (w / w.sum()).tolist())), chi2, p, threshold
    )


def adjust_pvalues(p_values: Sequence[float] | np.ndarray, method: str = "holm") -> np.ndarray:
    """Adjust p-values for multiple comparisons.

    Parameters
    ----------
    p_values : array-like of float in [0, 1]
    method : {"bonferroni", "holm", "bh", "none"}
        Bonferroni and Holm control the family-wise error rate; Benjamini–Hochberg
        (``"bh"``, alias ``"fdr_bh"``) the false discovery rate.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values in the input order, capped at 1 (as
        ``statsmodels.stats.multitest.multipletests``).

    Examples
    --------
    >>> adjust_pvalues([.005, .011, .02, .04, .13], "holm").round(4).tolist()
    [0.025, 0.044, 0.06, 0.08, 0.13]
    """
    m_name = {"fdr_bh": "bh", "benjamini-hochberg": "bh", "bonf": "bonferroni"}.get(
        str(method).lower(), str(method).lower()
    )
    if m_name not in CORRECTIONS:
        raise ValidationError(f"correction: must be one of {CORRECTIONS}, got {method!r}")
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValidationError("p_values: must be one-dimensional")
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValidationError(
            f"p_values: must be in [0, 1], got {p[~((p >= 0) & (p <= 1))][:5].tolist()}"
        )
    m = p.size
    if m == 0 or m_name == "none":
        return p.copy()
    if m_name == "bonferroni":
        return np.minimum(p * m, 1.0)
    order = np.argsort(p, kind="stable")
    ps = p[order]
    if m_name == "holm":
        adj = np.maximum.accumulate(ps * (m - np.arange(m)))
    else:
        adj = np.minimum.accumulate((ps * m / np.arange(1, m + 1))[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def cuped_adjust(
    y: Sequence[float] | np.ndarray,
    x: Sequence[float] | np.ndarray,
    *,
    theta: float | None = None,
    metric: str = "y",
    covariate: str = "x",
) -> tuple[np.ndarray, float]:
    """CUPED: remove the part of ``y`` explained by the pre-period covariate ``x``.

    ``y_adj = y - θ (x - mean(x))`` with ``θ = cov(x, y) / var(x)`` over all units of all
    arms (pooled, so θ is the same in every arm and the adjustment adds no bias under
    randomisation). The mean of ``y_adj`` equals the mean of ``y``; its variance is
    ``(1 - ρ²)`` times as large.

    Returns
    -------
    (numpy.ndarray, float)
        The adjusted values and θ.
    """
    ya = np.asarray(y, dtype=float)
    xa = np.asarray(x, dtype=float)
    if ya.ndim != 1 or xa.ndim != 1:
        raise ValidationError(f"{covariate}: metric and covariate must be one-dimensional")
    if ya.shape != xa.shape:
        raise ValidationError(
            f"{covariate}: covariate has {xa.size} values but metric {metric!r} has {ya.size}"
        )
    if ya.size < 2:
        raise ValidationError(f"{metric}: CUPED needs at least 2 units")
    for arr, name in ((ya, metric), (xa, covariate)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise ValidationError(
                f"{name}: {bad.size} missing or infinite value(s), e.g. at rows {bad[:5].tolist()}"
            )
    xc = xa - xa.mean()
    if theta is None:
        vx = float(xc @ xc)
        theta = float(xc @ (ya - ya.mean()) / vx) if vx > 0 else 0.0
    return ya - theta * xc, float(theta)
