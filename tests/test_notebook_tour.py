"""Notebook 00 runs top to bottom on a small world and records what it saw."""

from __future__ import annotations

import pytest

from tests.notebook_utils import run_notebook


@pytest.mark.notebooks
def test_workspace_tour_runs(workspace):
    res = run_notebook("00-workspace-tour", {"N_USERS": 5_000, "SEED": 3, "REGENERATE": True})
    assert res["world_users"] == 5_000
    assert res["quadrants"] == 4
    assert 0.1 < res["persuadable_share"] < 0.45
    assert res["hillstrom_rows"] == 64_000
    assert res["hillstrom_visit_womens"] == pytest.approx(0.1514, abs=1e-4)
    assert res["data_dir"] == str(workspace / "data")  # the notebook wrote into the test workspace
