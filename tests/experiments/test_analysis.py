"""Experiment analysis on unit-level and summary data; Hillstrom as the real case."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest

from mktlab.datasets import load_hillstrom
from mktlab.errors import SchemaError, ValidationError
from mktlab.experiments import analyze, analyze_summary, summarize

METRICS = {"visit": "proportion", "conversion": "proportion", "spend": "mean"}


@pytest.fixture(scope="module")
def hill() -> pd.DataFrame:
    return load_hillstrom()


@pytest.fixture(scope="module")
def hill_result(hill):
    return analyze(hill, METRICS, arm="segment", control="No E-Mail", name="hillstrom")


def test_hillstrom_table(hill, hill_result):
    t = hill_result.table.set_index(["metric", "arm"])
    assert len(t) == 6
    assert hill_result.control == "No E-Mail"
    assert hill_result.trustworthy
    assert hill_result.srm.p_value > 0.5
    rates = hill.groupby("segment")[["visit", "conversion", "spend"]].mean()
    for m in METRICS:
        for arm in ("Mens E-Mail", "Womens E-Mail"):
            row = t.loc[(m, arm)]
            assert row.abs_lift == pytest.approx(rates.loc[arm, m] - rates.loc["No E-Mail", m])
            assert row.rel_lift == pytest.approx(rates.loc[arm, m] / rates.loc["No E-Mail", m] - 1)
    # visit: z-test by statsmodels; spend: Welch by scipy
    g = hill.groupby("segment")["visit"].agg(["sum", "size"])
    _, p = proportions_ztest([g.loc["Mens E-Mail", "sum"], g.loc["No E-Mail", "sum"]],
                             [g.loc["Mens E-Mail", "size"], g.loc["No E-Mail", "size"]])  # fmt: skip
    assert t.loc[("visit", "Mens E-Mail")].p_value == pytest.approx(p, rel=1e-8, abs=1e-300)
    sp = hill.groupby("segment")["spend"]
    ref = stats.ttest_ind(sp.get_group("Womens E-Mail"), sp.get_group("No E-Mail"), equal_var=False)
    assert t.loc[("spend", "Womens E-Mail")].p_value == pytest.approx(ref.pvalue, rel=1e-8)
    # Holm across the 6 comparisons, as statsmodels
    assert hill_result.table["p_adjusted"].to_numpy() == pytest.approx(
        multipletests(hill_result.table["p_value"], method="holm")[1]
    )
    assert hill_result.table["significant"].all()
    assert t.loc[("visit", "Mens E-Mail")].abs_lift == pytest.approx(0.0766, abs=1e-4)


def test_summary_path_agrees_with_unit_level(hill, hill_result):
    summ = summarize(hill, list(METRICS), arm="segment")
    assert set(summ.columns) >= {"arm", "metric", "n", "successes", "mean", "std"}
    res = analyze_summary(summ, control="No E-Mail", name="hillstrom")
    cols = ["abs_lift", "rel_lift", "p_value", "p_adjusted", "rel_ci_low", "rel_ci_high"]
    a = hill_result.table.set_index(["metric", "arm"])[cols].sort_index()
    b = res.table.set_index(["metric", "arm"])[cols].sort_index()
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-8, atol=1e-300)


def test_reference_summary_case():
    summ = pd.DataFrame({"arm": ["control", "treatment"], "metric": "conversion",
                         "n": [10_000, 10_000], "conversions": [1000, 1100]})  # fmt: skip
    res = analyze_summary(summ)
    assert res.table.loc[0, "p_value"] == pytest.approx(0.02108, abs=5e-6)
    assert res.control == "control"


def test_corrections_choice(hill):
    for method, sm in (("bonferroni", "bonferroni"), ("bh", "fdr_bh"), ("none", None)):
        r = analyze(hill, METRICS, arm="segment", control="No E-Mail", correction=method)
        expected = (
            r.table["p_value"] if sm is None else multipletests(r.table["p_value"], method=sm)[1]
        )
        assert r.table["p_adjusted"].to_numpy() == pytest.approx(np.asarray(expected))


def test_cuped_shrinks_the_interval_not_the_lift():
    rng = np.random.default_rng(5)
    n = 20_000
    pre = rng.gamma(2.0, 50.0, n)
    arm = np.where(rng.random(n) < 0.5, "control", "treatment")
    post = 0.7 * pre + rng.normal(0, 30, n) + np.where(arm == "treatment", 2.0, 0.0)
    df = pd.DataFrame({"arm": arm, "revenue": post, "pre_revenue": pre})
    plain = analyze(df, {"revenue": "mean"}).table.iloc[0]
    cup = analyze(df, {"revenue": "mean"}, covariates={"revenue": "pre_revenue"}).table.iloc[0]
    width = lambda r: r.abs_ci_high - r.abs_ci_low  # noqa: E731
    assert width(cup) < 0.6 * width(plain)
    assert cup.variance_reduction > 0.7
    assert cup.abs_lift == pytest.approx(2.0, abs=4 * cup.std_error)
    assert cup.theta == pytest.approx(0.7, abs=0.02)
    assert plain.abs_lift == pytest.approx(cup.abs_lift, abs=4 * plain.std_error)


def test_srm_flagged():
    df = pd.DataFrame(
        {"arm": ["control"] * 5200 + ["treatment"] * 4800, "y": np.tile([0, 1], 5000)}
    )
    res = analyze(df, ["y"])
    assert res.srm.mismatch
    assert not res.trustworthy
    res2 = analyze(df, ["y"], shares={"control": 0.52, "treatment": 0.48})
    assert not res2.srm.mismatch


def test_figures_and_summary(hill_result):
    f = hill_result.figures()
    assert f["srm_p_value"] == pytest.approx(hill_result.srm.p_value)
    assert "visit.Mens_E-Mail.p_adjusted" in f
    assert list(hill_result.summary().columns)[:2] == ["metric", "arm"]


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"metrics": ["y"], "control": "ctl"}, ValidationError, "control: unknown arm 'ctl'"),
        (
            {"metrics": ["y"], "arms": ["control", "treatment"]},
            ValidationError,
            "unknown arm.*'other'",
        ),
        (
            {"metrics": ["y"], "arms": ["control", "treatment", "other", "empty"]},
            ValidationError,
            "empty",
        ),
        ({"metrics": ["name"]}, SchemaError, "name: metric must be numeric"),
        ({"metrics": ["nope"]}, SchemaError, "nope"),
        ({"metrics": []}, ValidationError, "metrics"),
        ({"metrics": ["y"], "alpha": 1.0}, ValidationError, "alpha"),
        ({"metrics": {"y": "ratio"}}, ValidationError, "kind"),
        ({"metrics": {"z": "proportion"}}, ValidationError, "0/1"),
        ({"metrics": ["y"], "covariates": {"q": "z"}}, ValidationError, "covariates"),
        ({"metrics": ["y"], "correction": "sidak"}, ValidationError, "correction"),
    ],
)
def test_bad_analysis_inputs(kwargs, err, match):
    df = pd.DataFrame({"arm": ["control", "treatment", "other"] * 10, "y": [0, 1] * 15,
                       "z": np.arange(30.0), "name": ["a"] * 30})  # fmt: skip
    with pytest.raises(err, match=match):
        analyze(df, **kwargs)


def test_one_arm_and_empty_metric_arm():
    with pytest.raises(ValidationError, match="at least two arms"):
        analyze(pd.DataFrame({"arm": ["a"] * 5, "y": [1.0] * 5}), ["y"])
    df = pd.DataFrame({"arm": ["control"] * 5 + ["treatment"] * 5, "y": [1.0] * 5 + [np.nan] * 5})
    with pytest.raises(ValidationError, match="'treatment' has no values"):
        analyze(df, {"y": "mean"})


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([("control", "c", 100, 10), ("treatment", "c", 100, 120)], "exceed units"),
        ([("control", "c", 0, 0), ("treatment", "c", 100, 1)], "n: units must be > 0"),
        ([("control", "c", 100, -1), ("treatment", "c", 100, 1)], "conversions"),
        ([("control", "c", 100, 10)], "at least two arms"),
        ([("control", "c", 100, 10), ("treatment", "d", 100, 10)], "no row for arm"),
    ],
)
def test_bad_summaries(rows, match):
    df = pd.DataFrame(rows, columns=["arm", "metric", "n", "successes"])
    with pytest.raises(ValidationError, match=match):
        analyze_summary(df)
    with pytest.raises(SchemaError, match="successes"):
        analyze_summary(df.drop(columns="successes"))
