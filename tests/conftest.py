"""Shared test fixtures.

Every test session gets its own data folder and MLflow store (a real SQLite-backed
MLflow under a temporary directory), so tests never touch the user's ``data/`` or
``mlruns/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


@pytest.fixture(scope="session", autouse=True)
def _isolated_workspace(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("mktlab-ws")
    old = {
        k: os.environ.get(k)
        for k in (
            "MKTLAB_DATA_DIR",
            "MKTLAB_MLRUNS_DIR",
            "MLFLOW_TRACKING_URI",
            "MKTLAB_MODELS_DIR",
        )
    }
    os.environ["MKTLAB_DATA_DIR"] = str(root / "data")
    os.environ["MKTLAB_MLRUNS_DIR"] = str(root / "mlruns")
    os.environ["MKTLAB_MODELS_DIR"] = str(root / "models")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def workspace(_isolated_workspace: Path) -> Path:
    """The session's temporary workspace root (holds ``data/``, ``mlruns/``, ``models/``)."""
    return _isolated_workspace


@pytest.fixture(scope="session")
def small_world(workspace: Path):
    """A small synthetic world (20k users, seed 7) generated once per test session."""
    from mktlab.datasets import make_world

    return make_world(n_users=20_000, seed=7, out_dir=workspace / "data" / "raw" / "world")


@pytest.fixture(scope="session")
def spark():
    """One real SparkSession (local[2]) for the whole test session; ~10 s to start."""
    pytest.importorskip("pyspark", reason="pyspark is in the 'scale' extra")
    from mktlab.errors import ConfigError
    from mktlab.spark_session import check_java, get_spark

    try:
        check_java()
    except ConfigError as exc:  # a laptop without Java 17: `make install` installs it
        pytest.skip(f"no JVM for Spark here: {exc}")
    # small shuffles for small test data; get_spark also points the workers at this Python
    os.environ.setdefault("MKTLAB_SPARK_SHUFFLE_PARTITIONS", "2")
    os.environ.setdefault("MKTLAB_SPARK_DRIVER_MEMORY", "2g")
    session = get_spark()
    assert session.conf.get("spark.ui.enabled") == "false"
    yield session
    session.stop()
