"""Notebook 08 runs top to bottom on small settings and records its numbers."""

from __future__ import annotations

import pytest

from tests.notebook_utils import run_notebook


@pytest.mark.notebooks
@pytest.mark.slow
def test_ab_testing_notebook_runs():
    res = run_notebook("08-ab-testing", {"SMALL": True, "SEED": 8, "LOG_TO_MLFLOW": True})
    assert not res["srm_mismatch"]
    assert res["srm_p_value"] > 0.5
    assert res["visit_mens_abs_lift"] == pytest.approx(0.0766, abs=1e-4)
    assert res["conversion_mens_rel_lift"] == pytest.approx(1.188, abs=1e-3)
    for m in ("visit", "conversion", "spend"):
        for a in ("mens", "womens"):
            assert res[f"{m}_{a}_p_adjusted"] >= res[f"{m}_{a}_p_value"]
            assert res[f"{m}_{a}_p_adjusted"] < 0.05
    assert 0 <= res["cuped_variance_reduction"] < 0.05
    assert res["duration_days"] % 7 == 0
    assert res["duration_days"] >= 7
    assert res["sample_size_per_arm"] > 50_000
    assert res["p_uid_mod"] < 1e-100
    assert res["p_salted"] > 1e-3
    assert res["naive_fpr_28"] > 0.15
    assert res["sequential_fpr_28"] <= 0.07
    assert res["guardrail_stopped"]
    assert 1 <= res["guardrail_stop_day"] <= 14
