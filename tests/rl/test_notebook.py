"""notebooks/07-rl-policy runs top to bottom with a small budget."""

from __future__ import annotations

import math

import pytest

from tests.notebook_utils import run_notebook


@pytest.mark.notebooks
@pytest.mark.slow
def test_rl_notebook_small(small_world):
    res = run_notebook("07-rl-policy", {"SMALL": True})
    assert res["timesteps"] >= 150_000
    assert res["n_policies"] == 9  # 8 baselines incl. random + PPO
    assert math.isfinite(res["ppo_return"])
    assert math.isfinite(res["best_baseline_return"])
    assert res["ppo_return"] > res["random_return"]
    assert math.isfinite(res["ope_value_per_user"])
    assert res["registered_version"] is not None
    assert len(res["served_actions"]) == 5
    assert set(res["served_actions"]) <= {"none", "push", "sms", "coupon_small", "coupon_large"}
