"""Anytime-valid monitoring: peeking simulation, boundary properties, guardrail auto-stop."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mktlab.errors import ValidationError
from mktlab.experiments import (
    ConfidenceSequence,
    Guardrail,
    SequentialMonitor,
    cumulative_stats,
    mixture_boundary,
    monitor,
    simulate_peeking,
)
from mktlab.experiments.sequential import mixture_pvalue


def test_daily_peeking_aa_simulation_proportions():
    r = simulate_peeking(
        n_sims=4000, days=28, daily_per_arm=500, baseline=0.10, alpha=0.05, seed=11
    )
    # naive: testing every day at 5 % rejects a true null several times too often
    assert r["naive_fpr"] > 0.15
    # the confidence sequence keeps the error rate at or below alpha (+ Monte Carlo slack)
    assert r["sequential_fpr"] <= 0.05 + 0.01
    # a single fixed-horizon look is calibrated
    assert r["fixed_fpr"] == pytest.approx(0.05, abs=0.015)


def test_daily_peeking_aa_simulation_skewed_means():
    r = simulate_peeking(n_sims=800, days=21, daily_per_arm=150, baseline=20.0, kind="mean", seed=5)
    assert r["naive_fpr"] > 0.12
    assert r["sequential_fpr"] <= 0.05 + 0.02


def test_sequential_test_has_power():
    r = simulate_peeking(
        n_sims=500, days=28, daily_per_arm=2000, baseline=0.10, effect=0.10, seed=2
    )
    assert r["sequential_fpr"] > 0.8  # here a power: a real +10 % lift is found


@settings(max_examples=40, deadline=None)
@given(st.floats(1e-3, 1e3), st.sampled_from([0.01, 0.05, 0.1, 0.2]))
def test_boundary_wider_than_fixed_and_matches_pvalue(r, alpha):
    from scipy import stats

    b = float(mixture_boundary(r, alpha))
    assert b > stats.norm.isf(alpha / 2)  # validity at all times costs width at each time
    # the always-valid p-value crosses alpha exactly at the boundary
    assert float(mixture_pvalue(b, r, alpha)) == pytest.approx(alpha, rel=1e-8)


def test_boundary_formula_by_hand():
    alpha, r = 0.05, 1.0
    c = 2 * math.log(20) + math.log(1 + 2 * math.log(20))
    assert float(mixture_boundary(r, alpha)) == pytest.approx(
        math.sqrt((1 + 1 / c) * math.log((1 + c) / alpha**2))
    )
    cs = ConfidenceSequence(alpha=0.05, n_opt=1000)
    lo, hi = cs.interval(0.02, 0.01, 1000, 1000)
    assert (hi - lo) / 2 == pytest.approx(0.01 * float(mixture_boundary(1.0, 0.05)))
    p = cs.p_value([0.0, 0.05, 0.0], [0.01, 0.01, 0.01], [100, 200, 300], [100, 200, 300])
    assert p[2] == p[1] < 1  # running minimum: evidence is never forgotten


def _experiment(days=14, per_day=400, spend_effect=0.0, seed=0):
    rng = np.random.default_rng(seed)
    n = days * per_day * 2
    arm = np.where(rng.random(n) < 0.5, "control", "treatment")
    day = np.repeat(np.arange(1, days + 1), per_day * 2)
    spend = rng.exponential(10.0, n) * np.where(arm == "treatment", 1 + spend_effect, 1.0)
    conv = (rng.random(n) < 0.1).astype(int)
    return pd.DataFrame({"arm": arm, "day": day, "spend": spend, "conversion": conv})


def test_guardrail_stops_harmful_experiment_and_logs(caplog):
    df = _experiment(spend_effect=-0.15)
    with caplog.at_level(logging.INFO, logger="mktlab.experiments"):
        res = monitor(df, ["conversion", "spend"], n_opt=5600, guardrails=[Guardrail("spend")])
    assert res.stopped
    assert 1 <= res.stop_day < 14  # stopped early: later days never looked at
    assert res.history["day"].max() == res.stop_day
    last = res.decisions[-1]
    assert last["action"] == "stop"
    assert last["metric"] == "spend"
    assert last["arm"] == "treatment"
    assert "guardrail 'spend'" in res.reason
    assert all(d["action"] == "continue" for d in res.decisions[:-1])
    assert any("stopped" in r.message for r in caplog.records)
    row = res.history[(res.history.metric == "spend")].iloc[-1]
    assert row.cs_high < 0


def test_aa_experiment_runs_to_the_end():
    res = monitor(_experiment(seed=3), ["conversion", "spend"], n_opt=5600,
                  guardrails=[Guardrail("spend"), Guardrail("conversion")])  # fmt: skip
    assert not res.stopped
    assert len(res.decisions) == 14
    h = res.history
    assert (h["cs_low"] <= h["naive_low"]).all()
    assert (h["cs_high"] >= h["naive_high"]).all()
    assert h.groupby("metric")["p_always_valid"].apply(lambda s: s.is_monotonic_decreasing).all()


def test_stop_on_success_and_lower_is_better_guardrail():
    df = _experiment(spend_effect=0.2, seed=1)
    res = monitor(df, ["spend"], n_opt=5600, stop_on_success="spend")
    assert res.stopped
    assert "better" in res.reason
    # for a metric where lower is better, a rise is the harm
    res2 = monitor(
        df, ["spend"], n_opt=5600, guardrails=[Guardrail("spend", higher_is_better=False)]
    )
    assert res2.stopped
    assert "worse" in res2.reason


def test_cumulative_stats_and_monitor_errors():
    df = _experiment(days=3, per_day=10)
    cum = cumulative_stats(df, ["spend"])
    last = cum[cum.day == 3].set_index("arm")
    assert last["n"].sum() == len(df)
    assert last.loc["control", "sum"] == pytest.approx(df.loc[df.arm == "control", "spend"].sum())
    mon = SequentialMonitor(["spend"], guardrails=[Guardrail("spend")], n_opt=100)
    with pytest.raises(ValidationError, match="control"):
        mon.update(1, cum[cum.day == 1].replace({"arm": {"control": "c0"}}))
    with pytest.raises(ValidationError, match="not monitored"):
        SequentialMonitor(["spend"], guardrails=[Guardrail("revenue")])
    with pytest.raises(ValidationError, match="n_opt"):
        ConfidenceSequence(n_opt=0)
    with pytest.raises(ValidationError, match="alpha"):
        ConfidenceSequence(alpha=1.5)
    with pytest.raises(ValidationError, match="numeric"):
        cumulative_stats(df.assign(spend="x"), ["spend"])
    with pytest.raises(ValidationError, match="kind"):
        simulate_peeking(10, 2, 10, kind="median")
    stopped = monitor(
        _experiment(spend_effect=-0.3), ["spend"], n_opt=5600, guardrails=[Guardrail("spend")]
    )
    assert stopped.stopped


def test_sample_ratio_mismatch_stops_the_experiment():
    df = _experiment(days=10, per_day=500, seed=4)
    # a logging bug drops 10 % of treatment units from day 3 on
    rng = np.random.default_rng(0)
    drop = (df.arm == "treatment") & (df.day >= 3) & (rng.random(len(df)) < 0.10)
    res = monitor(df[~drop], ["conversion"], n_opt=5000)
    assert res.stopped
    assert "sample ratio mismatch" in res.reason
    assert res.stop_day > 3
    assert res.decisions[-1]["srm_p_value"] < 1e-3
    # the same data with the check off, or with the matching planned shares, runs on
    assert not monitor(df[~drop], ["conversion"], n_opt=5000, srm_threshold=None).stopped
    assert not monitor(df, ["conversion"], n_opt=5000).stopped
