from __future__ import annotations

import pytest

from tests.notebook_utils import run_notebook


@pytest.mark.notebooks
@pytest.mark.slow
def test_strategy_sandbox_notebook():
    r = run_notebook("05-strategy-sandbox", {"SMALL": True})
    assert r["batch_online_agree"] == 1.0
    assert r["n_firings"] > 0
    assert 0 < r["n_allowed"] <= r["n_firings"]
    # six strategies: intervals cover the truth for (nearly) all of them
    assert r["dr_coverage"] >= 5 / 6
    assert r["ips_coverage"] >= 5 / 6
    assert r["dr_mean_width"] < r["ips_mean_width"]
    assert r["budget_treated"] > 0
    # coverage over repeated small worlds (10 in the small run)
    assert r["repeat_ips_coverage"] >= 0.8
    assert r["repeat_dr_coverage"] >= 0.8
    assert r["repeat_dr_width"] < r["repeat_ips_width"]
