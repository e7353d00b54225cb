"""Settings come from the environment, with defaults under the repository."""

from __future__ import annotations

import pytest

from mktlab.config import PROJ_ROOT, settings
from mktlab.errors import ConfigError


def test_defaults_live_in_the_repo(monkeypatch):
    for k in (
        "MKTLAB_DATA_DIR",
        "MKTLAB_MLRUNS_DIR",
        "MLFLOW_TRACKING_URI",
        "MKTLAB_REDIS_URL",
        "MKTLAB_MODELS_DIR",
    ):
        monkeypatch.delenv(k, raising=False)
    s = settings()
    assert s.data_dir == PROJ_ROOT / "data"
    assert s.world_dir == PROJ_ROOT / "data" / "raw" / "world"
    assert s.mlflow_tracking_uri == f"sqlite:///{PROJ_ROOT / 'mlruns' / 'mlflow.db'}"
    assert s.redis_url is None
    assert s.default_ledger_url.startswith("sqlite:///")


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("MKTLAB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MKTLAB_REDIS_URL", "redis://127.0.0.1:6379/3")
    s = settings()
    assert s.raw_dir == tmp_path / "raw"
    assert s.redis_url == "redis://127.0.0.1:6379/3"


@pytest.mark.parametrize(
    ("var", "value", "match"),
    [
        ("MLFLOW_TRACKING_URI", "./mlruns", "file store is deprecated"),
        ("MLFLOW_TRACKING_URI", "file:///tmp/mlruns", "file store is deprecated"),
        ("MKTLAB_REDIS_URL", "localhost:6379", "MKTLAB_REDIS_URL"),
    ],
)
def test_bad_settings_are_named(monkeypatch, var, value, match):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=match):
        settings()
