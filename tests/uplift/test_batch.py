"""uplift@champion scores a Spark DataFrame (spark_udf) and a DuckDB table with the pyfunc's numbers.

A small real model is registered in the session's temporary SQLite MLflow store.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from mktlab import tracking
from mktlab.errors import NotFoundError, SchemaError, ValidationError
from mktlab.uplift import make_learner, simulate
from mktlab.uplift.batch import score_duckdb, score_spark
from mktlab.uplift.model import fit_uplift_model, log_model
from mktlab.uplift.train import MODEL_NAME

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def champion():
    data = simulate(1500, seed=5, effect=0.2)
    model = fit_uplift_model(data, make_learner("t", n_estimators=25))
    with tracking.start_run("uplift-batch-test", run_name="t"):
        info = log_model(model)
    tracking.register_model(info.model_uri, MODEL_NAME)  # uplift@champion
    X = data.X.head(400).reset_index(drop=True)
    return X, tracking.load_pyfunc(MODEL_NAME).predict(X)


def _check(out: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert list(out.columns[-4:]) == ["uplift", "p0", "p1", "quadrant"]
    for c in ("uplift", "p0", "p1"):
        np.testing.assert_allclose(out[c].to_numpy(float), ref[c].to_numpy(float), rtol=1e-12)
    assert out["quadrant"].tolist() == ref["quadrant"].tolist()


@pytest.mark.slow
def test_spark_udf_scores_equal_pyfunc(spark, champion):
    X, ref = champion
    # extra columns pass through; features may come in any order
    sdf = spark.createDataFrame(X[X.columns[::-1]].assign(uid=np.arange(len(X))))
    out = score_spark(sdf).toPandas().sort_values("uid").reset_index(drop=True)
    assert "uid" in out.columns
    _check(out, ref)
    with pytest.raises(SchemaError, match=r"missing column\(s\) \['x1'\]"):
        score_spark(sdf.drop("x1"))
    with pytest.raises(NotFoundError, match="no registered model"):
        score_spark(sdf, model_name="nope")


def test_duckdb_path_scores_equal_pyfunc(champion):
    X, ref = champion
    con = duckdb.connect()
    con.register("feats", X.assign(uid=np.arange(len(X))))
    con.execute("CREATE TABLE users AS SELECT * FROM feats")
    n = score_duckdb(con, "SELECT * FROM users ORDER BY uid", keep=("uid",), batch_rows=97)
    assert n == len(X)
    out = con.sql("SELECT * FROM uplift_scores ORDER BY uid").df()
    assert list(out.columns) == ["uid", "uplift", "p0", "p1", "quadrant"]
    _check(out, ref)
    assert score_duckdb(con, "SELECT * FROM users WHERE uid < 0", table="none_scored") == 0
    assert con.execute("SELECT count(*) FROM none_scored").fetchall() == [(0,)]
    assert "quadrant" in con.sql("SELECT * FROM none_scored").columns
    with pytest.raises(ValidationError, match="plain identifier"):
        score_duckdb(con, "SELECT * FROM users", table="x; DROP TABLE users")
    with pytest.raises(SchemaError, match="keep column"):
        score_duckdb(con, "SELECT * FROM users", keep=("nope",))
