"""notebooks/03-uplift runs top to bottom with small parameters."""

from __future__ import annotations

import pytest

from tests.notebook_utils import run_notebook


@pytest.mark.notebooks
@pytest.mark.slow
def test_uplift_notebook_small():
    res = run_notebook("03-uplift", {"SMALL": True, "N_BOOT": 30})
    assert res["hillstrom_rows"] == 6000
    assert res["champion"] in {"s", "t", "x", "r", "dr", "urf", "causal_forest", "econml_dr"}
    # 1,800 test rows are too few for a sign; the full run is checked by the benchmark
    assert -1 < res["hillstrom_qini_mean"] < 1
    assert (
        res["hillstrom_uplift_at_30_ci_lo"]
        <= res["hillstrom_uplift_at_30_mean"]
        <= res["hillstrom_uplift_at_30_ci_hi"]
    )
    assert abs(sum(res["quadrant_shares"].values()) - 1) < 1e-9
    assert res["world_pehe"] > 0
    assert res["world_true_qini"] > 0
    assert res["registered_version"] is not None
