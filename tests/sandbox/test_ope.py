from __future__ import annotations

import warnings

import numpy as np
import pytest

from mktlab.errors import ValidationError
from mktlab.sandbox import (
    LowEffectiveSampleSizeWarning,
    effective_sample_size,
    estimate_value,
    per_arm_terms,
    policy_value,
    simulate_bandit,
)

# four logged rows, two arms; target policy: always arm 1
A = np.array([0, 1, 1, 0])
P = np.array([0.5, 0.25, 0.5, 0.8])
R = np.array([1.0, 1.0, 0.0, 0.0])
PI = np.array([[0.0, 1.0]] * 4)
Q = np.array([[0.2, 0.6], [0.3, 0.7], [0.1, 0.5], [0.4, 0.4]])


def total(est, **kw):
    terms, w = per_arm_terms(est, A, P, R, PI, Q if est in ("dm", "dr") else None)
    return terms.sum() / (w.mean() if est == "snips" else 1.0), w


def test_hand_computed_estimators():
    # w = pi(a_i)/p_i = [0, 4, 2, 0]
    ips, w = total("ips")
    assert w.tolist() == [0.0, 4.0, 2.0, 0.0]
    assert ips == pytest.approx(4.0)  # 4*1 + 2*0
    snips, _ = total("snips")
    assert snips == pytest.approx(4 * 4.0 / 6.0)  # n * sum(w r) / sum(w)
    dm, _ = total("dm")
    assert dm == pytest.approx(0.6 + 0.7 + 0.5 + 0.4)
    dr, _ = total("dr")
    assert dr == pytest.approx(2.2 + 4 * (1 - 0.7) + 2 * (0 - 0.5))
    assert effective_sample_size(w) == pytest.approx(36 / 20)


def test_per_arm_decomposition_sums_to_value():
    pi = np.array([[0.5, 0.5], [0.2, 0.8], [1.0, 0.0], [0.3, 0.7]])
    terms, _ = per_arm_terms("dr", A, P, R, pi, Q)
    assert terms.shape == (4, 2)
    assert terms[:, 0].sum() + terms[:, 1].sum() == pytest.approx(terms.sum())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pscore": [0.5, 0.0, 0.5, 0.8]}, "rows \\[1\\]"),
        ({"pscore": [0.5, 1.5, 0.5, 0.8]}, "in \\(0, 1\\]"),
        ({"pscore": [0.5, np.nan, 0.5, 0.8]}, "propensities"),
        ({"pscore": None}, "needs logging propensities"),
        ({"action": [0, 1, 2, 0]}, "arm indices"),
        ({"pi": [[0.5, 0.6]] * 4}, "probability distribution"),
        ({"reward": [1, np.nan, 0, 0]}, "NaN"),
    ],
)
def test_bad_inputs(kwargs, match):
    args = {"action": A, "pscore": P, "reward": R, "pi": PI}
    args.update(kwargs)
    with pytest.raises(ValidationError, match=match):
        per_arm_terms("ips", args["action"], args["pscore"], args["reward"], args["pi"])


def test_dr_and_dm_need_a_reward_model():
    with pytest.raises(ValidationError, match="reward model"):
        per_arm_terms("dr", A, P, R, PI)


def _target(data):
    # a deterministic policy that disagrees with the targeted log a lot: arm 1 when x2 > 0
    pi = np.zeros((len(data), 2))
    pi[np.arange(len(data)), (data.frame["x2"].to_numpy() > 0).astype(int)] = 1.0
    return pi


def test_estimators_unbiased_on_simulated_bandit_data():
    """Averaged over many logs, IPS and DR hit the true value; DR even with a wrong model."""
    est = {"ips": [], "snips": [], "dr": [], "dm_wrong": [], "dr_wrong": []}
    truth = []
    for seed in range(300):
        data, mu = simulate_bandit(400, seed=seed)
        pi = _target(data)
        truth.append(policy_value(pi, mu))
        a, p, y = data.action, data.pscore, data.conversions
        wrong = np.clip(mu + 0.08, 0, 1)  # a biased reward model
        for name, e, q in (("ips", "ips", None), ("snips", "snips", None), ("dr", "dr", mu),
                           ("dm_wrong", "dm", wrong), ("dr_wrong", "dr", wrong)):  # fmt: skip
            terms, w = per_arm_terms(e, a, p, y, pi, q)
            est[name].append(terms.sum() / (w.mean() if e == "snips" else 1.0))
    truth = np.mean(truth)
    for name in ("ips", "dr", "dr_wrong"):
        v = np.asarray(est[name])
        se = v.std(ddof=1) / np.sqrt(len(v))
        assert abs(v.mean() - truth) < 3 * se, (name, v.mean(), truth, se)
    # the direct method inherits the model's bias (0.08 * 400 rows = 32 conversions)
    assert np.mean(est["dm_wrong"]) - truth == pytest.approx(32, abs=3)
    # SNIPS is only consistent, but at n=400 its bias is small
    assert abs(np.mean(est["snips"]) - truth) < 0.03 * truth


def test_bootstrap_interval_coverage_on_simulated_data():
    hits = {"ips": 0, "dr": 0}
    widths = {"ips": [], "dr": []}
    reps = 120
    for seed in range(reps):
        data, mu = simulate_bandit(1000, seed=1000 + seed)
        pi = _target(data)
        truth = policy_value(pi, mu)
        q = np.clip(
            mu + np.random.default_rng(seed).normal(0, 0.03, mu.shape), 0, 1
        )  # a decent model
        for e in hits:
            iv, _ = estimate_value(
                e,
                data.action,
                data.pscore,
                data.conversions,
                pi,
                q if e == "dr" else None,
                n_boot=200,
                seed=seed,
            )
            hits[e] += iv.covers(truth)
            widths[e].append(iv.width)
    assert hits["ips"] / reps >= 0.9, hits
    assert hits["dr"] / reps >= 0.9, hits
    assert np.mean(widths["dr"]) < np.mean(widths["ips"])


def test_low_effective_sample_size_warns():
    rng = np.random.default_rng(0)
    n = 2000
    a = np.ones(n, dtype=np.int64)
    p = np.full(n, 0.9)
    p[:3] = 1e-4  # three rows the logger almost never chose: weights of 10,000
    pi = np.tile([0.0, 1.0], (n, 1))
    with pytest.warns(LowEffectiveSampleSizeWarning, match="effective sample size"):
        _, ess = estimate_value("ips", a, p, rng.random(n), pi, n_boot=20)
    assert ess < 10
    with warnings.catch_warnings():
        warnings.simplefilter("error", LowEffectiveSampleSizeWarning)
        estimate_value("ips", a, np.full(n, 0.9), rng.random(n), pi, n_boot=20)
