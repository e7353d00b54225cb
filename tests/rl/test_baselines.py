"""Baselines compute, and the evaluation's statistics are right."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mktlab.errors import ValidationError
from mktlab.rl import (
    ACTIONS,
    OBS_COLUMNS,
    AlwaysAction,
    EnvConfig,
    Evaluation,
    MyopicUpliftGreedy,
    NeverTreat,
    RandomPolicy,
    RFMRule,
    evaluate_policies,
    rollout,
    standard_baselines,
)

CFG = EnvConfig(horizon=8)


@pytest.fixture(scope="module")
def myopic():
    return MyopicUpliftGreedy(CFG, n_users=1500, max_iter=30).fit()


def test_standard_baselines_compute(myopic):
    pols = standard_baselines(CFG, myopic_users=800)
    names = [p.name for p in pols]
    assert names[:1] == ["never_treat"]
    assert {f"always_{a}" for a in ACTIONS[1:]} <= set(names)
    assert {"rfm_rule", "myopic_uplift"} <= set(names)
    ev = evaluate_policies(pols, CFG, n_seeds=2, n_users=300)
    summ = ev.summary()
    assert len(summ) == len(pols)
    assert (summ["ci_low"] <= summ["return_per_user"]).all()
    assert (summ["return_per_user"] <= summ["ci_high"]).all()
    never = summ.set_index("policy").loc["never_treat"]
    assert never["budget_used"] == 0
    assert never["coupons_per_user"] == 0
    shares = ev.action_share.set_index(["policy", "segment"])[list(ACTIONS)]
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)


def test_always_action_sends_that_action_until_budget_runs_out():
    out = rollout(AlwaysAction("coupon_large"), EnvConfig(horizon=10, budget_per_user=30.0), 0, 500)
    acts = out["actions"]
    assert set(np.unique(acts)) <= {0, ACTIONS.index("coupon_large")}
    # at most two redeemed large coupons fit in 30 yuan (face 15 each)
    assert (out["spend"] <= 30 + 1e-9).all()


def test_rfm_rule_leaves_opted_out_users_alone():
    obs = np.zeros((3, len(OBS_COLUMNS)), dtype=np.float32)
    c = {n: i for i, n in enumerate(OBS_COLUMNS)}
    obs[:, c["recency"]] = 10 / 26  # lapsed
    obs[:, c["frequency"]] = 0.5
    obs[:, c["weeks_since_coupon"]] = 1.0
    obs[2, c["optout_signal"]] = 1.0
    acts = RFMRule().act(obs)
    assert acts.tolist() == [ACTIONS.index("coupon_small")] * 2 + [0]


def test_myopic_uplift_treats_only_when_predicted_profit_beats_doing_nothing(myopic):
    sim_obs = rollout(NeverTreat(), CFG, 5, 200)  # just to get realistic states
    assert sim_obs["return"].shape == (200,)
    from mktlab.rl.dynamics import MarketingSimulator

    s = MarketingSimulator(CFG, 400)
    obs = s.reset(9)
    prof = myopic.predict_profit(obs)
    acts = myopic.act(obs)
    gain = prof[np.arange(400), acts] - prof[:, 0]
    assert (gain[acts > 0] > 0).all()
    assert (prof.max(axis=1)[acts == 0] <= prof[acts == 0, 0] + 1e-12).all()


def test_myopic_must_be_fitted_and_obs_shape_checked(myopic):
    with pytest.raises(ValidationError, match="not fitted"):
        MyopicUpliftGreedy(CFG).act(np.zeros((1, len(OBS_COLUMNS))))
    with pytest.raises(ValidationError, match="shape"):
        myopic.act(np.zeros((2, 3)))
    with pytest.raises(ValidationError, match="action"):
        AlwaysAction("teleport")


def test_compare_is_a_paired_difference_with_t_interval():
    per_seed = pd.DataFrame(
        {
            "policy": ["a"] * 3 + ["b"] * 3,
            "seed": [1, 2, 3] * 2,
            "return": [10.0, 12.0, 14.0, 11.0, 10.0, 12.0],
            "spend": 0.0,
            "coupons": 0.0,
            "purchases": 0.0,
            "churned": 0.0,
        }
    )
    ev = Evaluation(per_seed, pd.DataFrame(), budget_per_user=1.0)
    cmp = ev.compare("a")
    assert cmp["against"] == "b"
    # differences -1, 2, 2: mean 1, sd sqrt(3), t(0.975, 2) = 4.302653
    half = 4.302653 * np.sqrt(3) / np.sqrt(3)
    assert cmp["diff"] == pytest.approx(1.0)
    assert cmp["diff_ci_low"] == pytest.approx(1.0 - half, rel=1e-5)
    assert cmp["relative_gain"] == pytest.approx(1.0 / 11.0)
    assert cmp["target_met"] is False  # CI crosses zero
    with pytest.raises(ValidationError, match="not evaluated"):
        ev.compare("zzz")


def test_evaluate_refuses_duplicates_and_too_few_seeds():
    with pytest.raises(ValidationError, match="duplicate"):
        evaluate_policies([NeverTreat(), NeverTreat()], CFG, n_seeds=2, n_users=10)
    with pytest.raises(ValidationError, match="n_seeds"):
        evaluate_policies([NeverTreat()], CFG, n_seeds=1, n_users=10)


def test_common_random_numbers_make_identical_policies_tie():
    a = rollout(RandomPolicy(1), CFG, 77, 300)
    b = rollout(RandomPolicy(1), CFG, 77, 300)
    np.testing.assert_array_equal(a["return"], b["return"])
