"""Assignment: allocation, ramp-up stability, layers, namespaces, holdouts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mktlab.errors import ValidationError
from mktlab.experiments import Assigner, Experiment, Layer, assign

N = 100_000
UIDS = np.arange(N, dtype=np.int64)


def _chi2_p(a, b) -> float:
    return float(
        stats.chi2_contingency(pd.crosstab(np.asarray(a), np.asarray(b)).to_numpy()).pvalue
    )


def test_uid_mod_100_correlates_experiments_and_salted_hash_does_not():
    # the naive scheme: every experiment splits on uid % 100 < 50 -> the same people get
    # treatment in both, so experiment B's effect leaks into experiment A's readout
    naive_a = UIDS % 100 < 50
    naive_b = UIDS % 100 < 50
    assert _chi2_p(naive_a, naive_b) < 1e-100
    assert (naive_a == naive_b).all()
    # even with different thresholds the splits overlap systematically
    assert _chi2_p(UIDS % 100 < 50, UIDS % 100 < 30) < 1e-100
    hashed_a = assign(UIDS, "exp-a")
    hashed_b = assign(UIDS, "exp-b")
    assert _chi2_p(hashed_a, hashed_b) > 1e-3
    assert abs((hashed_a == "treatment").mean() - 0.5) < 0.01


def test_allocation_follows_weights_and_is_deterministic():
    e = Experiment("price", {"control": 0.5, "low": 0.3, "high": 0.2})
    arms = e.assign(UIDS)
    shares = arms.value_counts(normalize=True)
    for arm, w in {"control": 0.5, "low": 0.3, "high": 0.2}.items():
        assert shares[arm] == pytest.approx(w, abs=4 * np.sqrt(w * (1 - w) / N))
    assert arms.equals(e.assign(UIDS))
    assert e.control == "control"


@settings(max_examples=15, deadline=None, derandomize=True)
@given(
    st.text(min_size=1, max_size=10),
    st.lists(st.floats(0.01, 1.0), min_size=2, max_size=4).map(sorted),
)
def test_ramp_up_never_switches_arms(name, traffics):
    ids = UIDS[:20_000]
    prev = None
    for t in traffics:
        arms = Experiment(name, ("control", "treatment"), traffic=t).assign(ids)
        exposed = arms.notna().to_numpy()
        assert exposed.mean() == pytest.approx(t, abs=0.02)
        if prev is not None:
            prev_exposed = prev.notna().to_numpy()
            assert not (prev_exposed & ~exposed).any(), "a unit left the experiment on ramp-up"
            kept = prev_exposed
            assert (
                arms[kept].astype(object).to_numpy() == prev[kept].astype(object).to_numpy()
            ).all()
        prev = arms


def test_exclusive_namespace_and_orthogonal_layers():
    ns = Layer("checkout", [Experiment("a"), Experiment("b"), Experiment("c", traffic=0.5)])
    other = Layer("search", [Experiment("ranking", {"control": 1, "new": 1})])
    out = Assigner([ns, other]).assign(UIDS)
    in_ns = out[["a", "b", "c"]].notna().sum(axis=1)
    assert in_ns.max() == 1  # at most one experiment of the namespace
    assert out["a"].notna().mean() == pytest.approx(1 / 3, abs=0.01)
    assert out["c"].notna().mean() == pytest.approx(1 / 6, abs=0.01)
    assert out["ranking"].notna().all()
    # orthogonal: the search arm is independent of which checkout experiment / arm
    label = out[["a", "b", "c"]].astype(object).fillna("-").agg("|".join, axis=1)
    assert _chi2_p(label, out["ranking"]) > 1e-3


def test_explicit_bucket_ranges_and_overlap_error():
    la = Layer("ns", [Experiment("x", buckets=(0, 2000)), Experiment("y", buckets=(2000, 3000))])
    out = la.assign(UIDS)
    assert out["x"].notna().mean() == pytest.approx(0.2, abs=0.01)
    assert out["y"].notna().mean() == pytest.approx(0.1, abs=0.01)
    with pytest.raises(ValidationError, match=r"overlapping allocations.*'x'.*'y'"):
        Layer("ns", [Experiment("x", buckets=(0, 5000)), Experiment("y", buckets=(4000, 6000))])
    with pytest.raises(ValidationError, match="exceeds"):
        Layer("ns", [Experiment("x", buckets=(0, 20_000))])


def test_holdout_excluded_everywhere():
    a = Assigner([Layer("l1", [Experiment("e1")]), Layer("l2", [Experiment("e2")])], holdout=0.1)
    out = a.assign(UIDS)
    assert out["holdout"].mean() == pytest.approx(0.1, abs=0.01)
    assert out.loc[out["holdout"], ["e1", "e2"]].isna().all().all()
    assert out.loc[~out["holdout"], ["e1", "e2"]].notna().all().all()


def test_series_index_is_kept():
    s = pd.Series(["u1", "u2", "u3"], index=[10, 20, 30])
    out = Assigner([Layer("l", [Experiment("e")])]).assign(s)
    assert out.index.tolist() == [10, 20, 30]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "e", "arms": ["control"]}, "at least two arms"),
        ({"name": "e", "arms": {"a": 1, "b": -1}}, "positive"),
        ({"name": "e", "arms": ["a", "a"]}, "duplicate"),
        ({"name": "e", "traffic": 0}, "traffic"),
        ({"name": "e", "traffic": 1.5}, "traffic"),
        ({"name": "", "arms": ["a", "b"]}, "name"),
        ({"name": "e", "buckets": (5, 5)}, "buckets"),
        ({"name": "e", "salt": ""}, "salt"),
    ],
)
def test_bad_experiments(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        Experiment(**kwargs)


def test_bad_layers_and_assigner():
    with pytest.raises(ValidationError, match="duplicate experiment"):
        Layer("l", [Experiment("e"), Experiment("e")])
    with pytest.raises(ValidationError, match="duplicate layer"):
        Assigner([Layer("l", [Experiment("a")]), Layer("l", [Experiment("b")])])
    with pytest.raises(ValidationError, match="more than one layer"):
        Assigner([Layer("l1", [Experiment("a")]), Layer("l2", [Experiment("a")])])
    with pytest.raises(ValidationError, match="holdout"):
        Assigner([], holdout=2)
    with pytest.raises(ValidationError, match="mixes"):
        Layer("l", [Experiment("a", buckets=(0, 10)), Experiment("b")])
