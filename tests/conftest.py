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
