"""Training improves on random; the policy round-trips through the MLflow registry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mktlab import tracking
from mktlab.errors import SchemaError, ValidationError
from mktlab.rl import (
    ACTIONS,
    OBS_COLUMNS,
    EnvConfig,
    MarketingSimulator,
    RandomPolicy,
    RLPolicy,
    TrainConfig,
    evaluate_policies,
    load_policy,
    log_policy,
    train_agent,
)
from mktlab.rl.train import PyfuncPolicy

CFG = EnvConfig(horizon=12)


@pytest.fixture(scope="module")
def trained():
    tc = TrainConfig(total_timesteps=120_000, n_users=256, seed=1, net_arch=(32, 32), n_epochs=4)
    return train_agent(tc, CFG)


@pytest.mark.slow
def test_short_training_run_improves_over_random(trained):
    assert trained.timesteps >= 120_000
    assert not trained.curve.empty
    ev = evaluate_policies([RandomPolicy(0), trained.policy], CFG, n_seeds=3, n_users=1000)
    cmp = ev.compare("ppo", "random")
    assert cmp["diff"] > 0
    assert cmp["diff_ci_low"] > 0


@pytest.mark.slow
def test_dqn_trains_and_exports():
    tc = TrainConfig(algorithm="dqn", total_timesteps=6_000, n_users=64, net_arch=(16,))
    res = train_agent(tc, EnvConfig(horizon=6))
    assert res.policy.meta["algorithm"] == "dqn"
    acts = res.policy.act(np.zeros((5, len(OBS_COLUMNS)), dtype=np.float32))
    assert acts.shape == (5,)
    assert set(acts) <= set(range(len(ACTIONS)))


def test_numpy_policy_matches_sb3_greedy_action(trained):
    sim = MarketingSimulator(CFG, 200)
    obs = sim.reset(4)
    sb3, _ = trained.model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(trained.policy.act(obs), sb3)


def test_policy_registers_as_champion_and_round_trips(trained):
    out = log_policy(trained, register=True)
    assert out["version"] is not None
    assert tracking.champion_version("rl_policy") == out["version"]
    model = load_policy()
    sim = MarketingSimulator(CFG, 50)
    obs = sim.reset(8)
    df = pd.DataFrame(obs, columns=list(OBS_COLUMNS))
    pred = model.predict(df)
    assert list(pred.columns) == ["action", "action_id"]
    np.testing.assert_array_equal(pred["action_id"].to_numpy(), trained.policy.act(obs))
    assert set(pred["action"]) <= set(ACTIONS)
    # the adapter used by `mktlab rl evaluate` acts like the in-memory policy
    np.testing.assert_array_equal(PyfuncPolicy(model).act(obs), trained.policy.act(obs))
    with pytest.raises(SchemaError, match="fatigue"):
        model.predict(df.drop(columns=["fatigue"]))


def test_bad_states_give_clear_errors(trained):
    pol = trained.policy
    df = pd.DataFrame(np.zeros((2, len(OBS_COLUMNS))), columns=list(OBS_COLUMNS))
    with pytest.raises(SchemaError, match="numeric"):
        pol.predict(df.assign(recency="x"))
    with pytest.raises(ValidationError, match="non-finite"):
        pol.predict(df.assign(recency=[np.nan, 0.0]))
    with pytest.raises(ValidationError, match="shape"):
        pol.act(np.zeros((2, 3)))


def test_policy_from_another_observation_space_is_refused():
    cols = (*OBS_COLUMNS[:-1],)  # an older layout without budget_left
    rng = np.random.default_rng(0)
    old = RLPolicy(
        [(rng.normal(size=(len(cols), len(ACTIONS))), np.zeros(len(ACTIONS)), "identity")],
        input_columns=cols,
        obs_version="marketing-obs-v0",
    )
    with pytest.raises(ValidationError, match="different observation space"):
        old.check_compatible()
    with tracking.start_run("rl-tests"):
        info = tracking.log_python_predictor(
            old,
            name="policy",
            registered_model_name="rl_policy_old",
            metadata={"input_columns": list(cols), "obs_version": "marketing-obs-v0"},
        )
    tracking.set_alias("rl_policy_old", info.registered_model_version, "champion")
    with pytest.raises(ValidationError, match="different observation space"):
        load_policy("rl_policy_old")


def test_train_config_validation():
    with pytest.raises(ValidationError, match="algorithm"):
        TrainConfig(algorithm="a2c")
    with pytest.raises(ValidationError, match="time_budget_s"):
        TrainConfig(time_budget_s=0)
