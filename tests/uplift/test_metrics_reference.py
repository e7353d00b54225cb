"""AUUC, Qini coefficient and uplift@k against scikit-uplift 0.5.1's published definitions.

No scikit-uplift dependency: the reference values below are worked out by hand from the
formulas in ``sklift/metrics/metrics.py`` (``uplift_auc_score``, ``perfect_uplift_curve``,
``qini_auc_score`` with ``negative_effect=True``, ``uplift_at_k``), and a slow
row-by-row transcription of the same formulas checks random tiny data sets.

Published formulas, in counts (scikit-uplift does not rescale; the ratio is the same):

- curve points at the end of each block of equal scores, sorted high to low, plus (0, 0);
  uplift(k) = (Y_t/n_t - Y_c/n_c)·k, qini(k) = Y_t - Y_c·n_t/n_c (0 when a count is 0);
- score = (area(model) - area(baseline)) / (area(perfect) - area(baseline)), trapezoids,
  baseline = straight line from (0, 0) to the perfect curve's end point;
- perfect uplift curve: score 2·[y == w] + (y if #control responders > #treated
  non-responders else w); perfect Qini curve: score y·w - y·(1 - w);
- uplift@k ("overall"): order = argsort(score, mergesort) reversed, the first int(N·k)
  rows, treated mean minus control mean; "by_group": the first int(N_t·k) treated and
  int(N_c·k) control rows in that order.
"""

from __future__ import annotations

from fractions import Fraction as F

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mktlab.errors import ValidationError
from mktlab.uplift import metrics as M

# A: one of each kind (T1, T0, C0, C1): 1 control responder == 1 treated non-responder
YA = np.array([1.0, 0.0, 0.0, 1.0])
WA = np.array([1, 1, 0, 0])
# B: 2 control responders > 1 treated non-responder, so the perfect order differs from A's
YB = np.array([1.0, 1.0, 0.0, 1.0, 0.0])
WB = np.array([1, 0, 0, 0, 1])
SB = np.array([0.9, 0.1, 0.5, 0.3, 0.7])
# C: ties and a top-k size that rounds (10 * 0.3 = 3.0000000000000004)
YC = np.array([1, 0, 0, 1, 1, 0, 0, 1, 0, 0], dtype=float)
WC = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0])
SC = np.array([0.9, 0.5, 0.5, 0.5, 0.2, 0.2, 0.1, 0.1, 0.0, 0.0])


def test_auuc_a_by_hand():
    # perfect (2[y==w] + w, since 1 == 1): scores 3, 1, 2, 0 -> order T1, C0, T0, C1
    #   k=1: 1;  k=2: (1/1 - 0/1)*2 = 2;  k=3: (1/2 - 0/1)*3 = 1.5;  k=4: 0
    #   area 0.5 + 1.5 + 1.75 + 0.75 = 4.5, baseline to (4, 0) = 0
    # model y(2w-1) = 1, 0, 0, -1: ends at k=1, 3, 4 -> 1, 1.5, 0 -> area 3.75
    assert M.auuc(YA, WA, np.array([1.0, 0.0, 0.0, -1.0])) == pytest.approx(3.75 / 4.5)
    assert M.auuc(YA, WA, np.array([-1.0, 0.0, 0.0, 1.0])) == pytest.approx(-3.75 / 4.5)
    assert M.auuc(YA, WA, np.array([3.0, 1.0, 2.0, 0.0])) == pytest.approx(1.0)
    assert M.auuc(YA, WA, np.zeros(4)) == 0.0


def test_auuc_b_by_hand():
    # perfect (2[y==w] + y, since 2 > 1): scores 3, 1, 2, 1, 0 -> ends at k=1, 2, 4, 5
    #   1;  2;  (1/1 - 2/3)*4 = 4/3;  (1/2 - 2/3)*5 = -5/6
    #   area 1/2 + 3/2 + 10/3 + 1/4 = 67/12; baseline to (5, -5/6): -25/12 -> gain 23/3
    # model SB: order 0, 4, 2, 3, 1 -> 1, 1, 3/2, 0, -5/6
    #   area 1/2 + 1 + 5/4 + 3/4 - 5/12 = 37/12 -> gain 37/12 + 25/12 = 31/6
    expected = F(31, 6) / F(23, 3)
    assert M.auuc(YB, WB, SB) == pytest.approx(float(expected), abs=1e-12)
    # the old perfect score y(2w-1) would tie C0 with T0: gain 11/4 + 25/12 = 29/6, not 23/3
    assert float(F(31, 6) / F(29, 6)) != pytest.approx(M.auuc(YB, WB, SB))


def test_qini_b_by_hand():
    # model SB: qini(k) = 1, 1, 1, 1 - 1*2/2 = 0, 1 - 2*2/3 = -1/3
    #   area 1/2 + 1 + 1 + 1/2 - 1/6 = 17/6; baseline to (5, -1/3): -5/6 -> gain 11/3
    # perfect y(2w-1) = 1, -1, 0, -1, 0: ends at k=1, 3, 5 -> 1, 1, -1/3
    #   area 1/2 + 2 + 2/3 = 19/6 -> gain 4
    assert M.qini_coefficient(YB, WB, SB) == pytest.approx(float(F(11, 3) / 4), abs=1e-12)


def test_uplift_at_k_by_hand():
    # scikit-uplift's order: ascending mergesort reversed -> ties in reverse row order:
    #   0, 3, 2, 1, 5, 4, 7, 6, 9, 8
    # k=0.3: int(3.0000000000000004) = 3 rows: 0 (T, 1), 3 (C, 1), 2 (T, 0) -> 1/2 - 1 = -1/2
    #   (top 4 = ceil, ties in row order would be rows 0..3 -> 1/2 - 1/2 = 0)
    assert M.uplift_at_k(YC, WC, SC, 0.3) == pytest.approx(-0.5)
    # k=0.5: 5 rows 0, 3, 2, 1, 5 -> treated 0, 2 = 1/2; control 3, 1, 5 = 1/3
    assert M.uplift_at_k(YC, WC, SC, 0.5) == pytest.approx(1 / 6)
    # by_group k=0.3: int(5 * 0.3) = 1 per arm: treated 0 (1), control 3 (1) -> 0
    assert M.uplift_at_k(YC, WC, SC, 0.3, strategy="by_group") == pytest.approx(0.0)
    # by_group k=0.5: 2 per arm: treated 0, 2 -> 1/2; control 3, 1 -> 1/2 -> 0
    assert M.uplift_at_k(YC, WC, SC, 0.5, strategy="by_group") == pytest.approx(0.0)
    # k=0.6 of B: int(3.0) = 3 rows 0, 4, 2 -> treated 1/2, control 0
    assert M.uplift_at_k(YB, WB, SB, 0.6) == pytest.approx(0.5)
    # where scikit-uplift would return NaN (no control row in the top 2) mktlab refuses
    with pytest.raises(ValidationError, match="only one arm"):
        M.uplift_at_k(YB, WB, SB, 0.5)
    with pytest.raises(ValidationError, match="strategy"):
        M.uplift_at_k(YB, WB, SB, 0.5, strategy="first")


def test_true_uplift_at_k_uses_the_same_rows():
    tau = np.arange(10, dtype=float)
    # the same 3 rows as uplift@0.3 of C: 0, 3, 2
    assert M.true_uplift_at_k(tau, SC, 0.3) == pytest.approx((0 + 3 + 2) / 3)


# ------------------------------------------------- a row-by-row transcription, random data
def _curve_points(y, w, s, kind):
    order = sorted(range(len(s)), key=lambda i: -s[i])
    xs, vs = [0], [F(0)]
    for k in range(1, len(s) + 1):
        if k < len(s) and s[order[k]] == s[order[k - 1]]:
            continue  # inside a block of equal scores
        top = order[:k]
        nt = sum(w[i] for i in top)
        nc = k - nt
        yt = sum(F(y[i]) for i in top if w[i] == 1)
        yc = sum(F(y[i]) for i in top if w[i] == 0)
        if kind == "uplift":
            v = ((yt / nt) if nt else F(0)) - ((yc / nc) if nc else F(0))
            v *= k
        else:
            v = yt - (yc * F(nt, nc) if nc else F(0))
        xs.append(k)
        vs.append(v)
    return xs, vs


def _area(xs, vs):
    return sum(F(xs[i] - xs[i - 1]) * (vs[i] + vs[i - 1]) / 2 for i in range(1, len(xs)))


def _reference(y, w, s, kind):
    """The normalised score, or None where the perfect curve does not beat the baseline."""
    if kind == "uplift":
        cr = sum(1 for a, b in zip(y, w) if a == 1 and b == 0)
        tn = sum(1 for a, b in zip(y, w) if a == 0 and b == 1)
        perfect = [2 * (a == b) + (a if cr > tn else b) for a, b in zip(y, w)]
    else:
        perfect = [a * b - a * (1 - b) for a, b in zip(y, w)]
    px, pv = _curve_points(y, w, perfect, kind)
    mx, mv = _curve_points(y, w, s, kind)
    base = F(px[-1]) * pv[-1] / 2
    denom = _area(px, pv) - base
    return (_area(mx, mv) - base) / denom if denom > 0 else None


def _reference_at_k(y, w, s, k):
    asc = sorted(range(len(s)), key=lambda i: s[i])  # stable, like mergesort
    top = asc[::-1][: int(len(s) * k)]
    t = [y[i] for i in top if w[i] == 1]
    c = [y[i] for i in top if w[i] == 0]
    return F(sum(t), len(t)) - F(sum(c), len(c)) if t and c else None


rows = st.lists(
    st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(-3, 3)), min_size=4, max_size=25
)


@settings(max_examples=150, deadline=None)
@given(data=rows, k=st.sampled_from([0.1, 0.25, 0.3, 0.5, 0.7]))
def test_matches_the_published_formulas_on_random_tiny_sets(data, k):
    y = [d[0] for d in data]
    w = [d[1] for d in data]
    s = [d[2] for d in data]
    if all(w) or not any(w):
        return
    ya, wa, sa = np.array(y, dtype=float), np.array(w), np.array(s, dtype=float)
    for kind, fn in (("uplift", M.auuc), ("qini", M.qini_coefficient)):
        ref = _reference(y, w, s, kind)
        if ref is None:  # undefined (scikit-uplift divides by zero): mktlab says so
            with pytest.raises(ValidationError, match="perfect curve"):
                fn(ya, wa, sa)
        else:
            assert fn(ya, wa, sa) == pytest.approx(float(ref), abs=1e-9), kind
    ref = _reference_at_k(y, w, s, k)
    if ref is None:
        with pytest.raises(ValidationError):
            M.uplift_at_k(ya, wa, sa, k)
    else:
        assert M.uplift_at_k(ya, wa, sa, k) == pytest.approx(float(ref), abs=1e-12)
