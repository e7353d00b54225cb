"""Batch scoring where the data lives: ``uplift@champion`` over Spark and DuckDB tables.

Three ways to run the same registered pyfunc, with the same numbers:

- in process: ``tracking.load_pyfunc(name).predict(pandas_frame)``;
- on Spark: :func:`score_spark` adds the model's output columns to a Spark DataFrame through
  ``mlflow.pyfunc.spark_udf`` (executors load the model once per Python worker);
- embedded: :func:`score_duckdb` streams a DuckDB query through the pyfunc in Arrow batches
  and writes the scores into a DuckDB table, so nothing but one batch is in pandas at once.

Only :mod:`mktlab.tracking` talks to MLflow; this module asks it for the model.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from mktlab import tracking
from mktlab.errors import SchemaError, ValidationError
from mktlab.uplift.model import OUTPUT_COLUMNS
from mktlab.uplift.train import MODEL_NAME

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _spark_type(dtype) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "long"
    if pd.api.types.is_float_dtype(dtype):
        return "double"
    return "string"


def _features(model, columns: list[str]) -> list[str]:
    meta = (model.metadata.metadata or {}) if model.metadata is not None else {}
    feats = list(meta.get("input_columns") or [])
    if not feats:
        raise SchemaError("the model records no input_columns in its metadata; log it with "
                          "mktlab.uplift.log_model")  # fmt: skip
    missing = [c for c in feats if c not in columns]
    if missing:
        raise SchemaError(f"input: missing column(s) {missing} the model needs ({feats})")
    return feats


def score_spark(
    df: Any,
    *,
    model_name: str = MODEL_NAME,
    alias: str = tracking.CHAMPION,
    prefix: str = "",
    spark: Any = None,
) -> Any:
    """``df`` with the model's outputs (``uplift, p0, p1, quadrant``) added as columns.

    Parameters
    ----------
    df : pyspark DataFrame
        Holds the model's input columns (any order; extra columns are kept and passed by).
    model_name, alias : str
        The registered model, ``uplift@champion`` by default.
    prefix : str
        Prepended to the output column names (e.g. ``"score_"``).
    spark : SparkSession, optional
        Defaults to ``df``'s session.

    Returns
    -------
    pyspark DataFrame
        Lazy: scoring runs when the frame is written or collected.
    """
    from pyspark.sql import functions as F

    from mktlab.spark_session import get_spark, spark_job

    if not hasattr(df, "sparkSession"):
        raise ValidationError(f"score_spark: df must be a Spark DataFrame, got {type(df).__name__}")
    spark = get_spark(spark or df.sparkSession)
    pf = tracking.load_pyfunc(model_name, alias)
    feats = _features(pf, df.columns)
    with spark_job(f"score_spark({model_name}@{alias})"):
        probe = pf.predict(df.select(*feats).limit(8).toPandas())  # the output schema
        result_type = ", ".join(f"`{c}` {_spark_type(probe[c].dtype)}" for c in probe.columns)
        udf = tracking.spark_udf(spark, model_name, alias, result_type=result_type)
        tmp = "__mktlab_score"
        out = df.withColumn(tmp, udf(F.struct(*[F.col(c) for c in feats])))
        return out.select(
            *df.columns, *[F.col(f"{tmp}.{c}").alias(prefix + c) for c in probe.columns]
        )


def score_duckdb(
    con: Any,
    query: str,
    *,
    table: str = "uplift_scores",
    model_name: str = MODEL_NAME,
    alias: str = tracking.CHAMPION,
    keep: tuple[str, ...] = (),
    batch_rows: int = 100_000,
) -> int:
    """Score the rows of a DuckDB ``query`` and write them to ``table`` (replaced).

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
    query : str
        A SELECT returning the model's input columns (and any ``keep`` columns).
    table : str
        Destination table: the ``keep`` columns, then the model's outputs.
    keep : tuple of str
        Columns of ``query`` copied next to the scores (e.g. ``("uid",)``).
    batch_rows : int
        Rows per Arrow batch sent through the model.

    Returns
    -------
    int
        Rows written.
    """
    import pyarrow as pa

    if not _IDENT.match(table):
        raise ValidationError(f"score_duckdb: table must be a plain identifier, got {table!r}")
    if batch_rows < 1:
        raise ValidationError(f"score_duckdb: batch_rows must be >= 1, got {batch_rows}")
    pf = tracking.load_pyfunc(model_name, alias)
    rel = con.sql(query)
    feats = _features(pf, list(rel.columns))
    bad = [c for c in keep if c not in rel.columns]
    if bad:
        raise SchemaError(f"score_duckdb: keep column(s) {bad} are not in the query's columns")
    reader = rel.fetch_record_batch(batch_rows)
    w = con.cursor()  # the reader holds con's open result; write through a second cursor
    n, created = 0, False
    for batch in reader:
        frame = batch.to_pandas()
        scores = pf.predict(frame[feats])
        out = pd.concat([frame[list(keep)].reset_index(drop=True),
                         scores.reset_index(drop=True)], axis=1)  # fmt: skip
        arrow = pa.Table.from_pandas(out, preserve_index=False)
        w.register("__mktlab_batch", arrow)
        if not created:
            w.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM __mktlab_batch")
            created = True
        else:
            w.execute(f"INSERT INTO {table} SELECT * FROM __mktlab_batch")
        w.unregister("__mktlab_batch")
        n += len(out)
    if not created:  # no rows (the learners cannot predict zero rows): the declared columns
        meta = (pf.metadata.metadata or {}) if pf.metadata is not None else {}
        outs = list(meta.get("output_columns") or OUTPUT_COLUMNS)
        types = rel.types
        cols = [f'"{c}" {types[list(rel.columns).index(c)]}' for c in keep]
        cols += [f'"{c}" {"VARCHAR" if c == "quadrant" else "DOUBLE"}' for c in outs]
        w.execute(f"CREATE OR REPLACE TABLE {table} ({', '.join(cols)})")
    return int(n)


__all__ = ["score_duckdb", "score_spark"]
