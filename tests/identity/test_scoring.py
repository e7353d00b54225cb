"""Record assignment and pairwise scores (hand-computed and against brute force)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mktlab.identity import assign_records, pairwise_scores, resolve

from .helpers import obs, record


def test_pairwise_hand_computed():
    s = pairwise_scores([1, 1, 2, 2], [1, 1, 1, 2])
    # predicted pairs {01, 23}; true pairs {01, 02, 12}; shared {01}
    assert s["precision"] == pytest.approx(0.5)
    assert s["recall"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))


def test_missing_predictions_are_singletons():
    s = pairwise_scores(pd.array([1, 1, pd.NA, pd.NA], dtype="UInt32"), [1, 1, 2, 2])
    assert s["precision"] == 1.0
    assert s["recall"] == pytest.approx(0.5)


def brute(pred, truth):
    tp = pp = tt = 0
    for i, j in itertools.combinations(range(len(pred)), 2):
        sp, stt = pred[i] == pred[j], truth[i] == truth[j]
        tp += sp and stt
        pp += sp
        tt += stt
    return (tp / pp if pp else 1.0), (tp / tt if tt else 1.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=0, max_size=25))
def test_pairwise_matches_brute_force(pairs):
    pred = [p for p, _ in pairs]
    truth = [t for _, t in pairs]
    s = pairwise_scores(np.array(pred, dtype=np.int64), np.array(truth, dtype=np.int64))
    p, r = brute(pred, truth)
    assert s["precision"] == pytest.approx(p)
    assert s["recall"] == pytest.approx(r)


def test_assign_records_uses_highest_priority_resolvable_id():
    o = obs(
        *record(1, 1, user_id="mum", device="tablet"),
        *record(2, 2, user_id="kid", device="tablet"),
        *record(3, 3, device="tablet"),
        *record(4, 4, phone="000000"),
        *record(5, 5, device="tablet", user_id="unknown"),
    )
    m = resolve(o)
    rec = assign_records(o, m).set_index("record_id")["uid"]
    assert rec[1] == m.lookup("user_id", "mum").uid  # not the tablet's owner
    assert rec[2] == m.lookup("user_id", "kid").uid
    assert rec[3] == m.lookup("device", "tablet").uid
    assert pd.isna(rec[4])  # junk-only record
    assert rec[5] == m.lookup("device", "tablet").uid  # the blocked user_id is skipped
    assert len(rec) == 5


def test_assign_records_with_string_record_ids_matches_integer_ids():
    o = obs(
        *record(3, 1, user_id="A", device="d"),
        *record(1, 2, device="d"),
        *record(2, 3, phone="000000"),
    )
    m = resolve(o)
    by_int = assign_records(o, m)
    assert by_int["record_id"].tolist() == [1, 2, 3]
    s = o.assign(record_id="r" + o["record_id"].astype(str))
    by_str = assign_records(s, m).set_index("record_id")["uid"]
    assert by_str["r3"] == by_str["r1"] == m.lookup("user_id", "A").uid
    assert pd.isna(by_str["r2"])
    assert by_int.set_index("record_id")["uid"].tolist() == [
        by_str["r1"],
        by_str["r2"],
        by_str["r3"],
    ]
