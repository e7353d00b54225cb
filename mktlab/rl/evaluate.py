"""Honest evaluation: every policy on the same held-out seeds, with CIs over seeds.

A seed fixes a population of users and the luck of every week (common random numbers,
see :mod:`mktlab.rl.dynamics`), so comparing two policies seed by seed is a paired
comparison. The unit of replication is the seed: a 95% CI is ``mean +- t * sd / sqrt(k)``
over the ``k`` per-seed means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from mktlab.errors import ValidationError
from mktlab.rl.baselines import BaselinePolicy
from mktlab.rl.dynamics import ACTIONS, SEGMENTS, EnvConfig, MarketingSimulator, UserPrior

HELD_OUT_SEED0 = 1_000_000  # evaluation seeds start here; training seeds stay far below


def held_out_seeds(n: int) -> list[int]:
    """The ``n`` evaluation seeds every policy is scored on."""
    if n < 2:
        raise ValidationError(f"n_seeds must be >= 2 to give a confidence interval, got {n}")
    return [HELD_OUT_SEED0 + i for i in range(n)]


def rollout(
    policy: BaselinePolicy,
    config: EnvConfig | None = None,
    seed: int = 0,
    n_users: int = 2_000,
    prior: UserPrior | None = None,
) -> dict[str, np.ndarray]:
    """Run ``policy`` on one population for a whole horizon.

    Returns per-user arrays ``return``, ``spend``, ``coupons``, ``purchases``,
    ``churned``, ``segment`` and the ``(n_users, horizon)`` matrix ``actions`` sent.
    """
    sim = MarketingSimulator(config, n_users, prior=prior)
    obs = sim.reset(seed)
    h = sim.config.horizon
    ret = np.zeros(n_users)
    coupons = np.zeros(n_users)
    purchases = np.zeros(n_users)
    actions = np.zeros((n_users, h), dtype=np.int8)
    for t in range(h):
        a = policy.act(obs)
        obs, r, info = sim.step(a)
        ret += r
        coupons += info["coupon"]
        purchases += info["bought"]
        actions[:, t] = info["action"]
    return {
        "return": ret,
        "spend": sim.spent.copy(),
        "coupons": coupons,
        "purchases": purchases,
        "churned": ~sim.active,
        "segment": sim.segment.copy(),
        "actions": actions,
    }


def _ci(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    x = np.asarray(x, dtype=float)
    m = float(x.mean())
    if len(x) < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return m, m - half, m + half


@dataclass
class Evaluation:
    """Results of :func:`evaluate_policies`.

    Attributes
    ----------
    per_seed : DataFrame
        One row per (policy, seed): mean return, spend, coupons, purchases, churn per user.
    action_share : DataFrame
        Share of user-weeks given each action, by policy and hidden segment.
    budget_per_user : float
    """

    per_seed: pd.DataFrame
    action_share: pd.DataFrame
    budget_per_user: float
    seeds: list[int] = field(default_factory=list)

    def summary(self) -> pd.DataFrame:
        """Mean return per user with its 95% CI over seeds, budget used, coupons per user."""
        rows = []
        for name, g in self.per_seed.groupby("policy", sort=False):
            m, lo, hi = _ci(g["return"].to_numpy())
            rows.append(
                {
                    "policy": name,
                    "return_per_user": m,
                    "ci_low": lo,
                    "ci_high": hi,
                    "budget_used": g["spend"].mean() / self.budget_per_user,
                    "coupons_per_user": g["coupons"].mean(),
                    "purchases_per_user": g["purchases"].mean(),
                    "churn_rate": g["churned"].mean(),
                }
            )
        return (
            pd.DataFrame(rows)
            .sort_values("return_per_user", ascending=False)
            .reset_index(drop=True)
        )

    def compare(self, policy: str, against: str | None = None) -> dict[str, float]:
        """Paired difference ``policy - against`` over seeds (default: the best other policy).

        Returns the two means, the difference with its 95% CI, the relative gain and
        whether the gain is >= 5% with the CI of the difference above zero.
        """
        wide = self.per_seed.pivot(index="seed", columns="policy", values="return")
        if policy not in wide.columns:
            raise ValidationError(f"policy {policy!r} was not evaluated; have {list(wide.columns)}")
        if against is None:
            others = wide.drop(columns=[policy]).mean().sort_values(ascending=False)
            if others.empty:
                raise ValidationError("compare needs at least two policies")
            against = str(others.index[0])
        if against not in wide.columns:
            raise ValidationError(
                f"policy {against!r} was not evaluated; have {list(wide.columns)}"
            )
        diff = (wide[policy] - wide[against]).to_numpy()
        d, lo, hi = _ci(diff)
        base = float(wide[against].mean())
        gain = d / abs(base) if base else float("nan")
        return {
            "policy": policy,
            "against": against,
            "policy_return": float(wide[policy].mean()),
            "against_return": base,
            "diff": d,
            "diff_ci_low": lo,
            "diff_ci_high": hi,
            "relative_gain": gain,
            "target_met": bool(gain >= 0.05 and lo > 0),
        }


def evaluate_policies(
    policies: Sequence[BaselinePolicy],
    config: EnvConfig | None = None,
    *,
    n_seeds: int = 10,
    n_users: int = 2_000,
    prior: UserPrior | None = None,
    progress: bool = False,
) -> Evaluation:
    """Score each policy on the same held-out seeds.

    Parameters
    ----------
    policies : sequence of BaselinePolicy
        Objects with ``name`` and ``act(obs)``; names must be unique.
    config : EnvConfig, optional
    n_seeds : int
        Number of held-out populations (the unit of the CIs).
    n_users : int
        Users per population.
    prior : UserPrior, optional
    progress : bool
        Show a progress bar.
    """
    config = config or EnvConfig()
    names = [p.name for p in policies]
    if not policies:
        raise ValidationError("policies: nothing to evaluate")
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValidationError(f"policies: duplicate names {sorted(dup)}")
    seeds = held_out_seeds(n_seeds)
    rows, share_rows = [], []
    jobs = [(p, s) for p in policies for s in seeds]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc="evaluate", unit="rollout")
    for pol, seed in jobs:
        out = rollout(pol, config, seed, n_users, prior)
        rows.append(
            {
                "policy": pol.name,
                "seed": seed,
                "return": out["return"].mean(),
                "spend": out["spend"].mean(),
                "coupons": out["coupons"].mean(),
                "purchases": out["purchases"].mean(),
                "churned": out["churned"].mean(),
            }
        )
        acts, seg = out["actions"], out["segment"]
        for si, sname in enumerate(SEGMENTS):
            sub = acts[seg == si]
            if sub.size == 0:
                continue
            counts = np.bincount(sub.ravel(), minlength=len(ACTIONS))
            share_rows.append(
                {"policy": pol.name, "segment": sname, "n": sub.size}
                | {a: float(c) for a, c in zip(ACTIONS, counts, strict=True)}
            )
    share = pd.DataFrame(share_rows).groupby(["policy", "segment"], sort=False).sum()
    share[list(ACTIONS)] = share[list(ACTIONS)].div(share["n"], axis=0)
    return Evaluation(
        per_seed=pd.DataFrame(rows),
        action_share=share.drop(columns="n").reset_index(),
        budget_per_user=config.budget_per_user,
        seeds=seeds,
    )
