"""Learners recover a planted effect; bad input gives clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from mktlab.errors import DataError, SchemaError, ValidationError
from mktlab.uplift import (
    FeaturePrep,
    TLearner,
    UpliftForest,
    default_learners,
    make_learner,
    simulate,
)
from mktlab.uplift.learners import LEARNERS


@pytest.fixture(scope="module")
def planted():
    d = simulate(6000, seed=3, effect=0.25)
    prep = FeaturePrep().fit(d.X)
    return d, prep.transform(d.X)


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_learner_recovers_planted_effect(planted, name):
    d, X = planted
    n_est = 30 if name in {"urf", "causal_forest"} else 60
    est = make_learner(name, n_estimators=n_est, random_state=1)
    assert est.fit(X, d.treatment, d.y, p=d.propensity) is est
    tau = d.truth["true_uplift"].to_numpy()
    u = est.predict(X)
    assert u.shape == (len(X),)
    assert np.corrcoef(u, tau)[0, 1] > 0.6, name
    assert abs(u.mean() - tau.mean()) < 0.04, name
    # persuadables (x0 > 0) get a clearly larger predicted uplift than the rest
    assert u[d.X["x0"] > 0].mean() - u[d.X["x0"] <= 0].mean() > 0.12, name
    mu0, mu1 = est.predict_outcomes(X)
    assert mu0.shape == mu1.shape == (len(X),)
    assert ((mu0 >= 0) & (mu0 <= 1) & (mu1 >= 0) & (mu1 <= 1)).all()
    assert np.corrcoef(mu1 - mu0, tau)[0, 1] > 0.5


def test_clone_keeps_params():
    est = TLearner(n_estimators=17, control="c", arms=["a"])
    assert clone(est).get_params()["n_estimators"] == 17
    assert set(default_learners(binary=False)) == set(LEARNERS) - {"urf"}


def test_multi_treatment_declared_arms():
    d = simulate(6000, seed=4, n_arms=2, effect=0.15)
    X = FeaturePrep().fit_transform(d.X)
    for name in ("t", "x", "dr", "urf", "causal_forest"):
        est = make_learner(name, n_estimators=40, arms=[1, 2])
        est.fit(X, d.treatment, d.y)
        u = est.predict(X)
        assert u.shape == (len(X), 2), name
        # arm 2 has twice arm 1's effect for persuadables
        pers = d.X["x0"].to_numpy() > 0
        assert u[pers, 1].mean() > u[pers, 0].mean() + 0.05, name
        mu0, mu1 = est.predict_outcomes(X)
        assert mu0.shape == (len(X),)
        assert mu1.shape == (len(X), 2)


def test_string_arms_like_hillstrom():
    d = simulate(3000, seed=5, n_arms=2)
    names = np.array(["No E-Mail", "Mens E-Mail", "Womens E-Mail"], dtype=object)[d.treatment]
    X = FeaturePrep().fit_transform(d.X)
    est = make_learner(
        "s", n_estimators=30, control="No E-Mail", arms=["Mens E-Mail", "Womens E-Mail"]
    )
    assert est.fit(X, names, d.y).predict(X).shape == (3000, 2)
    assert est.arm_counts_["No E-Mail"] == int((d.treatment == 0).sum())


def test_continuous_outcome():
    d = simulate(5000, seed=6, binary=False, effect=0.3)
    X = FeaturePrep().fit_transform(d.X)
    tau = d.truth["true_uplift"].to_numpy()
    for name in ("t", "r", "econml_dr"):
        est = make_learner(name, n_estimators=60).fit(X, d.treatment, d.y)
        assert est.outcome_type_ == "continuous"
        assert np.corrcoef(est.predict(X), tau)[0, 1] > 0.5, name
    with pytest.raises(ValidationError, match="binary 0/1 outcome"):
        UpliftForest(n_estimators=5).fit(X, d.treatment, d.y)


@pytest.fixture(scope="module")
def small():
    d = simulate(400, seed=8)
    return d, FeaturePrep().fit_transform(d.X)


def test_treatment_not_binary(small):
    d, X = small
    t = d.treatment.copy()
    t[:5] = 2
    with pytest.raises(ValidationError, match="treatment: not binary"):
        TLearner(n_estimators=5).fit(X, t, d.y)


def test_treatment_not_in_declared_arms(small):
    d, X = small
    t = d.treatment.astype(object).copy()
    t[:3] = "sms"
    with pytest.raises(ValidationError, match=r"not in the declared arms"):
        TLearner(n_estimators=5, arms=[1]).fit(X, t, d.y)


@pytest.mark.parametrize("value", [0, 1])
def test_single_arm(small, value):
    d, X = small
    with pytest.raises(ValidationError, match="fewer than 2 rows"):
        TLearner(n_estimators=5).fit(X, np.full(len(X), value), d.y)


def test_nan_outcome(small):
    d, X = small
    y = d.y.copy()
    y[[3, 7]] = np.nan
    with pytest.raises(ValidationError, match=r"y: 2 missing .*rows \[3, 7\]"):
        TLearner(n_estimators=5).fit(X, d.treatment, y)


def test_missing_treatment_value(small):
    d, X = small
    t = d.treatment.astype(float)
    t[0] = np.nan
    with pytest.raises(ValidationError, match="treatment: 1 missing"):
        TLearner(n_estimators=5).fit(X, t, d.y)


def test_features_checked_at_predict(small):
    d, X = small
    est = TLearner(n_estimators=5).fit(X, d.treatment, d.y)
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['x1'\]"):
        est.predict(X.drop(columns=["x1"]))
    with pytest.raises(SchemaError, match="different order"):
        est.predict(X[X.columns[::-1]])
    with pytest.raises(SchemaError, match="unexpected column"):
        est.predict(X.assign(extra=1.0))
    bad = X.copy()
    bad.iloc[2, 0] = np.nan
    with pytest.raises(DataError, match="missing or infinite"):
        est.predict(bad)
    with pytest.raises(SchemaError, match="non-numeric"):
        TLearner(n_estimators=5).fit(d.X, d.treatment, d.y)  # raw 'region' column


def test_feature_prep_stable_order_and_unseen_levels():
    df = pd.DataFrame({"b": ["x", "y", "x"], "a": [1.0, 2.0, 3.0]})
    prep = FeaturePrep().fit(df)
    assert prep.feature_names_ == ["b=x", "b=y", "a"]
    out = prep.transform(pd.DataFrame({"b": ["z", "y"], "a": [0.0, 1.0]}))
    np.testing.assert_array_equal(out.to_numpy(), [[0, 0, 0], [0, 1, 1]])
    with pytest.raises(SchemaError, match="different order"):
        prep.transform(df[["a", "b"]])
    with pytest.raises(SchemaError, match="missing values"):
        prep.transform(pd.DataFrame({"b": ["x"], "a": [np.nan]}))
