from __future__ import annotations

import pytest

from tests.notebook_utils import run_notebook


@pytest.mark.notebooks
@pytest.mark.slow
def test_live_journeys_notebook():
    r = run_notebook("09-live-journeys", {"SMALL": True})
    assert r["n_events"] > 1000 and r["dead_letters"] == 0
    assert r["live_equals_sim"] is True
    assert r["n_coupons"] == r["ledger_coupons"] == r["sim_coupons"] > 0
    assert r["n_deliveries"] == r["distinct_delivery_keys"] > 0
    assert 0.12 < r["holdout_share"] < 0.28  # a 20% holdout by salted hash
    assert r["ope_finite"]
    assert abs(r["lift"]) < 0.2
