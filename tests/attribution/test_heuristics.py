from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings

from mktlab.attribution import HEURISTICS, Paths, heuristic_attribution, touch_shares
from mktlab.errors import DataError, ValidationError

from .conftest import path_sets


@pytest.fixture
def paths():
    # one converting journey a > b > c > a (2 conversions, value 10) and a lone c (1 conv)
    return Paths.from_lists([["a", "b", "c", "a"], ["c"]], [2, 1], [10, 4], [0, 3])


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("first_touch", {"a": 2, "b": 0, "c": 1}),
        ("last_touch", {"a": 2, "b": 0, "c": 1}),
        ("linear", {"a": 1.0, "b": 0.5, "c": 1.5}),
        # U-shape 40/20/40: the two middle touches get 10% each
        ("position_based", {"a": 1.6, "b": 0.2, "c": 1.2}),
    ],
)
def test_hand_checked_heuristics(paths, method, expected):
    got = heuristic_attribution(paths, method)["conversions"].to_dict()
    assert got == pytest.approx(expected)


def test_time_decay_by_position_halves_each_step(paths):
    # ages from the end 3, 2, 1, 0 touches; half-life 1 touch -> weights 1/8, 1/4, 1/2, 1
    share = touch_shares(paths, "time_decay", half_life=1.0)
    np.testing.assert_allclose(share[:4], np.array([1, 2, 4, 8]) / 15)
    assert share[4] == 1.0


def test_time_decay_uses_days_when_touches_have_timestamps():
    day = pd.Timestamp("2026-03-01")
    t = pd.DataFrame(
        {"uid": [1, 1], "ts": [day, day + pd.Timedelta(days=7)], "channel": ["a", "b"]}
    )
    c = pd.DataFrame({"uid": [1], "ts": [day + pd.Timedelta(days=7)]})
    p = Paths.from_touches(t, c)
    got = heuristic_attribution(p, "time_decay", half_life=7.0)["conversions"]
    assert got.to_dict() == pytest.approx({"a": 1 / 3, "b": 2 / 3})


def test_two_touch_position_based_uses_weight_ratio():
    p = Paths.from_lists([["a", "b"]], [1])
    got = heuristic_attribution(p, "position_based", first_weight=0.6, last_weight=0.2)
    assert got["conversions"].to_dict() == pytest.approx({"a": 0.75, "b": 0.25})


@settings(max_examples=60, deadline=None)
@given(path_sets())
def test_every_heuristic_sums_to_totals_and_ignores_untouched(p):
    for m in HEURISTICS:
        out = heuristic_attribution(p, m)
        assert out["conversions"].sum() == pytest.approx(p.total_conversions)
        assert out["value"].sum() == pytest.approx(p.total_value)
        assert out.loc["e"].tolist() == [0.0, 0.0]
        assert np.isfinite(out.to_numpy()).all()


def test_errors():
    p = Paths.from_lists([["a"]], [0], nulls=[1])
    with pytest.raises(DataError, match="no conversions"):
        heuristic_attribution(p, "linear")
    q = Paths.from_lists([["a"]], [1])
    with pytest.raises(ValidationError, match="method"):
        heuristic_attribution(q, "u_shape")
    with pytest.raises(ValidationError, match="half_life"):
        heuristic_attribution(q, "time_decay", half_life=0)
    with pytest.raises(ValidationError, match="first_weight"):
        heuristic_attribution(q, "position_based", first_weight=0.7, last_weight=0.7)
