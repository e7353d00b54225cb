"""Off-policy estimators: IPS, self-normalised IPS, direct method and doubly robust.

Notation (Dudík et al. 2011; Swaminathan & Joachims 2015): logged rows
``(x_i, a_i, r_i, p_i)`` with ``p_i = μ(a_i | x_i)`` the logging propensity, a target
policy ``π(a | x)`` and a reward model ``q(x, a) ≈ E[r | x, a]``. With
``w_i = π(a_i | x_i) / p_i`` the estimators of the *total* reward ``Σ_i E[r_i(π)]`` are

* IPS:   ``Σ_i w_i r_i``
* SNIPS: ``n · Σ_i w_i r_i / Σ_i w_i``
* DM:    ``Σ_i Σ_a π(a | x_i) q(x_i, a)``
* DR:    ``DM + Σ_i w_i (r_i − q(x_i, a_i))``

Every estimator here is decomposed per arm (``V_a`` = reward earned through arm ``a``),
so one pass gives conversions, redemptions (treated arms only) and revenue. Intervals
come from a Poisson bootstrap over rows (Hanley & MacGibbon 2006), computed as a matrix
product so thousands of replicates stay cheap; the reward model is fitted once with
cross-fitting, not per replicate.

References
----------
Dudík, Langford, Li (2011), Doubly Robust Policy Evaluation and Learning.
Swaminathan, Joachims (2015), The Self-Normalized Estimator for Counterfactual Learning.
Kong (1992) / Owen (2013): effective sample size ``(Σw)² / Σw²``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from mktlab.errors import ValidationError

ESTIMATORS = ("ips", "snips", "dm", "dr")


class LowEffectiveSampleSizeWarning(UserWarning):
    """Importance weights are so uneven that few rows carry the estimate."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval."""

    value: float
    lo: float
    hi: float
    se: float

    @property
    def width(self) -> float:
        return self.hi - self.lo

    def covers(self, x: float) -> bool:
        return self.lo <= x <= self.hi


def check_bandit_inputs(action, pscore, reward, pi, q_hat=None) -> tuple[Any, ...]:
    """Validate shapes and ranges; return float/int arrays."""
    a = np.asarray(action)
    r = np.asarray(reward, dtype=float)
    pi = np.asarray(pi, dtype=float)
    n = len(a)
    if pi.ndim != 2 or pi.shape[0] != n:
        raise ValidationError(f"pi: expected shape (n_rows={n}, n_arms), got {pi.shape}")
    if a.dtype.kind not in "iu" or (n and (a.min() < 0 or a.max() >= pi.shape[1])):
        raise ValidationError(
            f"action: expected arm indices in [0, {pi.shape[1]}), got {a[:5]!r}..."
        )
    if len(r) != n:
        raise ValidationError(f"reward: length {len(r)} != {n}")
    if not np.isfinite(r).all():
        raise ValidationError("reward: contains NaN or infinite values")
    if np.any(pi < -1e-12) or np.any(np.abs(pi.sum(axis=1) - 1) > 1e-6):
        raise ValidationError("pi: each row must be a probability distribution over arms")
    p = None
    if pscore is not None:
        p = np.asarray(pscore, dtype=float)
        if len(p) != n:
            raise ValidationError(f"pscore: length {len(p)} != {n}")
        bad = np.flatnonzero(~np.isfinite(p) | (p <= 0) | (p > 1))
        if len(bad):
            raise ValidationError(
                f"pscore: propensities must be in (0, 1]; {len(bad)} row(s) are not, e.g. rows "
                f"{bad[:5].tolist()} = {p[bad[:5]].tolist()}"
            )
    q = None
    if q_hat is not None:
        q = np.asarray(q_hat, dtype=float)
        if q.shape != pi.shape:
            raise ValidationError(f"q_hat: expected shape {pi.shape}, got {q.shape}")
    return a.astype(np.int64), p, r, pi, q


def per_arm_terms(
    estimator: str, action, pscore, reward, pi, q_hat=None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row, per-arm contributions and the importance weights.

    Returns ``(terms, w)`` with ``terms`` of shape ``(n, n_arms)``: the estimate of the
    total reward through arm ``a`` is ``terms[:, a].sum()`` (for SNIPS, divided by
    ``w.mean()``).
    """
    if estimator not in ESTIMATORS:
        raise ValidationError(f"estimator: expected one of {ESTIMATORS}, got {estimator!r}")
    a, p, r, pi, q = check_bandit_inputs(action, pscore, reward, pi, q_hat)
    n, k = pi.shape
    rows = np.arange(n)
    if estimator in ("dm", "dr") and q is None:
        raise ValidationError(f"{estimator}: needs a reward model (q_hat)")
    if estimator != "dm" and p is None:
        raise ValidationError(f"{estimator}: needs logging propensities (pscore)")
    w = np.zeros(n) if p is None else pi[rows, a] / p
    onehot = np.zeros((n, k))
    onehot[rows, a] = 1.0
    if estimator in ("ips", "snips"):
        terms = onehot * (w * r)[:, None]
    elif estimator == "dm":
        terms = pi * q
    else:
        terms = pi * q + onehot * (w * (r - q[rows, a]))[:, None]
    return terms, w


def effective_sample_size(w: np.ndarray) -> float:
    """Kish's effective sample size ``(Σw)² / Σw²`` of importance weights."""
    w = np.asarray(w, dtype=float)
    s2 = float(np.sum(w**2))
    return float(np.sum(w) ** 2 / s2) if s2 > 0 else 0.0


def bootstrap_weights(n: int, n_boot: int, seed: int, chunk: int = 64):
    """Yield Poisson(1) row-weight matrices of at most ``chunk`` replicates each."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        yield rng.poisson(1.0, size=(b, n)).astype(np.float64)
        done += b


def interval(point: float, reps: np.ndarray, alpha: float) -> Interval:
    """Percentile interval of bootstrap replicates around ``point``."""
    reps = reps[np.isfinite(reps)]
    if len(reps) == 0:
        return Interval(point, np.nan, np.nan, np.nan)
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return Interval(
        float(point), float(lo), float(hi), float(np.std(reps, ddof=1)) if len(reps) > 1 else 0.0
    )


def estimate_value(
    estimator: str,
    action,
    pscore,
    reward,
    pi,
    q_hat=None,
    *,
    n_boot: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
    min_ess: float = 50,
    min_ess_fraction: float = 0.01,
) -> tuple[Interval, float]:
    """Total reward of ``pi`` with a bootstrap interval, and the effective sample size.

    Warns with :class:`LowEffectiveSampleSizeWarning` when the effective sample size is
    below ``max(min_ess, min_ess_fraction * n)`` (IPS-type estimators only).
    """
    terms, w = per_arm_terms(estimator, action, pscore, reward, pi, q_hat)
    n = len(w)
    per_row = terms.sum(axis=1)
    ess = effective_sample_size(w) if estimator != "dm" else float(n)
    warn_if_low_ess(ess, n, estimator, min_ess, min_ess_fraction)
    if estimator == "snips":
        point = n * per_row.sum() / w.sum()
        reps = np.concatenate(
            [(W @ per_row) / (W @ w) * W.sum(axis=1) for W in bootstrap_weights(n, n_boot, seed)]
        )
    else:
        point = per_row.sum()
        reps = np.concatenate([W @ per_row for W in bootstrap_weights(n, n_boot, seed)])
    return interval(point, reps, alpha), ess


def warn_if_low_ess(
    ess: float, n: int, estimator: str, min_ess: float, min_ess_fraction: float
) -> str | None:
    """Issue (and return) the low-ESS warning text, or ``None``."""
    if estimator == "dm" or n == 0:
        return None
    floor = max(min_ess, min_ess_fraction * n)
    if ess < floor:
        why = (
            "few logged rows agree with the strategy"
            if estimator == "replay"
            else "importance weights explode (the strategy picks arms the logger rarely chose)"
        )
        msg = (
            f"{estimator}: effective sample size {ess:.1f} of {n} rows is below {floor:.0f}; {why}, "
            "so the estimate rests on a few rows"
        )
        warnings.warn(msg, LowEffectiveSampleSizeWarning, stacklevel=3)
        return msg
    return None
