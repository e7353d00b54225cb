"""Dynamics respond in the documented direction."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mktlab.errors import DataError
from mktlab.rl import ACTIONS, SEGMENTS, EnvConfig, MarketingSimulator, UserPrior

N = 4000
A = {a: i for i, a in enumerate(ACTIONS)}


@pytest.fixture(scope="module")
def sim():
    s = MarketingSimulator(n_users=N)
    s.reset(0)
    return s


def _p(sim, action: str) -> np.ndarray:
    return sim.purchase_probability(np.full(sim.n, A[action]))


def test_coupon_raises_purchase_probability_of_persuadables(sim):
    seg = sim.segment == SEGMENTS.index("persuadable")
    p0, ps, pl = _p(sim, "none")[seg], _p(sim, "coupon_small")[seg], _p(sim, "coupon_large")[seg]
    assert (ps > p0).all()
    assert (pl > ps).all()


def test_coupon_lowers_purchase_probability_of_sleeping_dogs(sim):
    seg = sim.segment == SEGMENTS.index("sleeping_dog")
    p0, pl = _p(sim, "none")[seg], _p(sim, "coupon_large")[seg]
    assert (pl < p0).all()
    assert (_p(sim, "push")[seg] < p0).all()


def test_sure_things_buy_anyway_and_lost_causes_do_not(sim):
    p0 = _p(sim, "none")
    pl = _p(sim, "coupon_large")
    sure = sim.segment == SEGMENTS.index("sure_thing")
    lost = sim.segment == SEGMENTS.index("lost_cause")
    assert p0[sure].mean() > 5 * p0[lost].mean()
    assert np.abs(pl[sure] - p0[sure]).mean() < 0.02  # coupon changes little
    assert (pl[lost] - p0[lost]).max() < 0.03


def test_fatigue_accumulates_with_repeated_touches_and_decays_without():
    s = MarketingSimulator(n_users=10)
    s.reset(1)
    levels = []
    for _ in range(5):
        s.step(np.full(10, A["sms"]))
        levels.append(s.fatigue[0])
    assert all(b > a for a, b in itertools.pairwise(levels))
    c = s.config
    # hand-computed: fatigue_t = sum_k decay^k * touch, five SMS in a row
    expect = sum(c.fatigue_decay**k for k in range(5)) * c.touch_fatigue[1]
    assert levels[-1] == pytest.approx(expect)
    s.step(np.zeros(10, dtype=np.int64))
    assert s.fatigue[0] == pytest.approx(expect * c.fatigue_decay)


def test_fatigue_dampens_response_and_raises_churn():
    cfg = EnvConfig()
    churn = {}
    for action in ("none", "sms"):
        s = MarketingSimulator(cfg, n_users=N)
        s.reset(3)
        for _ in range(cfg.horizon):
            s.step(np.full(N, A[action]))
        churn[action] = 1 - s.active.mean()
    assert churn["sms"] > churn["none"] + 0.1
    s = MarketingSimulator(cfg, n_users=N)
    s.reset(3)
    seg = s.segment == 0
    fresh = (_p(s, "coupon_small") - _p(s, "none"))[seg]
    for _ in range(4):
        s.step(np.full(N, A["push"]))
    s.active[:] = True
    tired = (_p(s, "coupon_small") - _p(s, "none"))[seg]
    assert tired.mean() < fresh.mean()


def test_coupon_habituation_erodes_full_price_purchases():
    s = MarketingSimulator(n_users=N)
    s.reset(4)
    sure = s.segment == SEGMENTS.index("sure_thing")
    before = _p(s, "none")[sure]
    s.habit[:] = 3.0
    after = _p(s, "none")[sure]
    assert (after < before).all()
    ratio = np.exp(-s.config.habit_erosion * 3.0)
    np.testing.assert_allclose(after, before * ratio, rtol=1e-9)


def test_churned_users_never_buy():
    s = MarketingSimulator(n_users=50)
    s.reset(0)
    s.active[:] = False
    assert (_p(s, "coupon_large") == 0).all()
    _, r, info = s.step(np.zeros(50, dtype=np.int64))
    assert not info["bought"].any()
    assert (r == 0).all()


def test_default_prior_mirrors_world_segments():
    shares = UserPrior.default().segment_shares()
    assert set(shares) == set(SEGMENTS)
    assert all(0.05 < v < 0.6 for v in shares.values())


def test_prior_from_world_matches_campaign_truth(small_world):
    prior = UserPrior.from_world(small_world)
    truth = small_world.campaign_truth
    truth = truth[truth.campaign_id == "C001"]
    want = truth["quadrant"].value_counts(normalize=True)
    got = prior.segment_shares()
    for seg in SEGMENTS:
        assert got[seg] == pytest.approx(want[seg], abs=0.02)
    s = MarketingSimulator(n_users=500, prior=prior)
    obs = s.reset(0)
    assert np.isfinite(obs).all()


def test_prior_from_world_refuses_unknown_campaign(small_world):
    with pytest.raises(DataError, match="campaign_id"):
        UserPrior.from_world(small_world, campaign_id="NOPE")
