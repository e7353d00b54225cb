"""mktlab.tracking against a real MLflow store (SQLite in the session's temp workspace)."""

from __future__ import annotations

import pandas as pd
import pytest

from mktlab import tracking
from mktlab.errors import NotFoundError, ValidationError


def _doubler():
    import mlflow.pyfunc  # tests may import mlflow; the package may not outside tracking

    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input[["x"]] * 2

    return Doubler()


def test_run_params_metrics_and_artifacts_land_in_the_store(workspace):
    with tracking.start_run(
        "test-tracking", run_name="r1", params={"alpha": 0.5}, tags={"who": "test"}
    ) as run:
        tracking.log_metrics({"auc": 0.75})
        tracking.log_dict({"a": 1}, "conf.json")
    runs = tracking.runs("test-tracking")
    row = runs[runs.run_id == run.info.run_id].iloc[0]
    assert row["params.alpha"] == "0.5"
    assert row["metrics.auc"] == pytest.approx(0.75)
    assert row["tags.who"] == "test"
    assert row["tags.mktlab.version"]
    assert str(workspace / "mlruns" / "artifacts") in row["artifact_uri"].replace("file://", "")


def test_non_finite_metric_refused():
    with (
        tracking.start_run("test-tracking"),
        pytest.raises(ValidationError, match="'loss' is not finite"),
    ):
        tracking.log_metrics({"loss": float("nan")})


def test_register_champion_and_load_back():
    with tracking.start_run("test-tracking", run_name="model"):
        info = tracking.log_pyfunc_model(_doubler(), input_example=pd.DataFrame({"x": [1.0]}))
    v1 = tracking.register_model(info.model_uri, "doubler")
    assert tracking.champion_version("doubler") == v1
    model = tracking.load_pyfunc("doubler")
    out = model.predict(pd.DataFrame({"x": [1.0, 2.5]}))
    assert list(out["x"]) == [2.0, 5.0]
    with tracking.start_run("test-tracking", run_name="model2"):
        info2 = tracking.log_pyfunc_model(_doubler())
    v2 = tracking.register_model(info2.model_uri, "doubler", alias=None)
    assert tracking.champion_version("doubler") == v1  # alias moves only when asked
    tracking.set_alias("doubler", v2)
    assert tracking.champion_version("doubler") == v2


def test_missing_model_is_a_clear_error():
    with pytest.raises(NotFoundError, match="no registered model 'ghost'"):
        tracking.load_pyfunc("ghost")
    assert tracking.champion_version("ghost") is None
