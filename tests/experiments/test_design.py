"""Sample size, MDE and duration: pinned cases and agreement with statsmodels."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.power import NormalIndPower, normal_sample_size_one_tail
from statsmodels.stats.proportion import (
    power_proportions_2indep,
    samplesize_proportions_2indep_onetail,
)

from mktlab.errors import ValidationError
from mktlab.experiments import (
    duration,
    mde_mean,
    mde_proportion,
    sample_size_mean,
    sample_size_proportion,
)


def test_reference_case_57763():
    plan = sample_size_proportion(0.10, 0.05, relative=True, power=0.8, alpha=0.05)
    assert plan.n_control == plan.n_treatment == 57_763
    assert plan.total == 2 * 57_763
    assert plan.mde_absolute == pytest.approx(0.005)
    # the same plan with an absolute MDE
    assert sample_size_proportion(0.10, 0.005, relative=False).n_control == 57_763
    sm = samplesize_proportions_2indep_onetail(0.005, 0.10, 0.8, ratio=1, alpha=0.05)
    assert math.ceil(sm) == 57_763


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0.01, 0.6),
    st.floats(0.02, 0.5),
    st.floats(0.5, 0.95),
    st.sampled_from([0.01, 0.05, 0.1]),
    st.sampled_from([0.5, 1.0, 2.0, 3.0]),
)
def test_proportions_match_statsmodels(p, mde, power, alpha, ratio):
    plan = sample_size_proportion(p, mde, power=power, alpha=alpha, ratio=ratio)
    # statsmodels: group 1 = treatment (p + diff), nobs2 (control) = ratio_sm * nobs1
    n_t = samplesize_proportions_2indep_onetail(p * mde, p, power, ratio=1 / ratio, alpha=alpha)
    assert plan.n_treatment == pytest.approx(n_t, rel=1e-4, abs=1)
    assert plan.n_control == pytest.approx(n_t / ratio, rel=1e-4, abs=1)
    # and the planned sample reaches the power by statsmodels' own power function
    got = power_proportions_2indep(p * mde, p, plan.n_treatment, ratio=plan.n_control / plan.n_treatment,
                                   alpha=alpha, return_results=False)  # fmt: skip
    assert got >= power - 1e-4


@settings(max_examples=60, deadline=None)
@given(
    st.floats(1, 500),
    st.floats(0.1, 1000),
    st.floats(0.01, 0.5),
    st.floats(0.5, 0.95),
    st.sampled_from([0.5, 1.0, 2.0]),
)
def test_means_match_statsmodels(base, sd, mde, power, ratio):
    plan = sample_size_mean(base, sd, mde, power=power, ratio=ratio)
    d = base * mde
    n_c = normal_sample_size_one_tail(d, power, 0.025, std_null=sd * math.sqrt(1 + 1 / ratio))
    assert plan.n_control == math.ceil(n_c - 1e-9)
    assert plan.n_treatment == pytest.approx(n_c * ratio, rel=1e-4, abs=1)
    # NormalIndPower (nobs2 = ratio * nobs1; our control is its group 1) agrees on power
    got = NormalIndPower().power(d / sd, plan.n_control, 0.05, ratio=ratio)
    assert got >= power - 1e-9
    assert NormalIndPower().power(d / sd, n_c, 0.05, ratio=ratio) == pytest.approx(power, abs=1e-4)


def test_mde_inverts_sample_size():
    plan = sample_size_proportion(0.10, 0.05)
    assert mde_proportion(0.10, plan.n_control) == pytest.approx(0.05, rel=1e-3)
    assert mde_proportion(0.10, 57_762.65145) == pytest.approx(0.05, rel=1e-6)
    assert mde_proportion(0.10, 57_762.65145, relative=False) == pytest.approx(0.005, rel=1e-6)
    mp = sample_size_mean(50, 20, 0.02)
    assert mde_mean(20, mp.n_control, baseline=50) == pytest.approx(0.02, rel=1e-3)
    assert mde_mean(20, mp.n_control) == pytest.approx(1.0, rel=1e-3)
    with pytest.raises(ValidationError, match="n_control"):
        mde_proportion(0.5, 2)


def test_multi_arm_total_and_one_sided():
    plan = sample_size_proportion(0.2, 0.1, n_arms=3)
    assert plan.total == 3 * plan.n_control
    one = sample_size_proportion(0.2, 0.1, alternative="larger")
    assert one.n_control < plan.n_control
    sm = samplesize_proportions_2indep_onetail(0.02, 0.2, 0.8, alpha=0.05, alternative="larger")
    assert one.n_control == math.ceil(sm)


def test_duration_whole_weeks_at_least_one():
    assert duration(115_526, 20_000).days == 7  # 6 days of traffic -> one full week
    d = duration(115_526, 10_000)
    assert (d.days_needed, d.weeks, d.days) == (12, 2, 14)
    assert duration(140_000, 10_000).days == 14  # exactly two weeks
    assert duration(1000, 1_000_000).days == 7
    assert duration(115_526, 20_000, traffic_share=0.25).days == 28
    plan = sample_size_proportion(0.10, 0.05)
    assert plan.duration(5_000).days == 28  # 23.1 days -> 4 weeks


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: sample_size_proportion(0.0, 0.05), "baseline"),
        (lambda: sample_size_proportion(1.0, 0.05), "baseline"),
        (lambda: sample_size_proportion(-0.1, 0.05), "baseline"),
        (lambda: sample_size_proportion(0.1, 0.0), "mde"),
        (lambda: sample_size_proportion(0.1, -0.05), "mde"),
        (lambda: sample_size_proportion(0.6, 1.0), "mde"),
        (lambda: sample_size_proportion(0.1, 0.05, alpha=0), "alpha"),
        (lambda: sample_size_proportion(0.1, 0.05, alpha=1.2), "alpha"),
        (lambda: sample_size_proportion(0.1, 0.05, power=1), "power"),
        (lambda: sample_size_proportion(0.1, 0.05, ratio=0), "ratio"),
        (lambda: sample_size_proportion(0.1, 0.05, n_arms=1), "n_arms"),
        (lambda: sample_size_proportion(0.1, 0.05, alternative="both"), "alternative"),
        (lambda: sample_size_proportion("x", 0.05), "baseline"),
        (lambda: sample_size_mean(10, 0, 0.1), "sd"),
        (lambda: sample_size_mean(0, 1, 0.1), "baseline"),
        (lambda: duration(100, 0), "daily_traffic"),
        (lambda: duration(100, 10, traffic_share=0), "traffic_share"),
    ],
)
def test_bad_design_inputs(call, match):
    with pytest.raises(ValidationError, match=match):
        call()
