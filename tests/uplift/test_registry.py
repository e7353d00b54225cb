"""The champion round-trips through a real (SQLite) MLflow registry as a pyfunc."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mktlab import tracking
from mktlab.cli import main
from mktlab.errors import SchemaError
from mktlab.uplift import QUADRANTS, load_champion, simulate, train

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained():
    data = simulate(3000, seed=11, effect=0.25)
    res = train(
        data, learners=["t", "s"], n_splits=2, n_estimators=40, n_boot=20,
        model_name="uplift_test", experiment="uplift-test", progress=False,
    )  # fmt: skip
    return data, res


def test_champion_registered_and_logged(trained):
    _, res = trained
    assert res.champion in {"t", "s"}
    assert tracking.champion_version("uplift_test") == res.model_version
    runs = tracking.runs("uplift-test")
    assert len(runs) >= 1
    row = runs.iloc[0]
    assert row["params.champion"] == res.champion
    for m in (
        "champion.qini",
        "champion.qini_lo",
        "champion.qini_hi",
        "champion.uplift_at_30",
        "champion.pehe",
    ):
        assert np.isfinite(row[f"metrics.{m}"])
    assert res.metrics["qini_lo"] <= res.metrics["qini"] <= res.metrics["qini_hi"]


def test_pyfunc_round_trip(trained):
    data, res = trained
    pf = tracking.load_pyfunc("uplift_test")
    X = data.X.head(500)
    out = pf.predict(X)
    assert list(out.columns) == ["uplift", "p0", "p1", "quadrant"]
    pd.testing.assert_frame_equal(out, res.model.predict(X))
    assert set(out["quadrant"]) <= set(QUADRANTS)
    np.testing.assert_allclose(out["uplift"], res.model.predict_uplift(X))
    inside = out["p1"].between(0.001, 0.999)
    np.testing.assert_allclose(out["uplift"][inside], (out["p1"] - out["p0"])[inside])
    # the unwrapped model is the same object graph
    assert load_champion("uplift_test").input_columns == list(data.X.columns)


def test_pyfunc_validates_input_schema(trained):
    data, _ = trained
    pf = tracking.load_pyfunc("uplift_test")
    X = data.X.head(10)
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['x2'\]"):
        pf.predict(X.drop(columns=["x2"]))
    with pytest.raises(SchemaError, match="different order"):
        pf.predict(X[list(X.columns[::-1])])
    with pytest.raises(SchemaError, match="not numeric"):
        pf.predict(X.assign(x0="high"))


@pytest.mark.slow
def test_cli_train_and_evaluate(trained, capsys):
    code = main(
        [
            "uplift",
            "train",
            "--data",
            "simulated",
            "--rows",
            "2000",
            "--learner",
            "t",
            "--folds",
            "2",
            "--n-estimators",
            "30",
        ]
    )
    assert code == 0
    first = tracking.champion_version("uplift")
    assert first is not None
    assert main(["uplift", "evaluate", "--data", "simulated", "--rows", "2000"]) == 0
    out = capsys.readouterr().out
    assert "champion: t" in out
    assert '"qini"' in out
    assert (
        main(
            [
                "uplift",
                "train",
                "--data",
                "simulated",
                "--rows",
                "2000",
                "--learner",
                "t",
                "--folds",
                "2",
                "--n-estimators",
                "30",
            ]
        )
        == 0
    )
    assert (
        int(tracking.champion_version("uplift")) == int(first) + 1
    )  # alias moved to the new version
