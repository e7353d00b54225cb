from __future__ import annotations

import pytest

from tests.notebook_utils import run_notebook


@pytest.mark.notebooks
def test_flash_sale_notebook_runs_and_guarantees_hold():
    results = run_notebook("04-coupon-flash-sale", {"SMALL": True})
    assert results["guarantees_hold"] is True
    for arrival in ("steady", "burst", "herd"):
        assert results[f"{arrival}_issued"] == results["stock"]
        assert results[f"{arrival}_duplicates"] == 0
