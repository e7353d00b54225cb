"""Budgeted targeting: whom to treat to maximise expected incremental profit.

For a user with predicted outcome ``mu1`` under treatment and uplift ``tau``:

- expected cost of treating: ``cost = contact_cost + coupon_cost · mu1`` (a contact fee
  for everyone treated; the coupon is paid on every treated conversion, incremental or
  not — which is why sure things are expensive);
- expected incremental profit: ``profit = margin · tau − cost``.

:func:`plan_targeting` ranks users (by ``profit``; by ``profit / cost`` when a budget
binds, the greedy knapsack order), walks down the ranking and picks the prefix with the
highest cumulative profit that respects ``budget`` (total expected cost) and
``max_users``. It never picks users whose expected profit is negative. The ROI curve is
cumulative profit / cumulative cost along the ranking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mktlab.errors import ValidationError


@dataclass(frozen=True)
class Economics:
    """Campaign economics.

    Attributes
    ----------
    margin : float
        Value of one incremental conversion (same units as costs).
    contact_cost : float, default 0
        Cost of treating one user (message, impression).
    coupon_cost : float, default 0
        Cost per treated conversion (redeemed coupon value).
    """

    margin: float
    contact_cost: float = 0.0
    coupon_cost: float = 0.0

    def __post_init__(self) -> None:
        for name in ("margin", "contact_cost", "coupon_cost"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise ValidationError(f"{name}: must be a finite number >= 0, got {v!r}")
        if self.margin == 0:
            raise ValidationError("margin: must be > 0 (nothing to gain otherwise)")

    def cost(self, mu1) -> np.ndarray:
        """Expected cost of treating each user."""
        return self.contact_cost + self.coupon_cost * np.asarray(mu1, dtype=np.float64)

    def profit(self, uplift, mu1) -> np.ndarray:
        """Expected incremental profit of treating each user."""
        return self.margin * np.asarray(uplift, dtype=np.float64) - self.cost(mu1)


@dataclass
class TargetingPlan:
    """Result of :func:`plan_targeting`.

    Attributes
    ----------
    selected : ndarray of bool
        Whom to treat (original row order).
    n_selected, expected_profit, expected_cost, roi : scalars of the chosen prefix
    cutoff_uplift : float
        Lowest predicted uplift among the selected (nan if nobody is selected).
    curve : DataFrame
        Along the ranking: ``n``, ``share``, ``cum_cost``, ``cum_profit``, ``roi``,
        ``feasible``.
    """

    selected: np.ndarray
    n_selected: int
    expected_profit: float
    expected_cost: float
    roi: float
    cutoff_uplift: float
    curve: pd.DataFrame
    budget: float | None = None
    max_users: int | None = None

    def plot(self, ax=None):
        """ROI and cumulative profit along the ranking, with the chosen cut-off."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        c = self.curve
        ax.plot(c["share"], c["cum_profit"], label="expected incremental profit")
        ax.axvline(
            self.n_selected / max(len(self.selected), 1), color="k", ls="--", label="chosen cut-off"
        )
        ax.set_xlabel("share of users treated (ranked)")
        ax.set_ylabel("cumulative expected profit")
        ax2 = ax.twinx()
        ax2.plot(c["share"], c["roi"], color="tab:orange", label="ROI")
        ax2.set_ylabel("ROI (profit / cost)")
        ax.legend(loc="lower left", fontsize=8)
        return ax


def plan_targeting(
    uplift,
    mu1,
    economics: Economics,
    *,
    budget: float | None = None,
    max_users: int | None = None,
) -> TargetingPlan:
    """Choose whom to treat to maximise expected incremental profit under the limits.

    Parameters
    ----------
    uplift, mu1 : array-like
        Predicted uplift and predicted outcome under treatment per user.
    economics : Economics
    budget : float, optional
        Maximum total expected cost.
    max_users : int, optional
        Maximum number of users to treat.
    """
    tau = np.asarray(uplift, dtype=np.float64)
    mu1 = np.asarray(mu1, dtype=np.float64)
    if tau.ndim != 1 or tau.shape != mu1.shape:
        raise ValidationError(
            f"uplift {tau.shape} and mu1 {mu1.shape} must be equal-length vectors"
        )
    if not (np.isfinite(tau).all() and np.isfinite(mu1).all()):
        raise ValidationError("uplift/mu1: missing (NaN) or infinite values")
    if budget is not None and (not np.isfinite(budget) or budget < 0):
        raise ValidationError(f"budget: must be a finite number >= 0, got {budget!r}")
    if max_users is not None and (int(max_users) != max_users or max_users < 0):
        raise ValidationError(f"max_users: must be an integer >= 0, got {max_users!r}")
    n = len(tau)
    cost = economics.cost(mu1)
    profit = economics.profit(tau, mu1)
    if budget is not None:
        # greedy knapsack: most profit per unit of spend first (ties by profit)
        ratio = np.divide(profit, cost, out=np.full(n, np.inf), where=cost > 0)
        order = np.lexsort((-profit, -ratio))
    else:
        order = np.argsort(-profit, kind="stable")
    cum_cost = np.cumsum(cost[order])
    cum_profit = np.cumsum(profit[order])
    k = np.arange(1, n + 1)
    feasible = profit[order] > 0
    feasible = np.logical_and.accumulate(feasible) if n else feasible
    if budget is not None:
        feasible &= cum_cost <= budget + 1e-9
    if max_users is not None:
        feasible &= k <= max_users
    if feasible.any():
        best = int(np.argmax(np.where(feasible, cum_profit, -np.inf)))
        n_sel = best + 1
        exp_profit, exp_cost = float(cum_profit[best]), float(cum_cost[best])
    else:
        n_sel, exp_profit, exp_cost = 0, 0.0, 0.0
    selected = np.zeros(n, dtype=bool)
    selected[order[:n_sel]] = True
    with np.errstate(divide="ignore", invalid="ignore"):
        roi_curve = np.where(cum_cost > 0, cum_profit / cum_cost, np.nan)
    curve = pd.DataFrame(
        {"n": k, "share": k / max(n, 1), "cum_cost": cum_cost, "cum_profit": cum_profit,
         "roi": roi_curve, "feasible": feasible}
    )  # fmt: skip
    return TargetingPlan(
        selected=selected,
        n_selected=n_sel,
        expected_profit=exp_profit,
        expected_cost=exp_cost,
        roi=exp_profit / exp_cost if exp_cost > 0 else float("nan"),
        cutoff_uplift=float(tau[selected].min()) if n_sel else float("nan"),
        curve=curve,
        budget=budget,
        max_users=max_users,
    )


def realised_profit(selected, true_uplift, true_mu1, economics: Economics) -> dict[str, float]:
    """Profit and cost of treating ``selected`` users under the *true* effects."""
    sel = np.asarray(selected, dtype=bool)
    tau = np.asarray(true_uplift, dtype=np.float64)
    mu1 = np.asarray(true_mu1, dtype=np.float64)
    profit = float(economics.profit(tau[sel], mu1[sel]).sum())
    cost = float(economics.cost(mu1[sel]).sum())
    return {"profit": profit, "cost": cost, "n": int(sel.sum())}


def compare_to_oracle(
    uplift,
    mu1,
    true_uplift,
    true_mu1,
    economics: Economics,
    *,
    budget: float | None = None,
    max_users: int | None = None,
) -> dict[str, float]:
    """True profit of the model's plan against the plan of an oracle that knows the truth.

    Both plans get the same ``budget``/``max_users``. Returns ``model_profit``,
    ``oracle_profit``, ``ratio`` (model / oracle), ``model_n``, ``oracle_n`` and costs.
    """
    plan = plan_targeting(uplift, mu1, economics, budget=budget, max_users=max_users)
    oracle = plan_targeting(true_uplift, true_mu1, economics, budget=budget, max_users=max_users)
    m = realised_profit(plan.selected, true_uplift, true_mu1, economics)
    o = realised_profit(oracle.selected, true_uplift, true_mu1, economics)
    return {
        "model_profit": m["profit"],
        "oracle_profit": o["profit"],
        "ratio": m["profit"] / o["profit"] if o["profit"] > 0 else float("nan"),
        "model_n": m["n"],
        "oracle_n": o["n"],
        "model_cost": m["cost"],
        "oracle_cost": o["cost"],
        "model_expected_profit": plan.expected_profit,
    }
