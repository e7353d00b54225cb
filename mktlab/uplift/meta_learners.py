"""Meta-learners: S, T, X, R and DR (causalml, LightGBM base models).

Each wraps the causalml estimator of the same name and reads its fitted base models for
the control outcome (``_mu0``) and the per-arm components, through the LightGBM fast path.
"""

from __future__ import annotations

import numpy as np

from mktlab.uplift.base import UpliftLearner, est_predict, lgbm_regressor


class SLearner(UpliftLearner):
    """S-learner: one LightGBM model of ``y`` on ``X`` plus the treatment indicator."""

    name = "s"

    def _fit(self, X, t, y, p):
        from causalml.inference.meta import BaseSRegressor

        self.model_ = BaseSRegressor(learner=lgbm_regressor(self), control_name=0)
        self.model_.fit(X, treatment=t, y=y)

    def _predict(self, X):
        return self.model_.predict(X, verbose=False)

    def _components(self, X):
        X0 = np.column_stack([np.zeros(len(X)), X])
        X1 = np.column_stack([np.ones(len(X)), X])
        groups = range(1, len(self.arms_) + 1)
        y0 = {g: est_predict(self.model_.models[g], X0) for g in groups}
        tau = np.column_stack([est_predict(self.model_.models[g], X1) - y0[g] for g in groups])
        return np.mean([y0[g] for g in groups], axis=0), tau

    def _mu0(self, X):
        # each arm has its own S model, hence its own control prediction; average them
        X0 = np.column_stack([np.zeros(len(X)), X])
        return np.mean(
            [self.model_.models[g].predict(X0) for g in range(1, len(self.arms_) + 1)], axis=0
        )


class TLearner(UpliftLearner):
    """T-learner: separate LightGBM models of each arm's outcome."""

    name = "t"

    def _fit(self, X, t, y, p):
        from causalml.inference.meta import BaseTRegressor

        self.model_ = BaseTRegressor(learner=lgbm_regressor(self), control_name=0)
        self.model_.fit(X, treatment=t, y=y)

    def _predict(self, X):
        return self.model_.predict(X, verbose=False)

    def _mu0(self, X):
        return est_predict(self.model_.model_c, X)

    def _components(self, X):
        mu0 = self._mu0(X)
        groups = range(1, len(self.arms_) + 1)
        return mu0, np.column_stack([est_predict(self.model_.models_t[g], X) - mu0 for g in groups])


class XLearner(UpliftLearner):
    """X-learner (Künzel et al. 2019) with LightGBM outcome and effect models.

    The effect models are blended with the mean training propensity at predict time.
    """

    name = "x"

    def _fit(self, X, t, y, p):
        from causalml.inference.meta import BaseXRegressor

        self.model_ = BaseXRegressor(learner=lgbm_regressor(self), control_name=0)
        self.model_.fit(X, treatment=t, y=y, p=p)

    def _predict(self, X):
        return self.model_.predict(X, p=self._const_p(len(X)), verbose=False)

    def _mu0(self, X):
        return est_predict(self.model_.model_mu_c, X)

    def _components(self, X):
        # causalml's BaseXRegressor.predict with p = the mean training propensity, inlined
        # so that the effect models go through their boosters
        m = self.model_
        te = np.zeros((len(X), len(self.arms_)))
        for i, g in enumerate(range(1, len(self.arms_) + 1)):
            p = np.full(len(X), self.mean_propensity_[g])
            dc = est_predict(m.models_tau_c[g], X)
            dt = est_predict(m.models_tau_t[g], X)
            te[:, i] = np.ravel((p * dc + (1 - p) * dt).reshape(-1, 1))
        return self._mu0(X), te


class RLearner(UpliftLearner):
    """R-learner (Nie & Wager 2021): cross-fitted outcome model, R-loss effect model.

    Outcomes come from the marginal outcome model ``m(x)``:
    ``mu0 = m − p·tau`` and ``mu1 = m + (1 − p)·tau`` with the mean training propensity.
    """

    name = "r"

    def _fit(self, X, t, y, p):
        from causalml.inference.meta import BaseRRegressor

        self.model_ = BaseRRegressor(
            learner=lgbm_regressor(self), control_name=0, n_fold=3, random_state=self.random_state
        )
        # the regressor's __init__ hides cv_n_jobs (default -1 = a process pool per fit)
        self.model_.cv_n_jobs = 1
        self.model_.fit(X, treatment=t, y=y, p=p, verbose=False)

    def _predict(self, X):
        return self.model_.predict(X)

    def _mu0(self, X):
        return self._control(X, self._predict(X).reshape(len(X), -1))

    def _control(self, X, tau):
        # mu0 = E[y | x] - p_g * tau_g for each arm g, averaged over the arms
        m = est_predict(self.model_.model_mu, X)
        pbar = np.array([self.mean_propensity_[g] for g in range(1, len(self.arms_) + 1)])
        return (m[:, None] - pbar * tau).mean(axis=1)

    def _components(self, X):
        # _mu0 and _predict (causalml's BaseRRegressor.predict) with one effect prediction
        te = np.column_stack(
            [est_predict(self.model_.models_tau[g], X) for g in range(1, len(self.arms_) + 1)]
        )
        return self._control(X, te), te


class DRLearner(UpliftLearner):
    """Doubly-robust learner (Kennedy 2023), causalml's three-way cross-fitting."""

    name = "dr"

    def _fit(self, X, t, y, p):
        from causalml.inference.meta import BaseDRRegressor

        self.model_ = BaseDRRegressor(learner=lgbm_regressor(self), control_name=0)
        self.model_.fit(X, treatment=t, y=y, p=p, seed=self.random_state)

    def _predict(self, X):
        return self.model_.predict(X, verbose=False)

    def _mu0(self, X):
        return np.mean([est_predict(m, X) for m in self.model_.models_mu_c], axis=0)

    def _components(self, X):
        # _mu0 and causalml's BaseDRRegressor.predict (minus the unused treated-outcome
        # models) through the boosters
        mu0 = self._mu0(X)
        te = np.zeros((len(X), len(self.arms_)))
        for i, g in enumerate(range(1, len(self.arms_) + 1)):
            te[:, i] = np.r_[[est_predict(m, X) for m in self.model_.models_tau[g]]].mean(axis=0)
        return mu0, te
