"""Simulated bandit logs with known truth, for estimator tests and coverage studies."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mktlab.errors import ValidationError
from mktlab.sandbox.data import LoggedData


def simulate_bandit(
    n: int = 5000,
    *,
    n_arms: int = 2,
    seed: int = 0,
    logging: str = "targeted",
    min_propensity: float = 0.05,
) -> tuple[LoggedData, np.ndarray]:
    """A logged bandit data set and the true conversion probability of every arm.

    Features ``x1, x2`` (numeric) and ``segment`` (a/b/c) drive both the outcome and,
    for ``logging="targeted"``, the logging policy (a softmax clipped below by
    ``min_propensity``); ``logging="uniform"`` logs each arm with probability 1/k.

    Returns
    -------
    data : LoggedData
        Columns ``user_id, ts, x1, x2, segment, treatment, propensity, converted, revenue``.
    mu : ndarray, shape (n, n_arms)
        True ``P(converted | x, arm)``.
    """
    if n < 1 or n_arms < 2:
        raise ValidationError(f"simulate_bandit: need n >= 1 and n_arms >= 2, got {n}, {n_arms}")
    if logging not in ("targeted", "uniform"):
        raise ValidationError(f"logging: expected 'targeted' or 'uniform', got {logging!r}")
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    seg = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    base = -2.0 + 0.8 * x1 + 0.4 * (seg == 2)
    effect = np.stack(
        [np.zeros(n)]
        + [0.6 * np.tanh(x2 + a - 1) + 0.2 * (seg == 1) * a for a in range(1, n_arms)],
        1,
    )
    mu = 1 / (1 + np.exp(-(base[:, None] + effect)))
    if logging == "uniform":
        lp = np.full((n, n_arms), 1 / n_arms)
    else:
        logits = np.stack(
            [np.zeros(n)] + [0.9 * x1 - 0.3 * a + 0.5 * (seg == 0) for a in range(1, n_arms)], 1
        )
        lp = np.exp(logits - logits.max(1, keepdims=True))
        lp /= lp.sum(1, keepdims=True)
        lp = np.maximum(lp, min_propensity)
        lp /= lp.sum(1, keepdims=True)
    u = rng.random(n)
    a = (u[:, None] > np.cumsum(lp, 1)).sum(1)
    a = np.minimum(a, n_arms - 1)
    y = (rng.random(n) < mu[np.arange(n), a]).astype(np.int8)
    revenue = np.where(y == 1, np.round(rng.lognormal(4.0, 0.5, size=n), 2), 0.0)
    frame = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "ts": pd.Timestamp("2026-01-01")
            + pd.to_timedelta(np.sort(rng.integers(0, 86400 * 30, n)), unit="s"),
            "x1": x1,
            "x2": x2,
            "segment": np.array(["a", "b", "c"])[seg],
            "treatment": a,
            "propensity": lp[np.arange(n), a],
            "converted": y,
            "revenue": revenue,
        }
    )
    data = LoggedData(
        frame,
        arms=tuple(range(n_arms)),
        features=("x1", "x2", "segment"),
        arm_propensities=lp,
        name=f"sim:{seed}",
    )
    return data, mu


def policy_value(pi: np.ndarray, mu: np.ndarray) -> float:
    """True expected total conversions of policy ``pi`` under ``mu``."""
    return float(np.sum(pi * mu))
