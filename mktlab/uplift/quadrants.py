"""The four uplift quadrants: persuadables, sure things, lost causes, sleeping dogs.

A user is classified from the predicted outcome without treatment ``mu0`` and the
predicted uplift ``tau = mu1 − mu0``:

==============  =====================================================================
quadrant        rule
==============  =====================================================================
persuadable     ``tau > uplift``: responds because of the treatment
sleeping_dog    ``tau < −uplift``: the treatment puts them off
sure_thing      ``|tau| ≤ uplift`` and ``mu0 ≥ response``: responds anyway
lost_cause      ``|tau| ≤ uplift`` and ``mu0 < response``: does not respond either way
==============  =====================================================================

``uplift`` and ``response`` are :class:`QuadrantThresholds`; they are in outcome units
(probabilities for binary outcomes). Only persuadables are worth paying for; sure things
cost a coupon without a sale, sleeping dogs cost a sale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mktlab.errors import ValidationError

QUADRANTS = ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")


@dataclass(frozen=True)
class QuadrantThresholds:
    """Thresholds of :func:`assign_quadrants`.

    Attributes
    ----------
    uplift : float, default 0.05
        Minimum absolute uplift that counts as an effect (persuadable / sleeping dog).
    response : float, default 0.25
        Baseline outcome ``mu0`` at or above which an unaffected user is a sure thing.
    """

    uplift: float = 0.05
    response: float = 0.25

    def __post_init__(self) -> None:
        for name in ("uplift", "response"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise ValidationError(f"{name}: threshold must be a finite number >= 0, got {v!r}")


def assign_quadrants(mu0, uplift, thresholds: QuadrantThresholds | None = None) -> np.ndarray:
    """Quadrant name of each user (object array of :data:`QUADRANTS` values).

    Parameters
    ----------
    mu0 : array-like
        Predicted outcome without treatment.
    uplift : array-like
        Predicted uplift (same length).
    thresholds : QuadrantThresholds, optional
    """
    th = thresholds or QuadrantThresholds()
    mu0 = np.asarray(mu0, dtype=np.float64)
    tau = np.asarray(uplift, dtype=np.float64)
    if mu0.shape != tau.shape or mu0.ndim != 1:
        raise ValidationError(
            f"mu0 {mu0.shape} and uplift {tau.shape} must be equal-length vectors"
        )
    out = np.where(mu0 >= th.response, "sure_thing", "lost_cause").astype(object)
    out[tau > th.uplift] = "persuadable"
    out[tau < -th.uplift] = "sleeping_dog"
    return out


def quadrant_summary(
    quadrant,
    mu0,
    mu1,
    *,
    margin: float = 1.0,
    contact_cost: float = 0.0,
    coupon_cost: float = 0.0,
    true_quadrant=None,
) -> pd.DataFrame:
    """Share of each quadrant and what treating all of it would cost and earn.

    Per quadrant: users, share, mean ``mu0``/``mu1``/uplift, expected incremental
    responses, cost of treating everyone in it (``contact_cost`` per user plus
    ``coupon_cost`` per treated response) and the expected incremental profit
    (``margin`` per incremental response minus that cost). With ``true_quadrant`` also the
    share of the predicted quadrant that truly belongs to it (precision).
    """
    q = pd.Series(np.asarray(quadrant, dtype=object))
    mu0 = np.asarray(mu0, dtype=np.float64)
    mu1 = np.asarray(mu1, dtype=np.float64)
    df = pd.DataFrame({"quadrant": q, "mu0": mu0, "mu1": mu1, "uplift": mu1 - mu0})
    df["cost"] = contact_cost + coupon_cost * mu1
    df["profit"] = margin * df["uplift"] - df["cost"]
    if true_quadrant is not None:
        df["correct"] = (q.to_numpy() == np.asarray(true_quadrant, dtype=object)).astype(float)
    g = df.groupby("quadrant", observed=True)
    out = pd.DataFrame(
        {
            "users": g.size(),
            "mean_mu0": g["mu0"].mean(),
            "mean_mu1": g["mu1"].mean(),
            "mean_uplift": g["uplift"].mean(),
            "incremental_responses": g["uplift"].sum(),
            "cost_if_treated": g["cost"].sum(),
            "profit_if_treated": g["profit"].sum(),
        }
    )
    if true_quadrant is not None:
        out["precision"] = g["correct"].mean()
    out = out.reindex([x for x in QUADRANTS if x in out.index])
    out.insert(1, "share", out["users"] / len(df))
    return out.reset_index()
