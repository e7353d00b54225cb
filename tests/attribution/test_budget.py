from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mktlab.attribution import reallocate_budget
from mktlab.errors import ValidationError

VALUE = pd.Series({"search": 300.0, "email": 100.0, "direct": 50.0})
SPEND = {"search": 100.0, "email": 100.0}


def test_roi_and_proportional_split_at_zero_elasticity():
    out = reallocate_budget(VALUE, SPEND, elasticity=0.0)
    assert out.loc["search", "roi"] == 3.0
    assert out.loc["email", "roi"] == 1.0
    assert out.loc["direct", "roi"] == 0.0  # no spend: no ROI, not NaN
    assert out.loc[["search", "email", "direct"], "proposed_spend"].tolist() == [150.0, 50.0, 0.0]
    assert "spend^0" in out.attrs["assumption"]


def test_square_root_response_closed_form():
    out = reallocate_budget(VALUE, SPEND, total_budget=400.0, elasticity=0.5)
    # a = value / sqrt(spend) = 30, 10; spend ∝ a^2 -> 9:1 of 400
    assert out.loc["search", "proposed_spend"] == pytest.approx(360.0)
    assert out.loc["email", "proposed_spend"] == pytest.approx(40.0)
    assert out["proposed_spend"].sum() == pytest.approx(400.0)
    # the optimum beats the current split under the same assumption
    current = 30 * np.sqrt(200) + 10 * np.sqrt(200)
    assert out.loc[["search", "email"], "expected_value"].sum() > current
    assert np.isfinite(out.to_numpy()).all()


def test_channel_with_spend_but_no_credit_is_cut():
    out = reallocate_budget({"a": 10.0, "b": 0.0}, {"a": 5.0, "b": 5.0})
    assert out["proposed_spend"].tolist() == [10.0, 0.0]


@pytest.mark.parametrize(
    ("value", "spend", "kwargs", "match"),
    [
        (VALUE, {"search": -1.0}, {}, "spend"),
        ({"a": np.nan}, SPEND, {}, "attributed_value"),
        (VALUE, {"search": 0.0}, {}, "no channel has spend"),
        (VALUE, SPEND, {"elasticity": 1.0}, "elasticity"),
        (VALUE, SPEND, {"total_budget": -5}, "total_budget"),
    ],
)
def test_bad_input(value, spend, kwargs, match):
    with pytest.raises(ValidationError, match=match):
        reallocate_budget(value, spend, **kwargs)
