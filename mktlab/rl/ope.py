"""Off-policy estimate of a learned policy on the world's logged campaign (via the sandbox).

The world's campaign log is one-shot: each user was offered a coupon (``treatment=1``)
or not, with a logged propensity, and converted or not. A sequential policy can only be
judged there on its *first-week* decision: we build each logged user's week-0 state
from the logged profile (RFM, tier, age; no touches, coupons or fatigue yet; full
budget and horizon; the behavioural signals a log does not carry are set to their
"no signal" level), map the policy's action to the logged arms (a coupon of either size
-> arm 1, anything else -> arm 0) and estimate the value with
:func:`mktlab.sandbox.estimate_value` (self-normalised IPS by default).

Reward per logged row: ``margin_rate * revenue - coupon_face * treated * converted``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mktlab.errors import ValidationError, require_columns
from mktlab.rl.dynamics import ACTIONS, OBS_COLUMNS, OBS_HIGH, OBS_LOW, EnvConfig

LOG_COLUMNS = (
    "treatment",
    "propensity",
    "converted",
    "revenue",
    "recency_days",
    "frequency_90d",
    "monetary_90d",
    "tier_level",
    "age",
)
COUPON_ACTIONS = (ACTIONS.index("coupon_small"), ACTIONS.index("coupon_large"))


def week0_states(log: pd.DataFrame) -> pd.DataFrame:
    """Week-0 observations (columns :data:`OBS_COLUMNS`) of logged users."""
    require_columns(log, LOG_COLUMNS[4:], table="campaign_log")
    freq = log["frequency_90d"].to_numpy(dtype=float)
    monetary = log["monetary_90d"].to_numpy(dtype=float)
    aov = np.where(freq > 0, monetary / np.maximum(freq, 1), np.exp(4.6))
    n = len(log)
    cols = {
        "recency": np.minimum(log["recency_days"].to_numpy(dtype=float) / 7.0, 52.0) / 26.0,
        "frequency": freq / 4.0,
        "monetary": (np.log(np.clip(aov, 10.0, 2000.0)) - 4.6) / 0.7,
        "tier": log["tier_level"].to_numpy(dtype=float) / 5.0,
        "age": (log["age"].to_numpy(dtype=float) - 34.0) / 10.0,
        "fatigue": np.zeros(n),
        "coupons_recent": np.zeros(n),
        "weeks_since_coupon": np.ones(n),
        "redeem_rate": np.full(n, 0.3),
        "visited": np.zeros(n),
        "cart_signal": np.full(n, -0.3),  # the simulator's "no signal" level
        "optout_signal": np.full(n, -0.3),
        "weeks_left": np.ones(n),
        "budget_left": np.ones(n),
    }
    arr = np.column_stack([cols[c] for c in OBS_COLUMNS]).astype(np.float32)
    arr = np.clip(arr, OBS_LOW, OBS_HIGH)
    return pd.DataFrame(arr, columns=list(OBS_COLUMNS), index=log.index)


def ope_on_world(
    policy: Any,
    world: Any = None,
    campaign_id: str = "C001",
    *,
    estimator: str = "snips",
    config: EnvConfig | None = None,
    n_boot: int = 200,
) -> pd.DataFrame:
    """Off-policy value per user of ``policy``'s first decision on a logged campaign.

    Parameters
    ----------
    policy : object with ``act(obs)``
        The learned policy (or any baseline).
    world : World, optional
        Default :func:`mktlab.datasets.load_world`.
    campaign_id : str
    estimator : {"ips", "snips", "dm", "dr"}
        Passed to :func:`mktlab.sandbox.estimate_value` (``dm``/``dr`` are not offered
        here: they need a reward model; use the sandbox directly for those).
    config : EnvConfig, optional
        Margin rate and the small coupon's face value used for the reward.
    n_boot : int

    Returns
    -------
    DataFrame
        One row per policy (``policy``, ``never_treat``, ``treat_all``, ``logged``):
        estimated value per user with its interval, share treated and the effective
        sample size.
    """
    from mktlab.datasets import load_world
    from mktlab.sandbox import estimate_value

    if estimator not in ("ips", "snips"):
        raise ValidationError(f"estimator must be 'ips' or 'snips' here, got {estimator!r}")
    cfg = config or EnvConfig()
    world = world if world is not None else load_world()
    log = world.campaign_log
    log = log[log["campaign_id"] == campaign_id].reset_index(drop=True)
    if log.empty:
        raise ValidationError(f"campaign_log has no rows for campaign_id={campaign_id!r}")
    require_columns(log, LOG_COLUMNS, table="campaign_log")
    a = log["treatment"].to_numpy(dtype=np.int64)
    p = log["propensity"].to_numpy(dtype=float)
    y = log["converted"].to_numpy(dtype=float)
    reward = cfg.margin_rate * log["revenue"].to_numpy(dtype=float) - cfg.coupon_face[0] * a * y
    obs = week0_states(log).to_numpy()
    treat = np.isin(np.asarray(policy.act(obs)), COUPON_ACTIONS).astype(float)
    n = len(log)
    candidates = {
        getattr(policy, "name", "policy"): treat,
        "never_treat": np.zeros(n),
        "treat_all": np.ones(n),
    }
    rows = []
    for name, t in candidates.items():
        pi = np.column_stack([1 - t, t])
        iv, ess = estimate_value(estimator, a, p, reward, pi, n_boot=n_boot)
        rows.append(
            {
                "policy": name,
                "value_per_user": iv.value / n,
                "ci_low": iv.lo / n,
                "ci_high": iv.hi / n,
                "treated_share": float(t.mean()),
                "ess": ess,
            }
        )
    rows.append(
        {
            "policy": "logged",
            "value_per_user": float(reward.mean()),
            "ci_low": np.nan,
            "ci_high": np.nan,
            "treated_share": float(a.mean()),
            "ess": float(n),
        }
    )
    return pd.DataFrame(rows)
