from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings

from mktlab.attribution import MarkovAttribution, Paths, markov_attribution, simulate_paths
from mktlab.errors import DataError, ValidationError

from .conftest import path_sets

ISSUE_PATHS = pd.DataFrame(
    {"path": ["A", "M", "A > M", "A"], "conversions": [2, 1, 1, 0], "nulls": [0, 0, 0, 1]}
)


def test_issue_case_removal_effects_and_attribution():
    m = MarkovAttribution().fit(ISSUE_PATHS)
    assert m.conversion_probability_ == pytest.approx(0.8, abs=1e-12)
    assert m.removal_effects_.to_dict() == pytest.approx({"A": 0.75, "M": 0.5}, abs=1e-12)
    assert m.attribution_["conversions"].to_dict() == pytest.approx({"A": 2.4, "M": 1.6}, abs=1e-12)
    assert m.attribution_["value"].sum() == pytest.approx(4.0)


def test_issue_case_transition_matrix():
    tm = MarkovAttribution().fit(ISSUE_PATHS).transition_matrix_
    assert list(tm.index) == ["start", "A", "M", "conversion", "null"]
    np.testing.assert_allclose(tm.sum(axis=1), 1.0)
    assert tm.loc["start", "A"] == pytest.approx(0.8)
    assert tm.loc["A", "M"] == pytest.approx(0.25)
    assert tm.loc["A", "conversion"] == pytest.approx(0.5)
    assert tm.loc["A", "null"] == pytest.approx(0.25)
    assert tm.loc["M", "conversion"] == pytest.approx(1.0)


def test_separate_journeys_equal_aggregated_paths():
    p, _ = simulate_paths(3000, 5, random_state=4)
    agg = Paths.from_frame(p.to_frame())
    a = MarkovAttribution().fit(p).attribution_
    b = MarkovAttribution().fit(agg).attribution_.loc[a.index]
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-9)


def test_second_order_hand_case():
    # order 2: states start, a, b, a>b, b>a ... here a>b converts, b>a never does
    p = Paths.from_lists([["a", "b"], ["b", "a"]], [1, 0], nulls=[0, 1])
    m = MarkovAttribution(order=2).fit(p)
    assert set(m.states_) == {"start", "a", "b", "a > b", "b > a"}
    # removing either channel kills the only converting walk
    assert m.removal_effects_.to_dict() == pytest.approx({"a": 1.0, "b": 1.0})
    assert m.attribution_["conversions"].to_dict() == pytest.approx({"a": 0.5, "b": 0.5})


def test_higher_order_differs_and_sums():
    p, _ = simulate_paths(4000, 6, random_state=1)
    for order in (1, 2, 3):
        m = MarkovAttribution(order=order).fit(p)
        assert m.attribution_["conversions"].sum() == pytest.approx(p.total_conversions)
        assert (m.removal_effects_ >= 0).all()
        assert (m.removal_effects_ <= 1 + 1e-12).all()


def test_large_state_space_uses_sparse_solver():
    p, _ = simulate_paths(20_000, 12, random_state=2)
    m = MarkovAttribution(order=3).fit(p)
    assert len(m.states_) > 400
    assert m.attribution_["conversions"].sum() == pytest.approx(p.total_conversions)
    sums = m.transitions_.groupby("from")["probability"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0)


@settings(max_examples=60, deadline=None)
@given(path_sets())
def test_credits_sum_and_untouched_channel_gets_zero(p):
    for order in (1, 2):
        att = MarkovAttribution(order=order).fit(p).attribution_
        assert att["conversions"].sum() == pytest.approx(p.total_conversions)
        assert att["value"].sum() == pytest.approx(p.total_value)
        assert att.loc["e"].tolist() == [0.0, 0.0, 0.0]
        assert np.isfinite(att.to_numpy()).all()


def test_no_conversions_is_a_clear_error():
    with pytest.raises(DataError, match="no conversions"):
        markov_attribution(
            pd.DataFrame({"path": ["a", "b"], "conversions": [0, 0], "nulls": [3, 1]})
        )


@pytest.mark.parametrize("order", [0, -1, 1.5])
def test_bad_order(order):
    with pytest.raises(ValidationError, match="order"):
        MarkovAttribution(order=order).fit(ISSUE_PATHS)


def test_zero_weight_paths_are_harmless():
    p = Paths.from_lists([["a"], ["b", "a"]], [1, 0], nulls=[0, 0])
    att = MarkovAttribution().fit(p).attribution_
    assert att["conversions"].to_dict() == pytest.approx({"a": 1.0, "b": 0.0})


def _reference_removal_effects(p: Paths) -> dict[str, float]:
    """Plain-Python first-order chain solved by value iteration (independent of mktlab)."""
    from collections import Counter, defaultdict

    counts: dict[str, Counter] = defaultdict(Counter)
    for j in range(p.n_paths):
        seq = [p.channels[t] for t in p.touches[p.offsets[j] : p.offsets[j + 1]]]
        w, conv, nul = p.conversions[j] + p.nulls[j], p.conversions[j], p.nulls[j]
        for a, b in zip(["start", *seq], seq):
            counts[a][b] += w
        counts[seq[-1]]["conversion"] += conv
        counts[seq[-1]]["null"] += nul

    def p_conv(removed: str | None) -> float:
        x = defaultdict(float)
        for _ in range(2000):
            new = defaultdict(float)
            for s, row in counts.items():
                tot = sum(row.values())
                if s == removed or tot == 0:
                    continue
                new[s] = sum(
                    n
                    / tot
                    * (1.0 if t == "conversion" else 0.0 if t in ("null", removed) else x[t])
                    for t, n in row.items()
                )
            x = new
        return x["start"]

    base = p_conv(None)
    return {c: 1 - p_conv(c) / base for c in p.channels}


@settings(max_examples=25, deadline=None)
@given(path_sets(max_paths=6, max_len=3))
def test_linear_solve_matches_value_iteration(p):
    got = MarkovAttribution().fit(p).removal_effects_.to_dict()
    assert got == pytest.approx(_reference_removal_effects(p), abs=1e-6)
