"""The serving fast path gives exactly the DataFrame path's numbers.

``FeaturePrep.transform_records`` against ``transform(pd.DataFrame(records))``, the
learners' ndarray path (LightGBM boosters called directly) against the scikit-learn
wrappers and causalml's own ``predict``, and ``UpliftModel.predict_records`` against
``UpliftModel.predict`` — for every learner, one and two treated arms, one and many rows,
unseen categorical levels; plus the errors for bad records.
"""

from __future__ import annotations

import pickle

import cloudpickle
import numpy as np
import pandas as pd
import pytest

import mktlab.uplift.base as learners_mod
from mktlab.errors import DataError, SchemaError, ValidationError
from mktlab.uplift import FeaturePrep, make_learner, simulate
from mktlab.uplift.learners import LEARNERS, lgbm_predictor
from mktlab.uplift.model import fit_uplift_model

LGBM_LEARNERS = ("s", "t", "x", "r", "dr")


def _records(d, n: int, seed: int) -> list[dict]:
    """Rows of ``d.X`` as plain dicts with Python values, perturbed: unseen levels, ints."""
    rng = np.random.default_rng(seed)
    X = d.X.sample(n, random_state=seed).reset_index(drop=True)
    recs = []
    for r in X.to_dict("records"):
        r = {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
        u = rng.random()
        if u < 0.2:
            r["region"] = "west"  # unseen at fit: all-zero one-hot
        elif u < 0.3:
            r["x3"] = round(r["x3"])  # an int among floats
        recs.append(r)
    return recs


def _reference(model, recs: list[dict]) -> pd.DataFrame:
    """``predict`` of the records as a DataFrame through the scikit-learn wrappers."""
    old = learners_mod.FAST_LGBM_PREDICT
    learners_mod.FAST_LGBM_PREDICT = False
    try:
        return model.predict(pd.DataFrame(recs))
    finally:
        learners_mod.FAST_LGBM_PREDICT = old


@pytest.fixture(scope="module")
def models():
    out = {}
    d1 = simulate(1500, seed=21, effect=0.2)
    d2 = simulate(1500, seed=22, n_arms=2, effect=0.2)
    dc = simulate(1500, seed=23, binary=False, effect=0.3)
    for name in sorted(LEARNERS):
        n_est = 10 if name in {"urf", "causal_forest"} else 25
        out[(name, 1)] = (d1, fit_uplift_model(d1, make_learner(name, n_estimators=n_est)))
        if name != "econml_dr":
            est = make_learner(name, n_estimators=n_est, arms=[1, 2])
            out[(name, 2)] = (d2, fit_uplift_model(d2, est))
    for name in ("t", "dr"):
        out[(name, "continuous")] = (dc, fit_uplift_model(dc, make_learner(name, n_estimators=25)))
    return out


def _cases():
    one = [(n, 1) for n in sorted(LEARNERS)]
    two = [(n, 2) for n in sorted(LEARNERS) if n != "econml_dr"]
    return [*one, *two, ("t", "continuous"), ("dr", "continuous")]


@pytest.mark.parametrize("key", _cases(), ids=lambda k: f"{k[0]}-{k[1]}")
def test_predict_records_equals_the_dataframe_path(models, key):
    d, model = models[key]
    for n, seed in ((1, 0), (1, 1), (7, 2), (200, 3)):
        recs = _records(d, n, seed)
        ref = _reference(model, recs)
        got = model.predict_records(recs)
        pd.testing.assert_frame_equal(got, ref, check_exact=True)
        cols = model.predict_records(recs, as_frame=False)
        assert list(cols) == list(ref.columns)
        for c, v in cols.items():
            assert isinstance(v, np.ndarray)
            assert v.shape == (n,)
            np.testing.assert_array_equal(v, ref[c].to_numpy(), strict=False)
        # and the fast DataFrame path agrees too
        pd.testing.assert_frame_equal(model.predict(pd.DataFrame(recs)), ref, check_exact=True)
    if key[1] == 2:
        assert {"best_arm", "uplift_1", "uplift_2"} <= set(ref.columns)


@pytest.mark.parametrize("name", LGBM_LEARNERS)
@pytest.mark.parametrize("arms", [1, 2])
def test_ndarray_components_equal_causalml_predict(models, name, arms):
    d, model = models[(name, arms)]
    est = model.learner
    X = model.prep.transform(d.X.iloc[:300])
    Xa = X.to_numpy(dtype=np.float64)
    mu0, tau = est.predict_components(X.to_numpy())  # float32 ndarray: the fast path
    # causalml's own predict and the learner's outcome model through the sklearn wrappers
    assert np.array_equal(tau, est._shape(est._predict(Xa)))
    assert np.array_equal(mu0, est._clip(np.asarray(est._mu0(Xa), dtype=np.float64)))
    assert np.array_equal(tau, est.predict(X))


def test_lgbm_predictor_regressor_classifier_and_best_iteration():
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4))
    y = X[:, 0] + rng.normal(size=600)
    reg = lgb.LGBMRegressor(n_estimators=200, verbose=-1, n_jobs=2)
    reg.fit(X[:400], y[:400], eval_set=[(X[400:], y[400:])],
            callbacks=[lgb.early_stopping(5, verbose=False)])  # fmt: skip
    assert 0 < reg.best_iteration_ < 200
    fn = lgbm_predictor(reg)
    assert np.array_equal(fn(X), reg.predict(X))
    assert np.array_equal(fn(X[:1]), reg.predict(X[:1]))
    clf = lgb.LGBMClassifier(n_estimators=30, verbose=-1).fit(X, (y > 0).astype(int))
    assert np.array_equal(lgbm_predictor(clf)(X), clf.predict_proba(X)[:, 1])
    multi = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, rng.integers(0, 3, 600))
    assert lgbm_predictor(multi) is None
    assert lgbm_predictor(lgb.LGBMRegressor()) is None  # not fitted
    from sklearn.linear_model import LinearRegression

    assert lgbm_predictor(LinearRegression().fit(X, y)) is None


def test_pickled_models_keep_working(models):
    d, model = models[("t", 1)]
    recs = _records(d, 20, 5)
    first = model.predict_records(recs)  # builds the cached plan
    assert "_records_plan" in model.prep.__dict__
    for dumps in (pickle.dumps, cloudpickle.dumps):
        back = pickle.loads(dumps(model))
        assert "_records_plan" not in back.prep.__dict__
        pd.testing.assert_frame_equal(back.predict_records(recs), first, check_exact=True)


# ----------------------------------------------------------------------- transform_records
@pytest.fixture(scope="module")
def typed_prep():
    """Categoricals of every value type: str, int, float, bool (plus two numeric columns)."""
    rng = np.random.default_rng(1)
    n = 60
    X = pd.DataFrame(
        {
            "num": rng.normal(size=n),
            "region": rng.choice(["north", "south", "east"], n),
            "tier": rng.integers(1, 4, n),
            "bucket": rng.choice([0.1, 1.0, 2.5, 1e16, 1e-05, 0.30000000000000004], n),
            "flag": rng.random(n) < 0.5,
            "count": rng.integers(0, 100, n),
        }
    )
    return FeaturePrep(categorical=["region", "tier", "bucket", "flag"]).fit(X), X


def test_transform_records_equals_transform_for_every_value_type(typed_prep):
    prep, X = typed_prep
    base = {k: (v.item() if hasattr(v, "item") else v) for k, v in X.iloc[0].items()}
    variants = [
        {"tier": 2}, {"tier": 2.0}, {"tier": "2"}, {"tier": True}, {"tier": None},
        {"bucket": 1.0}, {"bucket": 1}, {"bucket": 1e16}, {"bucket": float("nan")},
        {"bucket": 0.30000000000000004}, {"bucket": "0.1"},
        {"flag": True}, {"flag": 1}, {"flag": "True"}, {"flag": np.bool_(False)},
        {"region": "west"}, {"region": None}, {"region": 5}, {"region": np.str_("north")},
        {"num": 3}, {"num": 2**60}, {"num": "1.5"}, {"num": True}, {"num": np.float32(0.1)},
        {"count": 7.5}, {"count": 2**31},
    ]  # fmt: skip
    rows = [dict(base)]
    for v in variants:
        r = dict(base)
        r.update(v)
        rows.append(r)
    # every row on its own, and mixed batches (the column type comes from all rows)
    batches = [[r] for r in rows] + [rows[:6], rows[5:12], rows[11:20], rows]
    batches += [[dict(base, tier=t) for t in (1, 2.0, 3)], [dict(base, num=v) for v in (1, 2.5)]]
    for b in batches:
        try:
            ref = prep.transform(pd.DataFrame(b)).to_numpy()
        except SchemaError:
            with pytest.raises(SchemaError):
                prep.transform_records(b)
            continue
        got = prep.transform_records(b)
        assert got.dtype == np.float32
        assert got.shape == ref.shape
        np.testing.assert_array_equal(got, ref)
    # key order does not matter for mappings
    rev = [dict(reversed(list(r.items()))) for r in rows[:3]]
    np.testing.assert_array_equal(prep.transform_records(rev), prep.transform_records(rows[:3]))
    np.testing.assert_array_equal(
        prep.transform_records(X.to_dict("records")), prep.transform(X).to_numpy()
    )


def test_float_levels_stringify_like_pandas():
    rng = np.random.default_rng(2)
    vals = np.concatenate(
        [rng.normal(size=50), 10.0 ** rng.integers(-20, 20, 50), rng.integers(-5, 5, 20) * 1.0,
         [1e16, 1e15, 123456789012345678.0, 1e-4, 1e-5, -0.0, 0.1 + 0.2]]
    )  # fmt: skip
    X = pd.DataFrame({"b": vals})
    prep = FeaturePrep(categorical=["b"], max_levels=1000).fit(X)
    recs = [{"b": float(v)} for v in vals]
    np.testing.assert_array_equal(prep.transform_records(recs), prep.transform(X).to_numpy())


@pytest.mark.parametrize(
    ("rows", "error", "message"),
    [
        ([{"num": 1.0}], SchemaError, r"row 0: missing column\(s\) \['region'"),
        ([{"num": 1.0, "region": "a", "age": 3}], SchemaError, r"row 0: .*unexpected column\(s\) \['age'\]"),
        ([{"num": 1.0, "region": "a"}, {"num": "lots", "region": "a"}], SchemaError,
         r"column 'num' is not numeric \(.*row 1 holds 'lots'\)"),
        ([{"num": None, "region": "a"}], SchemaError, r"column 'num' has missing values \(rows \[0\]\)"),
        ([{"num": 1.0, "region": "a"}, {"num": float("nan"), "region": "a"}], SchemaError,
         r"column 'num' has missing values \(rows \[1\]\)"),
        ([["num", 1.0]], SchemaError, r"row 0 is a list, not a mapping"),
        ({"num": 1.0, "region": "a"}, SchemaError, r"expected a sequence of records"),
    ],
)  # fmt: skip
def test_transform_records_errors_name_row_and_column(rows, error, message):
    prep = FeaturePrep().fit(pd.DataFrame({"num": [1.0, 2.0], "region": ["a", "b"]}))
    with pytest.raises(error, match=message):
        prep.transform_records(rows)


def test_predict_records_errors(models):
    _, model = models[("t", 1)]
    row = {c: 0.0 for c in model.input_columns} | {"region": "north"}
    with pytest.raises(SchemaError, match="no records given"):
        model.predict_records([])
    with pytest.raises(DataError, match=r"infinite values in column\(s\) \['x1'\] \(rows \[1\]\)"):
        model.predict_records([row, row | {"x1": float("inf")}])
    with pytest.raises(SchemaError, match=r"row 1: missing column\(s\) \['x2'\]"):
        model.predict_records([row, {k: v for k, v in row.items() if k != "x2"}])
    with pytest.raises(ValidationError, match="not fitted"):
        FeaturePrep().transform_records([row])
    # the same errors as the DataFrame path where that one names them too
    with pytest.raises(DataError, match=r"infinite values in column\(s\) \['x1'\] \(rows \[1\]\)"):
        model.predict(pd.DataFrame([row, row | {"x1": float("inf")}]))
