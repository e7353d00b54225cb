from __future__ import annotations

import pytest

from tests.notebook_utils import run_notebook


@pytest.mark.notebooks
@pytest.mark.slow
def test_attribution_notebook_runs_small():
    res = run_notebook("06-attribution", {"SMALL": True, "N_USERS": 8000, "N_PERMUTATIONS": 60})
    assert res["n_paths"] > 0
    assert res["markov_total"] == pytest.approx(res["total_conversions"])
    assert res["shapley_total"] == pytest.approx(res["total_conversions"])
    assert set(res["spearman"]) >= {"markov", "shapley", "linear", "first_touch"}
    assert all(-1 <= v <= 1 for v in res["spearman"].values())
    assert res["budget_total"] == pytest.approx(res["spend_total"])
    assert res["logged"]
