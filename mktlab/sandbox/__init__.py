"""Strategy sandbox: replay strategies over logged data with honest off-policy estimates.

>>> from mktlab.sandbox import Strategy, from_world, replay, compare
>>> data = from_world(campaign_id="C002")
>>> res = replay(Strategy.from_yaml("strategy.yaml"), data)
>>> compare([res])
"""

from mktlab.sandbox.data import LoggedData, RewardModel, from_hillstrom, from_world
from mktlab.sandbox.ope import (
    ESTIMATORS,
    Interval,
    LowEffectiveSampleSizeWarning,
    effective_sample_size,
    estimate_value,
    per_arm_terms,
)
from mktlab.sandbox.replay import (
    METRICS,
    StrategyResult,
    check_strategy,
    decide,
    fit_reward_models,
    replay,
    replay_many,
    resolve_audience,
    resolve_model,
    true_incremental,
    uplift_scores,
)
from mktlab.sandbox.report import compare, log_results, plot_comparison
from mktlab.sandbox.simulate import policy_value, simulate_bandit
from mktlab.strategy import CouponTerms, Strategy, TreatmentPolicy

__all__ = [
    "ESTIMATORS",
    "METRICS",
    "CouponTerms",
    "Interval",
    "LoggedData",
    "LowEffectiveSampleSizeWarning",
    "TreatmentPolicy",
    "RewardModel",
    "Strategy",
    "StrategyResult",
    "check_strategy",
    "compare",
    "decide",
    "effective_sample_size",
    "estimate_value",
    "fit_reward_models",
    "from_hillstrom",
    "from_world",
    "log_results",
    "per_arm_terms",
    "plot_comparison",
    "policy_value",
    "replay",
    "replay_many",
    "resolve_audience",
    "resolve_model",
    "simulate_bandit",
    "true_incremental",
    "uplift_scores",
]
