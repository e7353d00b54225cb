"""Uplift metrics on hand-computable cases (see the derivations in each test)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mktlab.errors import ValidationError
from mktlab.uplift import metrics as M

# treated responder, treated non-responder, control non-responder, control responder
Y = np.array([1.0, 0.0, 0.0, 1.0])
W = np.array([1, 1, 0, 0])
PERFECT = np.array([1.0, 0.0, 0.0, -1.0])  # y * (2w - 1)


def test_qini_curve_by_hand():
    # order: T1 | (T0, C0 tie) | C1 -> qini at k=1,3,4: 1, 1 - 0*2/1 = 1, 1 - 1*2/2 = 0
    c = M.qini_curve(Y, W, PERFECT)
    np.testing.assert_allclose(c.x, [0, 0.25, 0.75, 1.0])
    np.testing.assert_allclose(c.y, [0, 0.25, 0.25, 0.0])
    assert c.area == pytest.approx(0.1875)
    assert c.random_area == 0.0


def test_uplift_curve_by_hand():
    # k=1: (1/1 - 0)*1 = 1; k=3: (1/2 - 0/1)*3 = 1.5; k=4: (1/2 - 1/2)*4 = 0
    c = M.uplift_curve(Y, W, PERFECT)
    np.testing.assert_allclose(c.y, [0, 0.25, 0.375, 0.0])


def test_perfect_ranking_scores_one():
    assert M.qini_coefficient(Y, W, PERFECT) == pytest.approx(1.0)
    # scikit-uplift's perfect uplift ordering (T1, C0, T0, C1; tests/uplift/
    # test_metrics_reference.py) beats y(2w-1), which ties T0 with C0: 3.75 / 4.5
    assert M.auuc(Y, W, np.array([3.0, 1.0, 2.0, 0.0])) == pytest.approx(1.0)
    assert M.auuc(Y, W, PERFECT) == pytest.approx(5 / 6)


def test_inverse_ranking_by_hand():
    # qini: order C1 | tie | T1 -> 0, 0 - 1*1/2 = -0.5, 0 -> area -0.046875 / 0.1875 = -0.25
    assert M.qini_coefficient(Y, W, -PERFECT) == pytest.approx(-0.25)
    # uplift curve is the mirror image of y(2w-1)'s: -3.75 / 4.5
    assert M.auuc(Y, W, -PERFECT) == pytest.approx(-5 / 6)


def test_constant_score_is_exactly_random():
    assert M.qini_coefficient(Y, W, np.zeros(4)) == 0.0
    assert M.auuc(Y, W, np.zeros(4)) == 0.0


def test_random_ranking_is_near_zero_and_informed_beats_it():
    rng = np.random.default_rng(0)
    n = 40_000
    x = rng.normal(size=n)
    w = rng.integers(0, 2, n)
    tau = np.where(x > 0, 0.2, 0.0)
    y = (rng.random(n) < 0.1 + tau * w).astype(float)
    q_random = M.qini_coefficient(y, w, rng.random(n))
    q_model = M.qini_coefficient(y, w, x)
    q_inverse = M.qini_coefficient(y, w, -x)
    assert abs(q_random) < 0.03
    assert q_model > 0.1
    assert q_inverse < -0.1


def test_uplift_at_k_by_hand():
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=float)
    w = np.array([1, 0, 1, 0, 1, 0, 1, 0])
    s = np.arange(8)[::-1].astype(float)  # rows already in score order
    # top 50% = rows 0..3: treated y = [1, 1] -> 1.0; control y = [0, 1] -> 0.5
    assert M.uplift_at_k(y, w, s, 0.5) == pytest.approx(0.5)
    # all rows: treated 3/4, control 1/4
    assert M.uplift_at_k(y, w, s, 1.0) == pytest.approx(0.5)
    with pytest.raises(ValidationError, match="only one arm"):
        M.uplift_at_k(y, w, s, 0.125)
    with pytest.raises(ValidationError, match="k:"):
        M.uplift_at_k(y, w, s, 0.0)


def test_by_decile_sums_to_rows():
    rng = np.random.default_rng(1)
    y, w, s = rng.integers(0, 2, 1000).astype(float), rng.integers(0, 2, 1000), rng.random(1000)
    dec = M.uplift_by_decile(y, w, s)
    assert len(dec) == 10
    assert dec["n"].sum() == 1000
    assert (dec["mean_score"].diff().dropna() <= 0).all()  # bin 1 = highest scores


def test_truth_metrics_by_hand():
    tau = np.array([0.3, 0.1, 0.0, -0.2])
    assert M.pehe(np.array([0.3, 0.1, 0.0, 0.0]), tau) == pytest.approx(np.sqrt(0.04 / 4))
    assert M.true_qini_coefficient(tau, tau) == pytest.approx(1.0)
    assert M.true_qini_coefficient(tau, np.zeros(4)) == 0.0
    assert M.true_qini_coefficient(tau, -tau) == pytest.approx(-1.0)
    assert M.true_uplift_at_k(tau, tau, 0.5) == pytest.approx(0.2)


def test_bootstrap_interval_brackets_estimate():
    rng = np.random.default_rng(2)
    n = 4000
    x = rng.normal(size=n)
    w = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.1 + 0.2 * (x > 0) * w).astype(float)
    est, lo, hi = M.bootstrap_ci(M.qini_coefficient, y, w, x, n_boot=50)
    assert lo < est < hi
    out = M.evaluate(y, w, x, true_uplift=0.2 * (x > 0), n_boot=30)
    assert {"qini", "qini_lo", "auuc_hi", "uplift_at_30", "pehe", "true_qini"} <= set(out)


@pytest.mark.parametrize(
    ("y", "w", "s", "match"),
    [
        ([1, 0, np.nan], [1, 0, 1], [1, 2, 3], "y:"),
        ([1, 0, 1], [1, 2, 0], [1, 2, 3], "treatment: expected binary"),
        ([1, 0, 1], [1, 1, 1], [1, 2, 3], "both treated"),
        ([1, 0, 1], [1, 0, 1], [1, np.nan, 3], "score:"),
        ([1, 0], [1, 0, 1], [1, 2, 3], "lengths differ"),
    ],
)
def test_bad_metric_input(y, w, s, match):
    with pytest.raises(ValidationError, match=match):
        M.qini_coefficient(np.array(y, dtype=float), np.array(w), np.array(s, dtype=float))


@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(-20, 20)),
        min_size=6,
        max_size=60,
    ),
)
def test_qini_invariant_to_monotone_transform(data):
    y = np.array([d[0] for d in data], dtype=float)
    w = np.array([d[1] for d in data])
    s = np.array([d[2] for d in data], dtype=float)
    if w.all() or not w.any() or not y.any():
        return
    try:
        q = M.qini_coefficient(y, w, s)
    except ValidationError:
        return  # perfect curve does not beat random on this tiny sample
    assert M.qini_coefficient(y, w, 3 * s + 7) == pytest.approx(q)
    assert M.qini_coefficient(y, w, np.full(len(y), 1.5)) == 0.0
