"""Comparison statistics: pinned reference numbers and agreement with scipy/statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from mktlab.errors import ValidationError
from mktlab.experiments import (
    adjust_pvalues,
    beta_chance_to_beat,
    compare_means,
    compare_proportions,
    cuped_adjust,
    srm_test,
)

PS = [0.005, 0.011, 0.02, 0.04, 0.13]


def test_reference_z_test():
    c = compare_proportions(1000, 10_000, 1100, 10_000)
    assert c.p_value == pytest.approx(0.02108, abs=5e-6)
    assert c.abs_lift == pytest.approx(0.01)
    assert c.rel_lift == pytest.approx(0.10)
    _, p_sm = proportions_ztest([1100, 1000], [10_000, 10_000])
    assert c.p_value == pytest.approx(p_sm, rel=1e-10)
    lo, hi = confint_proportions_2indep(1100, 10_000, 1000, 10_000, method="wald", compare="diff")
    assert (c.abs_ci_low, c.abs_ci_high) == pytest.approx((lo, hi), rel=1e-10)
    # delta method by hand: var(rel) = v_t / p_c² + p_t² v_c / p_c⁴
    se = np.sqrt(0.11 * 0.89 / 1e4 / 0.01 + 0.11**2 * 0.09 / 1e4 / 1e-4)
    assert c.rel_ci_high - c.rel_lift == pytest.approx(1.959964 * se, rel=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 5000), st.integers(2, 5000), st.floats(0, 1), st.floats(0, 1))
def test_z_test_matches_statsmodels(nc, nt, fc, ft):
    xc, xt = round(fc * nc), round(ft * nt)
    c = compare_proportions(xc, nc, xt, nt)
    if 0 < xc + xt < nc + nt:
        _, p = proportions_ztest([xt, xc], [nt, nc])
        assert c.p_value == pytest.approx(p, rel=1e-8, abs=1e-300)
    else:
        assert c.p_value == 1.0


def test_reference_srm():
    r = srm_test({"control": 4900, "treatment": 5100}, {"control": 0.5, "treatment": 0.5})
    assert r.p_value == pytest.approx(0.0455, abs=5e-5)
    assert r.chi2 == pytest.approx(4.0)
    assert not r.mismatch  # 0.0455 > 0.001
    assert srm_test([4800, 5200]).mismatch  # p = 6.3e-5
    assert srm_test([2000, 1000], [2, 1]).p_value == pytest.approx(1.0)
    assert srm_test([330, 340, 331]).p_value == pytest.approx(
        stats.chisquare([330, 340, 331]).pvalue
    )


def test_reference_corrections():
    assert adjust_pvalues(PS, "holm") == pytest.approx([0.025, 0.044, 0.06, 0.08, 0.13], abs=1e-12)
    assert adjust_pvalues(PS, "bh") == pytest.approx([0.025, 0.0275, 0.03333, 0.05, 0.13], abs=5e-6)
    assert adjust_pvalues(PS, "bonferroni") == pytest.approx([0.025, 0.055, 0.1, 0.2, 0.65])
    assert adjust_pvalues(PS, "none") == pytest.approx(PS)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(0, 1), min_size=1, max_size=30),
    st.sampled_from(["bonferroni", "holm", "bh"]),
)
def test_corrections_match_statsmodels(p, method):
    sm = {"bonferroni": "bonferroni", "holm": "holm", "bh": "fdr_bh"}[method]
    assert adjust_pvalues(p, method) == pytest.approx(multipletests(p, method=sm)[1], abs=1e-12)


def test_welch_matches_scipy():
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(1, 1, 300), rng.lognormal(1.1, 1.3, 250)
    c = compare_means(a.mean(), a.std(ddof=1), a.size, b.mean(), b.std(ddof=1), b.size, alpha=0.1)
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert c.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert c.statistic == pytest.approx(ref.statistic, rel=1e-9)
    ci = ref.confidence_interval(0.9)
    assert (c.abs_ci_low, c.abs_ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert c.chance_to_beat == pytest.approx(stats.norm.cdf(c.abs_lift / c.std_error))


def test_beta_chance_to_beat_exact():
    # symmetric and complementary; equal posteriors -> 1/2
    assert beta_chance_to_beat(5, 5, 5, 5) == pytest.approx(0.5, abs=1e-12)
    p = beta_chance_to_beat(101, 901, 121, 881)
    assert p + beta_chance_to_beat(121, 881, 101, 901) == pytest.approx(1.0, abs=1e-10)
    rng = np.random.default_rng(0)
    mc = (rng.beta(121, 881, 2_000_000) > rng.beta(101, 901, 2_000_000)).mean()
    assert p == pytest.approx(mc, abs=2e-3)
    # non-integer prior falls back to the normal approximation, close at these sizes
    assert beta_chance_to_beat(100.5, 900.5, 120.5, 880.5) == pytest.approx(p, abs=0.01)
    c = compare_proportions(1000, 10_000, 1100, 10_000)
    assert c.chance_to_beat == pytest.approx(beta_chance_to_beat(1001, 9001, 1101, 8901))
    assert 0.985 < c.chance_to_beat < 0.995


def test_cuped_theta_and_variance_reduction():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([2.0, 4.0, 5.0, 9.0])
    adj, theta = cuped_adjust(y, x)
    assert theta == pytest.approx(np.cov(x, y)[0, 1] / np.var(x, ddof=1))
    assert adj.mean() == pytest.approx(y.mean())
    rng = np.random.default_rng(1)
    pre = rng.normal(10, 3, 50_000)
    post = 0.8 * pre + rng.normal(0, 2, 50_000)
    adj, _ = cuped_adjust(post, pre)
    rho2 = np.corrcoef(pre, post)[0, 1] ** 2
    assert 1 - adj.var() / post.var() == pytest.approx(rho2, rel=1e-6)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: compare_proportions(-1, 100, 5, 100), "conversions"),
        (lambda: compare_proportions(5, 0, 5, 100), "empty arm"),
        (lambda: compare_proportions(5, 100, 150, 100), "exceed units"),
        (lambda: compare_proportions(5, -100, 5, 100), "units"),
        (lambda: compare_proportions(5.5, 100, 5, 100), "count"),
        (lambda: compare_proportions(5, 100, 5, 100, alpha=0), "alpha"),
        (lambda: compare_means(1.0, 1.0, 1, 1.0, 1.0, 10), "at least 2"),
        (lambda: compare_means(1.0, -1.0, 10, 1.0, 1.0, 10), "sd_control"),
        (lambda: compare_means("a", 1.0, 10, 1.0, 1.0, 10), "mean_control"),
        (lambda: srm_test([10]), "at least two"),
        (lambda: srm_test({"a": 1, "b": 2}, {"a": 1, "c": 1}), "unknown arms"),
        (lambda: srm_test([0, 0]), "empty"),
        (lambda: srm_test([-1, 5]), "count"),
        (lambda: adjust_pvalues([0.1, 1.5]), "p_values"),
        (lambda: adjust_pvalues([0.1], "sidak"), "correction"),
        (
            lambda: cuped_adjust([1.0, 2.0, 3.0], [1.0, 2.0], covariate="pre_spend"),
            "pre_spend.*2 values",
        ),
        (lambda: cuped_adjust([1.0, np.nan], [1.0, 2.0], metric="spend"), "spend"),
    ],
)
def test_bad_stats_inputs(call, match):
    with pytest.raises(ValidationError, match=match):
        call()
