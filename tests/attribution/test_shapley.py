from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mktlab.attribution import (
    Paths,
    ShapleyAttribution,
    coalition_value,
    exact_shapley,
    model_coalition_value,
    ordered_shapley,
    sampled_shapley,
    shapley_attribution,
    simulate_paths,
)
from mktlab.errors import DataError, ValidationError

from .conftest import path_sets

ISSUE_PATHS = pd.DataFrame({"path": ["a", "a > b"], "conversions": [4, 6]})


def test_issue_case():
    att = shapley_attribution(ISSUE_PATHS)
    assert att["conversions"].to_dict() == {"a": 7.0, "b": 3.0}


def test_issue_case_by_enumeration_and_sampling():
    v = coalition_value(ISSUE_PATHS)
    assert exact_shapley(v, v.channels).to_dict() == pytest.approx({"a": 7.0, "b": 3.0})
    est = sampled_shapley(v, v.channels, n_permutations=10, random_state=0)
    assert est["shapley"].to_dict() == pytest.approx({"a": 7.0, "b": 3.0})


def test_coalition_value_counts_subsets():
    v = coalition_value(ISSUE_PATHS)
    masks = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=bool)
    assert v(masks).tolist() == [0.0, 4.0, 0.0, 10.0]


def test_repeats_and_order_do_not_change_simplified_shapley():
    p = Paths.from_lists([["a", "b", "a", "a"], ["b", "a"], ["c"]], [3, 3, 1])
    att = shapley_attribution(p)["conversions"]
    assert att.to_dict() == pytest.approx({"a": 3.0, "b": 3.0, "c": 1.0})


def test_ordered_shapley_by_rank_of_first_touch():
    p = Paths.from_lists([["b", "a", "b"], ["a"], ["c", "a", "b"]], [2, 1, 3])
    o = ordered_shapley(p)
    # journey 1: b rank 1, a rank 2 (1 each); journey 3: c, a, b ranks 1..3 (1 each)
    assert o.loc["b"].tolist() == [1.0, 0.0, 1.0]
    assert o.loc["a"].tolist() == [1.0, 2.0, 0.0]
    assert o.loc["c"].tolist() == [1.0, 0.0, 0.0]
    np.testing.assert_allclose(o.sum(axis=1), shapley_attribution(p).loc[o.index, "conversions"])


def test_value_credits_use_path_value():
    p = Paths.from_lists([["a"], ["a", "b"]], [4, 6], [40.0, 100.0])
    att = shapley_attribution(p)
    assert att["value"].to_dict() == pytest.approx({"a": 90.0, "b": 50.0})


@settings(max_examples=80, deadline=None)
@given(path_sets())
def test_closed_form_equals_enumeration_and_properties(p):
    att = ShapleyAttribution().fit(p).attribution_
    v = coalition_value(p)
    brute = exact_shapley(v, p.channels)
    np.testing.assert_allclose(att["conversions"].to_numpy(), brute.to_numpy(), atol=1e-9)
    assert att["conversions"].sum() == pytest.approx(p.total_conversions)
    assert att["value"].sum() == pytest.approx(p.total_value)
    assert att.loc["e"].tolist() == [0.0, 0.0]  # never touched
    # a channel seen only in journeys without conversions earns nothing
    only_lost = set(p.channels) - {
        p.channels[t]
        for j in np.flatnonzero(p.conversions > 0)
        for t in p.touches[p.offsets[j] : p.offsets[j + 1]]
    }
    for c in only_lost:
        assert att.loc[c, "conversions"] == 0.0


@settings(max_examples=40, deadline=None)
@given(path_sets(), st.booleans())
def test_bitmask_and_pair_routes_agree(p, ordered):
    a = ShapleyAttribution().fit(p)
    b = ShapleyAttribution(ordered=True).fit(p)
    np.testing.assert_allclose(a.attribution_.to_numpy(), b.attribution_.to_numpy(), atol=1e-12)
    ca = a.coalitions_.set_index("channels").sort_index()
    cb = b.coalitions_.assign(channels=[tuple(sorted(c)) for c in b.coalitions_["channels"]])
    cb = cb.set_index("channels").sort_index()
    ca.index = [tuple(sorted(c)) for c in ca.index]
    ca = ca.sort_index()
    np.testing.assert_allclose(ca.to_numpy(dtype=float), cb.to_numpy(dtype=float))


def test_many_channels_beyond_bitmask():
    names = [f"c{i}" for i in range(80)]
    paths = [names[i : i + 3] for i in range(0, 78)]
    p = Paths.from_lists(paths, np.arange(1, 79))
    att = shapley_attribution(p)["conversions"]
    assert att.sum() == pytest.approx(p.total_conversions)
    assert att["c0"] == pytest.approx(1 / 3)


def test_channel_only_in_lost_journeys_scores_zero():
    p = Paths.from_lists([["a", "x"], ["a"], ["x", "y"]], [0, 2, 0], nulls=[5, 0, 3])
    att = shapley_attribution(p)["conversions"]
    assert att.to_dict() == {"a": 2.0, "x": 0.0, "y": 0.0}


def test_sampled_shapley_converges_for_a_model_value():
    p, _ = simulate_paths(5000, 6, random_state=3)
    v = coalition_value(p)
    exact = exact_shapley(v, p.channels)
    est = sampled_shapley(v, p.channels, n_permutations=400, random_state=1)
    assert est["shapley"].sum() == pytest.approx(
        v(np.ones((1, 6), bool))[0] - v(np.zeros((1, 6), bool))[0]
    )
    z = (est["shapley"] - exact).abs() / est["std_error"].clip(lower=1e-9)
    assert (z < 5).all()


def test_sampled_shapley_scalar_value_function():
    # a non-additive game: only the pair (x, y) together is worth 6
    def v(coalition: frozenset) -> float:
        return 6.0 if {"x", "y"} <= coalition else 0.0

    est = sampled_shapley(v, ["x", "y", "z"], n_permutations=50, vectorized=False, random_state=2)
    assert est["shapley"].to_dict() == pytest.approx({"x": 3.0, "y": 3.0, "z": 0.0})


def test_sampled_shapley_bad_input():
    with pytest.raises(ValidationError, match="n_permutations"):
        sampled_shapley(lambda m: m.sum(axis=1), 3, n_permutations=0)
    with pytest.raises(ValidationError, match="players"):
        sampled_shapley(lambda m: m.sum(axis=1), [])
    with pytest.raises(ValidationError, match="non-finite"):
        sampled_shapley(lambda m: np.full(len(m), np.nan), 2)
    with pytest.raises(ValidationError, match="returned"):
        sampled_shapley(lambda m: np.zeros(1), 2)
    with pytest.raises(ValidationError, match="exact enumeration"):
        exact_shapley(lambda m: m.sum(axis=1), 25)


def test_exact_shapley_of_additive_game():
    w = np.array([1.0, 2.0, 5.0])
    assert exact_shapley(lambda m: m @ w, 3).tolist() == pytest.approx(w.tolist())

    # 3-player majority game: symmetric players share v(N) = 1 equally
    def maj(m):
        return (m.sum(axis=1) >= 2).astype(float)

    phi = exact_shapley(maj, ["p", "q", "r"])
    assert phi.tolist() == pytest.approx([1 / 3] * 3)


def test_no_conversions():
    with pytest.raises(DataError, match="no conversions"):
        shapley_attribution(pd.DataFrame({"path": ["a"], "conversions": [0], "nulls": [2]}))


def test_model_coalition_value_recovers_effect_order():
    effects = np.array([0.0, 0.02, 0.1, 0.2])
    p, _ = simulate_paths(40_000, 4, effects=effects, base_rate=0.02, random_state=8)
    v = model_coalition_value(p)
    assert v(np.zeros((1, 4), bool))[0] < v(np.ones((1, 4), bool))[0]
    phi = exact_shapley(v, v.channels)
    assert list(phi.sort_values().index) == ["ch00", "ch01", "ch02", "ch03"]
    with pytest.raises(ValidationError, match="both"):
        model_coalition_value(Paths.from_lists([["a"]], [1]))


@settings(max_examples=60, deadline=None)
@given(path_sets(), st.data())
def test_channel_added_to_lost_journeys_earns_nothing(p, data):
    """Put a new channel 'z' into some non-converting journeys: it gets 0, nothing else moves."""
    before = shapley_attribution(p)["conversions"]
    lists = [
        [p.channels[t] for t in p.touches[p.offsets[j] : p.offsets[j + 1]]]
        for j in range(p.n_paths)
    ]
    lost = [j for j in range(p.n_paths) if p.conversions[j] == 0]
    chosen = data.draw(st.lists(st.sampled_from(lost), unique=True)) if lost else []
    for j in chosen:
        lists[j].insert(data.draw(st.integers(0, len(lists[j]))), "z")
    q = Paths.from_lists(lists, p.conversions, p.value, p.nulls, channels=[*p.channels, "z"])
    after = shapley_attribution(q)["conversions"]
    assert after["z"] == 0.0
    np.testing.assert_allclose(after[before.index], before)
