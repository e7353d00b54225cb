"""Forest and econml learners: causalml's uplift random forest, econml's causal forest and DR.

The econml learners have no control-outcome model of their own ("baseline" in
:mod:`mktlab.uplift.learners`): the base class fits one for ``predict_outcomes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mktlab.uplift.base import UpliftLearner, lgbm_classifier, lgbm_regressor


class UpliftForest(UpliftLearner):
    """causalml's uplift random forest (KL-divergence splits); binary outcomes only.

    ``n_estimators`` trees of depth ``max_depth`` with at least ``min_child_samples`` rows
    per leaf; the LightGBM-only parameters are ignored.
    """

    name = "urf"
    binary_only = True

    def __init__(
        self,
        n_estimators: int = 100,
        max_depth: int = 6,
        min_child_samples: int = 200,
        criterion: str = "KL",
        control: Any = 0,
        arms: Sequence[Any] | None = None,
        random_state: int = 0,
        n_jobs: int = 1,
    ):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_child_samples = min_child_samples
        self.criterion = criterion
        self.control = control
        self.arms = arms
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _fit(self, X, t, y, p):
        from causalml.inference.tree import UpliftRandomForestClassifier

        self.model_ = UpliftRandomForestClassifier(
            control_name=0,
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_child_samples,
            min_samples_treatment=max(10, self.min_child_samples // 4),
            evaluationFunction=self.criterion,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        )
        self.model_.fit(X, treatment=t, y=y.astype(np.int64))

    def _full(self, X):
        return self.model_.predict(X, full_output=True)

    def _predict(self, X):
        full = self._full(X)
        return np.column_stack(
            [full[f"delta_{g}"].to_numpy() for g in range(1, len(self.arms_) + 1)]
        )

    def _mu0(self, X):
        return self._full(X)[0].to_numpy()

    def _components(self, X):
        full = self._full(X)
        groups = range(1, len(self.arms_) + 1)
        return full[0].to_numpy(), np.column_stack([full[f"delta_{g}"].to_numpy() for g in groups])


class CausalForest(UpliftLearner):
    """econml ``CausalForestDML`` (generalised random forest on DML residuals).

    Nuisances: LightGBM outcome regression; the propensity is a constant (prior) model
    for randomised designs and a LightGBM classifier when propensities vary. Forest size
    is ``n_estimators`` (rounded to a multiple of 4, econml's subforest size).
    """

    name = "causal_forest"
    native_outcomes = False

    def _fit(self, X, t, y, p):
        from econml.dml import CausalForestDML
        from sklearn.dummy import DummyClassifier

        varying = any(np.ptp(v) > 1e-9 for v in p.values())
        model_t = lgbm_classifier(self) if varying else DummyClassifier(strategy="prior")
        n_trees = max(4, int(np.ceil(self.n_estimators / 4)) * 4)
        self.model_ = CausalForestDML(
            model_y=lgbm_regressor(self),
            model_t=model_t,
            discrete_treatment=True,
            categories=list(range(len(self.arms_) + 1)),
            cv=2,
            n_estimators=n_trees,
            min_samples_leaf=max(5, self.min_child_samples // 2),
            max_depth=None,
            drate=False,
            inference=False,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        )
        self.model_.fit(y, t, X=X)

    def _predict(self, X):
        return np.column_stack(
            [self.model_.effect(X, T0=0, T1=g) for g in range(1, len(self.arms_) + 1)]
        )


class EconDRLearner(UpliftLearner):
    """econml ``DRLearner`` with LightGBM propensity, regression and final models."""

    name = "econml_dr"
    native_outcomes = False

    def _fit(self, X, t, y, p):
        from econml.dr import DRLearner as _DR
        from sklearn.dummy import DummyClassifier

        varying = any(np.ptp(v) > 1e-9 for v in p.values())
        model_p = lgbm_classifier(self) if varying else DummyClassifier(strategy="prior")
        self.model_ = _DR(
            model_propensity=model_p,
            model_regression=lgbm_regressor(self),
            model_final=lgbm_regressor(self),
            discrete_outcome=False,
            categories=list(range(len(self.arms_) + 1)),
            cv=2,
            min_propensity=0.01,
            random_state=self.random_state,
        )
        self.model_.fit(y, t, X=X)

    def _predict(self, X):
        return np.column_stack(
            [self.model_.effect(X, T0=0, T1=g) for g in range(1, len(self.arms_) + 1)]
        )
