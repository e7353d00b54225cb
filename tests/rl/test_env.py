"""The gymnasium environment and the vectorised SB3 environment."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

from mktlab.errors import ValidationError
from mktlab.rl import (
    ACTIONS,
    ENV_ID,
    OBS_COLUMNS,
    EnvConfig,
    MarketingEnv,
    MarketingSimulator,
    MarketingVecEnv,
)


def test_check_env_passes():
    check_env(MarketingEnv(), skip_render_check=True)


def test_registered_and_makeable_with_overrides():
    env = gym.make(ENV_ID, horizon=4, budget_per_user=10.0)
    obs, info = env.reset(seed=3)
    assert obs.shape == (len(OBS_COLUMNS),)
    assert env.observation_space.contains(obs)
    steps = 0
    done = False
    while not done:
        obs, _r, term, trunc, info = env.step(env.action_space.sample())
        done = term or trunc
        steps += 1
    assert steps == 4
    assert info["segment"] in ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")


def _trajectory(seed: int, actions: list[int]):
    env = MarketingEnv(horizon=len(actions))
    obs, _ = env.reset(seed=seed)
    out = [obs]
    rewards = []
    for a in actions:
        obs, r, *_ = env.step(a)
        out.append(obs)
        rewards.append(r)
    return np.array(out), np.array(rewards)


def test_seeds_are_reproducible():
    acts = [0, 3, 1, 4, 0, 2, 0, 3]
    o1, r1 = _trajectory(11, acts)
    o2, r2 = _trajectory(11, acts)
    o3, _ = _trajectory(12, acts)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(r1, r2)
    assert not np.array_equal(o1, o3)


def test_vectorised_population_reproducible_and_matches_shapes():
    a = MarketingSimulator(n_users=300)
    b = MarketingSimulator(n_users=300)
    oa, ob = a.reset(5), b.reset(5)
    np.testing.assert_array_equal(oa, ob)
    acts = np.random.default_rng(0).integers(0, len(ACTIONS), size=300)
    (oa, ra, _), (ob, rb, _) = a.step(acts), b.step(acts)
    np.testing.assert_array_equal(ra, rb)
    assert oa.shape == (300, len(OBS_COLUMNS))
    assert oa.dtype == np.float32


@pytest.mark.parametrize("bad", [5, -1, 2.5, "push", [1, 2], None])
def test_invalid_action_is_refused(bad):
    env = MarketingEnv()
    env.reset(seed=0)
    with pytest.raises(ValidationError, match="action"):
        env.step(bad)


def test_step_before_reset_is_refused():
    with pytest.raises(ValidationError, match="reset"):
        MarketingEnv().step(0)


@pytest.mark.parametrize(
    ("actions", "match"),
    [
        (np.zeros(3, dtype=np.int64), "shape"),
        (np.zeros((4, 1), dtype=np.int64), "shape"),
        (np.full(4, 7), "0..4"),
        (np.full(4, 0.5), "integer"),
    ],
)
def test_simulator_rejects_wrong_action_arrays(actions, match):
    sim = MarketingSimulator(n_users=4)
    sim.reset(0)
    with pytest.raises(ValidationError, match=match):
        sim.step(actions)


@pytest.mark.parametrize("budget", [0, 0.0, -5.0])
def test_zero_budget_is_refused(budget):
    with pytest.raises(ValidationError, match="budget_per_user"):
        EnvConfig(budget_per_user=budget)
    with pytest.raises(ValidationError, match="budget_per_user"):
        MarketingEnv(budget_per_user=budget)


@pytest.mark.parametrize(
    ("field", "value"),
    [("horizon", 0), ("margin_rate", 1.5), ("coupon_face", (5.0,)), ("signal_noise", -1)],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValidationError, match=field):
        EnvConfig(**{field: value})


@settings(max_examples=30, deadline=None)
@given(
    budget=st.floats(0.5, 60.0),
    seed=st.integers(0, 2**31),
    actions=st.lists(st.integers(0, len(ACTIONS) - 1), min_size=26, max_size=26),
)
def test_budget_is_never_overspent(budget, seed, actions):
    sim = MarketingSimulator(EnvConfig(budget_per_user=budget), n_users=64)
    obs = sim.reset(seed)
    for a in actions:
        obs, _, info = sim.step(np.full(64, a))
        assert (sim.spent <= budget + 1e-9).all()
        assert (sim.budget >= 0).all()
        # a blocked action is replaced by "none" and costs nothing
        assert (info["spend"][info["blocked"]] == 0).all()
        assert (obs[:, OBS_COLUMNS.index("budget_left")] >= 0).all()


def test_coupon_is_blocked_when_budget_cannot_cover_it():
    sim = MarketingSimulator(EnvConfig(budget_per_user=10.0), n_users=50)
    sim.reset(0)
    _, _, info = sim.step(np.full(50, ACTIONS.index("coupon_large")))  # face 15 > 10
    assert info["blocked"].all()
    assert (info["action"] == 0).all()
    assert (info["spend"] == 0).all()


def test_vec_env_steps_whole_episodes_for_sb3():
    venv = MarketingVecEnv(n_users=32, config=EnvConfig(horizon=3), seed=1)
    obs = venv.reset()
    assert obs.shape == (32, len(OBS_COLUMNS))
    for _t in range(3):
        venv.step_async(np.zeros(32, dtype=np.int64))
        obs, rew, dones, infos = venv.step_wait()
        assert rew.dtype == np.float32
        assert len(infos) == 32
    assert dones.all()
    assert "terminal_observation" in infos[0]
    assert "episode" in infos[0]
    assert len(venv.episode_returns) == 1
    with pytest.raises(ValidationError, match="actions"):
        venv.step_async(np.zeros(5))
