"""Hillstrom: an estimate from one half must match what the other half measures directly."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from mktlab.sandbox import LoggedData, TreatmentPolicy, Strategy, from_hillstrom, replay

ARM = "Womens E-Mail"


class TLearner:
    """Two logistic regressions (control, e-mail); uplift = difference of probabilities."""

    def fit(self, data: LoggedData, arm: str) -> TLearner:
        from sklearn.linear_model import LogisticRegression

        X = self._design(data.X)
        self.columns_ = X.columns
        self.models_ = {}
        with threadpool_limits(1):
            for a in (0, data.arms.index(arm)):
                rows = data.action == a
                self.models_[a] = LogisticRegression(max_iter=500, solver="newton-cholesky").fit(
                    X[rows], data.conversions[rows]
                )
        return self

    @staticmethod
    def _design(X: pd.DataFrame) -> pd.DataFrame:
        X = pd.get_dummies(X, columns=["zip_code", "channel"], dtype=float)
        X["log_history"] = np.log1p(X["history"])
        X["recency2"] = X["recency"] ** 2 / 12
        return X

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        X = self._design(X).reindex(columns=self.columns_, fill_value=0.0)
        control, treated = (self.models_[k] for k in sorted(self.models_))
        return treated.predict_proba(X)[:, 1] - control.predict_proba(X)[:, 1]


def measured_directly(model: TLearner, half: LoggedData, top_fraction: float = 0.3) -> float:
    """Visit rate of "e-mail the top 30%, nobody else", read off randomised rows of ``half``."""
    score = model.predict(half.X)
    top = np.zeros(len(half), bool)
    top[np.argsort(-score, kind="stable")[: int(np.ceil(top_fraction * len(half)))]] = True
    emailed = half.action == half.arms.index(ARM)
    control = half.action == 0
    # randomised: within each stratum the matching arm's mean is the stratum's outcome
    return (
        top.mean() * half.conversions[top & emailed].mean()
        + (~top).mean() * half.conversions[~top & control].mean()
    )


@pytest.mark.slow
def test_top30_estimate_matches_the_other_half():
    data = from_hillstrom()
    perm = np.random.default_rng(7).permutation(len(data))
    n = len(data)
    train, half_a, half_b = (
        perm[: int(0.4 * n)],
        perm[int(0.4 * n) : int(0.7 * n)],
        perm[int(0.7 * n) :],
    )
    model = TLearner().fit(data.subset(train), ARM)
    strategy = Strategy(
        "top30", TreatmentPolicy("uplift_threshold", model="tlearner", top_fraction=0.3, arm=ARM)
    )
    for est_rows, meas_rows in ((half_a, half_b), (half_b, half_a)):
        est_half, meas_half = data.subset(est_rows), data.subset(meas_rows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = replay(
                strategy,
                est_half,
                models={"tlearner": model},
                estimators=("ips", "snips", "dr"),
                n_boot=400,
            )
        direct = measured_directly(model, meas_half)
        assert res.get("treated").value == np.ceil(0.3 * len(est_half))
        for e in ("ips", "snips", "dr"):
            iv = res.get("conversions", e)
            rate = (iv.lo / len(est_half), iv.hi / len(est_half))
            assert rate[0] <= direct <= rate[1], (e, rate, direct)
        # and the strategy beats sending nothing (Hillstrom's e-mails raised visits)
        assert res.get("incremental_conversions", "dr").lo > 0
