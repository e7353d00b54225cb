"""notebooks/01-identity.ipynb runs top to bottom on a small world and scores well."""

from __future__ import annotations

import pytest

from tests.notebook_utils import run_notebook


@pytest.mark.notebooks
def test_identity_notebook(small_world):
    res = run_notebook("01-identity", {"SMALL": True, "N_USERS": 20_000, "SEED": 7})
    assert res["f1"] >= 0.99
    assert res["violations"] == 0
    assert res["hubs"] >= 1
    assert res["refused"] > 0
    assert res["f1_frequency"] > 0.95
    assert res["events_unresolved_share"] < 0.1
