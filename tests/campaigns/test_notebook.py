from __future__ import annotations

import pytest

from tests.notebook_utils import run_notebook


@pytest.mark.notebooks
@pytest.mark.slow
def test_campaign_lifecycle_notebook():
    r = run_notebook("10-campaign-lifecycle", {"SMALL": True})
    assert r["ramp_keeps_users"] is True
    assert r["holdout_fixed"] is True
    assert r["issued"] > 0
    assert r["treated_users"] > 0  # the live workers fed the watcher's counters
    assert r["holdout_users"] > 0
    assert r["gated"] > 0  # outside the 50% gray share the workers acted for nobody
    assert r["breaker"] == "reconciliation"
    assert r["paused"] is True
    assert r["lift_lo"] < 0.04 < r["lift_hi"]
    assert r["html"] is True
