"""`mktlab models`: list what is served, promote a registry version, import champions."""

from __future__ import annotations

import pytest

from mktlab import tracking
from mktlab.cli import main
from mktlab.service import models as store


def test_models_list_shows_champions_and_store(served_models, capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("uplift"))
    assert line.split()[:5] == [
        "uplift",
        "yes",
        served_models["uplift_version"],
        served_models["uplift_version"],
        "yes",
    ]
    assert "rl_policy" in out
    assert "model store:" in out


def test_promote_moves_the_alias_and_reimports(served_models, capsys):
    v1 = served_models["uplift_version"]
    src = f"models:/uplift/{v1}"
    v2 = tracking.register_model(src, "uplift", alias=None)
    try:
        assert main(["models", "promote", "uplift", v2]) == 0
        assert tracking.champion_version("uplift") == v2
        assert store.latest("uplift").info.labels["mlflow_version"] == v2
        assert f"version {v2}" in capsys.readouterr().out
        table = {r["name"]: r for r in store.model_table()}
        assert table["uplift"]["in_sync"]
        assert table["uplift"]["stored_version"] == v2
    finally:
        store.promote("uplift", v1)  # later modules serve the original champion
    assert store.latest("uplift").info.labels["mlflow_version"] == v1


def test_promote_unknown_version_or_model_is_an_error(served_models, capsys):
    assert main(["models", "promote", "uplift", "999"]) == 2
    assert "has no version '999'" in capsys.readouterr().err
    assert main(["models", "promote", "churn", "1"]) == 2
    assert "serves" in capsys.readouterr().err


def test_import_skips_unregistered_optional_models(served_models, capsys):
    assert main(["models", "import"]) == 0
    out = capsys.readouterr().out
    assert "rl_policy: not registered" in out
    with pytest.raises(KeyError):
        store.import_champion("rl_policy")
