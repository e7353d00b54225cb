"""Categorical values unseen in training are scored, and reported per row."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mktlab.uplift import FeaturePrep, unseen_levels


def test_unseen_levels_per_row():
    levels = {"city": ["BJ", "SH"], "tier": ["1", "2"]}
    rows = [
        {"city": "ZZ", "tier": 1, "x": 1.0},
        {"city": "SH", "tier": 3, "x": 2.0},
        {"city": "BJ", "tier": 2, "x": 0.0},
    ]
    assert unseen_levels(rows, levels) == [{"city": "ZZ"}, {"tier": "3"}, {}]
    assert unseen_levels(pd.DataFrame(rows), levels) == [{"city": "ZZ"}, {"tier": "3"}, {}]


def test_unseen_means_what_the_encoder_scores_as_no_level():
    X = pd.DataFrame({"city": ["BJ", "SH", "BJ"], "x": [1.0, 2.0, 3.0]})
    prep = FeaturePrep().fit(X)
    rows = [{"city": "ZZ", "x": 1.0}, {"city": "SH", "x": 1.0}]
    enc = prep.transform_records(rows)
    city = [i for i, n in enumerate(prep.feature_names_) if n.startswith("city=")]
    flagged = [bool(u) for u in unseen_levels(rows, prep.levels_)]
    assert flagged == [not enc[i, city].any() for i in range(len(rows))]
    np.testing.assert_array_equal(enc[0, city], 0)
