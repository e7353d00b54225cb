from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mktlab import tracking
from mktlab.attribution import AttributionModel, attribute, log_attribution, simulate_paths
from mktlab.errors import ValidationError


@pytest.fixture(scope="module")
def result():
    p, _ = simulate_paths(3000, 5, random_state=11)
    return attribute(p, "all")


def test_shapley_model_reproduces_shapley_totals(result):
    model = AttributionModel.from_result(result, method="shapley")
    journeys = result.paths.to_frame(aggregate=False)
    credits = model.credit(journeys)
    np.testing.assert_allclose(credits.sum(axis=1), journeys["conversions"])
    totals = credits.sum(axis=0)[result.conversions.index]
    np.testing.assert_allclose(totals, result.conversions["shapley"], atol=1e-9)


def test_markov_model_splits_by_removal_effect(result):
    model = AttributionModel.from_result(result, method="markov")
    re = result.markov.removal_effects_
    out = model.credit(
        pd.DataFrame({"path": ["ch00 > ch01 > ch00", "new_channel"], "conversions": [2, 1]})
    )
    expect = 2 * re["ch00"] / (re["ch00"] + re["ch01"])
    assert out.loc[0, "ch00"] == pytest.approx(expect)
    # unseen channel: no weight, so the journey is split equally instead of dropped
    assert out.loc[1, "new_channel"] == 1.0
    np.testing.assert_allclose(out.sum(axis=1), [2, 1])


def test_model_input_forms_and_errors(result):
    model = AttributionModel.from_result(result, method="shapley")
    a = model(["ch00 > ch02"])
    b = model({"path": [["ch00", "ch02"]]})
    assert a.loc[0, "ch00"] == b.loc[0, "ch00"] == 0.5
    with pytest.raises(ValidationError, match="path"):
        model(pd.DataFrame({"x": [1]}))
    with pytest.raises(ValidationError, match="no rows"):
        model(pd.DataFrame({"path": []}))
    with pytest.raises(ValidationError, match="method"):
        AttributionModel(method="linear", weights={})


@pytest.mark.integration
def test_log_register_and_serve_through_mlflow(result):
    info = log_attribution(
        result,
        method="markov",
        register=True,
        run_name="test",
        truth=pd.Series({"ch00": 3.0, "ch01": 1.0}),
    )
    assert info["version"] is not None
    assert tracking.champion_version("attribution") == info["version"]
    runs = tracking.runs("attribution")
    assert info["run_id"] in set(runs["run_id"])
    row = runs.set_index("run_id").loc[info["run_id"]]
    assert row["metrics.total_conversions"] == pytest.approx(result.paths.total_conversions)
    served = tracking.load_pyfunc("attribution")
    out = served.predict(pd.DataFrame({"path": ["ch00 > ch03", "ch04"], "conversions": [1, 3]}))
    np.testing.assert_allclose(np.asarray(out.sum(axis=1), dtype=float), [1, 3])
    assert out.loc[1, "ch04"] == 3.0
