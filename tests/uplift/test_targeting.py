"""Quadrants and budgeted targeting on hand-computable cases."""

from __future__ import annotations

import numpy as np
import pytest

from mktlab.errors import ValidationError
from mktlab.uplift import (
    Economics,
    QuadrantThresholds,
    assign_quadrants,
    compare_to_oracle,
    plan_targeting,
    quadrant_summary,
)


def test_quadrants_by_rule():
    mu0 = np.array([0.05, 0.60, 0.02, 0.40, 0.30])
    tau = np.array([0.20, 0.00, 0.01, -0.15, 0.05])
    q = assign_quadrants(mu0, tau, QuadrantThresholds(uplift=0.05, response=0.25))
    # 0.05 is not > 0.05: an unaffected user with mu0 0.30 >= 0.25 is a sure thing
    assert q.tolist() == ["persuadable", "sure_thing", "lost_cause", "sleeping_dog", "sure_thing"]
    summ = quadrant_summary(
        q, mu0, mu0 + tau, margin=10, contact_cost=1, coupon_cost=2, true_quadrant=q
    )
    assert summ["users"].sum() == 5
    assert summ["share"].sum() == pytest.approx(1.0)
    pers = summ.set_index("quadrant").loc["persuadable"]
    # profit = 10*0.2 - (1 + 2*0.25) = 0.5
    assert pers["profit_if_treated"] == pytest.approx(0.5)
    assert (summ["precision"] == 1.0).all()


@pytest.mark.parametrize("bad", [-0.1, float("nan"), "x"])
def test_bad_thresholds(bad):
    with pytest.raises(ValidationError, match="uplift"):
        QuadrantThresholds(uplift=bad)


def test_plan_by_hand_max_users_and_budget():
    econ = Economics(margin=10.0, contact_cost=1.0)
    tau = np.array([0.5, 0.05, 0.3, 0.2, -0.1])  # profits 4, -0.5, 2, 1, -2
    mu1 = np.full(5, 0.5)
    plan = plan_targeting(tau, mu1, econ)
    assert plan.selected.tolist() == [True, False, True, True, False]
    assert plan.expected_profit == pytest.approx(7.0)
    assert plan.expected_cost == pytest.approx(3.0)
    assert plan.roi == pytest.approx(7 / 3)
    assert plan.cutoff_uplift == pytest.approx(0.2)
    assert plan_targeting(tau, mu1, econ, max_users=2).expected_profit == pytest.approx(6.0)
    b = plan_targeting(tau, mu1, econ, budget=1.5)  # one contact affordable
    assert b.n_selected == 1
    assert b.selected[0]
    assert plan_targeting(tau, mu1, econ, budget=0).n_selected == 0
    assert len(plan.curve) == 5
    assert plan.curve["cum_profit"].iloc[0] == pytest.approx(4.0)


def test_coupon_cost_penalises_sure_things():
    econ = Economics(margin=10.0, coupon_cost=5.0)
    # same uplift, but the second converts anyway (high mu1): its coupons cost more than the lift
    plan = plan_targeting(np.array([0.1, 0.1]), np.array([0.12, 0.9]), econ)
    assert plan.selected.tolist() == [True, False]


def test_oracle_comparison():
    rng = np.random.default_rng(0)
    tau = rng.normal(0.05, 0.1, 2000)
    mu1 = np.clip(0.2 + tau, 0, 1)
    econ = Economics(margin=20.0, contact_cost=0.5)
    same = compare_to_oracle(tau, mu1, tau, mu1, econ, budget=200.0)
    assert same["ratio"] == pytest.approx(1.0)
    noisy = compare_to_oracle(tau + rng.normal(0, 0.1, 2000), mu1, tau, mu1, econ, budget=200.0)
    assert 0 < noisy["ratio"] < 1.0


def test_bad_economics():
    with pytest.raises(ValidationError, match="margin"):
        Economics(margin=0)
    with pytest.raises(ValidationError, match="coupon_cost"):
        Economics(margin=1, coupon_cost=-1)
    with pytest.raises(ValidationError, match="budget"):
        plan_targeting(np.zeros(2), np.zeros(2), Economics(margin=1), budget=-5)
