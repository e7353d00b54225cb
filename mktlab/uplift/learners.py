"""Uplift learners behind one scikit-learn style interface.

Every learner here is a thin, validated wrapper around a causalml or econml estimator:

========================  ====================================================  =========
name                      estimator                                              outcomes
========================  ====================================================  =========
``s``                     ``causalml BaseSRegressor`` (LightGBM)                 native
``t``                     ``causalml BaseTRegressor`` (LightGBM)                 native
``x``                     ``causalml BaseXRegressor`` (LightGBM)                 native
``r``                     ``causalml BaseRRegressor`` (LightGBM)                 native
``dr``                    ``causalml BaseDRRegressor`` (LightGBM)                native
``urf``                   ``causalml UpliftRandomForestClassifier``              native
``causal_forest``         ``econml CausalForestDML`` (LightGBM nuisances)        baseline
``econml_dr``             ``econml DRLearner`` (LightGBM nuisances and final)    baseline
========================  ====================================================  =========

The interface:

- ``fit(X, treatment, y, p=None)``: ``X`` a numeric DataFrame (see
  :class:`mktlab.uplift.data.FeaturePrep`), ``treatment`` the arm of each row, ``y``
  binary or continuous, ``p`` the known propensity ``P(T=1|X)`` (binary designs) — if
  omitted the learners assume a randomised design with the observed arm shares.
- ``predict(X)`` → uplift ``E[Y|T=arm,X] − E[Y|T=control,X]``: shape ``(n,)`` with one
  treated arm, ``(n, n_arms)`` with several (columns in ``arms_`` order).
- ``predict_outcomes(X)`` → ``(mu0, mu1)``: the control outcome ``(n,)`` and the treated
  outcome(s) ``mu1 = mu0 + uplift``, shaped like ``predict``. ``mu0`` comes from the
  learner's own control-outcome model; "baseline" learners above have none, so they fit
  a LightGBM model of the control arm.

Binary outcomes are modelled with LightGBM *regressors* on 0/1 (a probability estimate
under squared loss) because causalml's DR classifier feeds class labels, not
probabilities, into its pseudo-outcomes; outcome predictions are clipped to [0, 1].

Treatment coding: ``control`` (default 0) is the untreated value. Without ``arms`` the
treatment must be binary (``control`` and one other value); with ``arms`` every value must
be ``control`` or a declared arm, and every declared arm must be present.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from mktlab.errors import DataError, SchemaError, ValidationError
from mktlab.uplift.data import check_feature_frame

MIN_ROWS_PER_ARM = 2

#: Predict fitted LightGBM components through their boosters (see :func:`lgbm_predictor`).
#: ``False`` restores the scikit-learn wrappers' ``predict`` (same numbers, ~20x slower
#: per one-row call); the tests use it as the reference.
FAST_LGBM_PREDICT = True


def lgbm_predictor(est: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """A direct booster call equal to a fitted LightGBM scikit-learn model's prediction.

    For an ``LGBMRegressor`` the callable returns ``est.predict(X)``; for a binary
    ``LGBMClassifier`` ``est.predict_proba(X)[:, 1]`` (the booster's probability of class
    1). Both come from ``est.booster_.predict(X, num_threads=1)`` with the booster's
    ``best_iteration``, as the wrappers do, without their per-call ``get_params`` /
    ``check_array`` work (~0.5 ms). ``X`` must be a 2-D float array of the fitted width.

    Returns ``None`` (use the estimator itself) for anything else: not LightGBM, not
    fitted, a custom objective, a multiclass classifier, or a subclass (it may override
    ``predict``). Works on models pickled by any version of mktlab.
    """
    cls = type(est)
    if not cls.__module__.startswith("lightgbm"):
        return None
    from lightgbm import LGBMClassifier, LGBMRegressor

    if cls is LGBMClassifier:
        if getattr(est, "_n_classes", None) != 2 or getattr(est, "_objective", None) != "binary":
            return None
    elif cls is not LGBMRegressor:
        return None
    booster = getattr(est, "_Booster", None)
    if booster is None or callable(getattr(est, "_objective", None)):
        return None
    predict = booster.predict

    def call(X: np.ndarray) -> np.ndarray:
        return predict(X, num_threads=1)

    return call


def _est_predict(est: Any, X: np.ndarray) -> np.ndarray:
    """``est.predict(X)``, through the booster for LightGBM regressors."""
    # classifiers' predict() gives labels, not what lgbm_predictor returns
    if FAST_LGBM_PREDICT and not hasattr(est, "predict_proba"):
        fn = lgbm_predictor(est)
        if fn is not None:
            return fn(X)
    return est.predict(X)


def _lgbm_regressor(est: UpliftLearner, **over: Any):
    from lightgbm import LGBMRegressor

    params = dict(
        n_estimators=est.n_estimators,
        learning_rate=est.learning_rate,
        num_leaves=est.num_leaves,
        min_child_samples=est.min_child_samples,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.9,
        reg_lambda=1.0,
        random_state=est.random_state,
        n_jobs=est.n_jobs,
        verbose=-1,
    )
    params.update(over)
    return LGBMRegressor(**params)


def _lgbm_classifier(est: UpliftLearner, **over: Any):
    from lightgbm import LGBMClassifier

    params = dict(
        n_estimators=max(50, est.n_estimators // 2),
        learning_rate=est.learning_rate,
        num_leaves=est.num_leaves,
        min_child_samples=est.min_child_samples,
        random_state=est.random_state,
        n_jobs=est.n_jobs,
        verbose=-1,
    )
    params.update(over)
    return LGBMClassifier(**params)


def _finite(arr: np.ndarray, names: Sequence[Any]) -> np.ndarray:
    """``arr`` if every value is finite, else a DataError naming the columns and rows."""
    if not np.isfinite(arr).all():
        rows, cols = np.nonzero(~np.isfinite(arr))
        bad = sorted({str(names[c]) for c in cols})
        raise DataError(
            f"X: missing or infinite values in column(s) {bad} (rows {rows[:5].tolist()})"
        )
    return arr


class UpliftLearner(BaseEstimator):
    """Base class: input validation, treatment coding and the shared interface.

    Parameters
    ----------
    n_estimators : int, default 100
        Boosting rounds of each LightGBM base model (trees of a forest learner).
    learning_rate : float, default 0.06
    num_leaves : int, default 15
    min_child_samples : int, default 100
        Minimum rows per leaf; large values keep the noisy effect estimates smooth.
    control : object, default 0
        Value of ``treatment`` that marks the control group.
    arms : sequence, optional
        Declared treated arms (required for multi-treatment).
    random_state : int, default 0
    n_jobs : int, default 1
        Threads of each base model. One thread is the fast choice for data of this size:
        LightGBM's OpenMP threads spin-wait and slow down ~10x when the cores are shared.
    """

    name: ClassVar[str] = "base"
    native_outcomes: ClassVar[bool] = True
    binary_only: ClassVar[bool] = False

    def __init__(
        self,
        n_estimators: int = 100,
        learning_rate: float = 0.06,
        num_leaves: int = 15,
        min_child_samples: int = 100,
        control: Any = 0,
        arms: Sequence[Any] | None = None,
        random_state: int = 0,
        n_jobs: int = 1,
    ):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.control = control
        self.arms = arms
        self.random_state = random_state
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ validation
    def _check_X(self, X: Any, *, fitting: bool) -> np.ndarray:
        if fitting:
            if isinstance(X, pd.DataFrame):
                self.feature_names_in_ = np.array([str(c) for c in X.columns], dtype=object)
            else:
                X = np.asarray(X)
                if X.ndim != 2:
                    raise SchemaError(f"X: expected a 2-D table, got shape {X.shape}")
                self.feature_names_in_ = np.array(
                    [f"x{i}" for i in range(X.shape[1])], dtype=object
                )
                X = pd.DataFrame(X, columns=self.feature_names_in_)
        else:
            check_is_fitted(self, "arms_")
            if isinstance(X, np.ndarray) and X.dtype.kind in "fiub":
                # numeric arrays: what the DataFrame round trip below would give, without it
                return self._check_array(X)
            if not isinstance(X, pd.DataFrame):
                X = np.asarray(X)
                self._check_width(X)
                X = pd.DataFrame(X, columns=self.feature_names_in_)
            check_feature_frame(X, list(self.feature_names_in_), what="X")
        non_num = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
        if non_num:
            raise SchemaError(
                f"X: non-numeric column(s) {non_num}; encode them first (mktlab.uplift.FeaturePrep)"
            )
        return _finite(X.to_numpy(dtype=np.float64), [str(c) for c in X.columns])

    def _check_width(self, X: np.ndarray) -> None:
        if X.ndim != 2 or X.shape[1] != len(self.feature_names_in_):
            raise SchemaError(
                f"X: expected {len(self.feature_names_in_)} feature columns "
                f"{list(self.feature_names_in_)}, got shape {X.shape}"
            )

    def _check_array(self, X: np.ndarray) -> np.ndarray:
        """``_check_X`` of a numeric ndarray at predict time (same checks and messages)."""
        self._check_width(X)
        return _finite(X.astype(np.float64, copy=False), self.feature_names_in_)

    def _check_fit(self, X: Any, treatment: Any, y: Any, p: Any):
        Xa = self._check_X(X, fitting=True)
        n = len(Xa)
        t = np.asarray(treatment)
        if t.ndim != 1 or len(t) != n:
            raise ValidationError(
                f"treatment: expected a vector of length {n}, got shape {t.shape}"
            )
        yv = np.asarray(y)
        if yv.ndim != 1 or len(yv) != n:
            raise ValidationError(f"y: expected a vector of length {n}, got shape {yv.shape}")
        try:
            yv = yv.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"y: outcome must be numeric ({exc})") from exc
        if not np.isfinite(yv).all():
            bad = np.flatnonzero(~np.isfinite(yv))
            raise ValidationError(
                f"y: {len(bad)} missing (NaN) or infinite outcome(s), rows {bad[:5].tolist()}"
            )
        if pd.isna(pd.Series(t)).any():
            bad = np.flatnonzero(pd.isna(pd.Series(t)).to_numpy())
            raise ValidationError(
                f"treatment: {len(bad)} missing value(s), rows {bad[:5].tolist()}"
            )
        values = pd.unique(t)
        if self.arms is None:
            others = [v for v in values if v != self.control]
            if len(others) > 1:
                raise ValidationError(
                    f"treatment: not binary — values {sorted(map(str, values))[:10]} besides control "
                    f"{self.control!r}; declare arms=[...] for several treatments"
                )
            arms = tuple(v.item() if isinstance(v, np.generic) else v for v in others) or (1,)
        else:
            arms = tuple(self.arms)
            if len(arms) == 0 or len(set(arms)) != len(arms):
                raise ValidationError(f"arms: need distinct declared arms, got {list(arms)}")
            if self.control in arms:
                raise ValidationError(
                    f"arms: control {self.control!r} cannot also be a treated arm"
                )
            unknown = [v for v in values if v != self.control and v not in arms]
            if unknown:
                raise ValidationError(
                    f"treatment: value(s) {sorted(map(str, unknown))[:10]} not in the declared arms "
                    f"{list(arms)} (control {self.control!r})"
                )
        codes = np.zeros(n, dtype=np.int64)
        counts = {self.control: int((t == self.control).sum())}
        for k, a in enumerate(arms, start=1):
            m = t == a
            codes[m] = k
            counts[a] = int(m.sum())
        absent = [str(a) for a, c in counts.items() if c < MIN_ROWS_PER_ARM]
        if absent:
            raise ValidationError(
                f"treatment: arm(s) {absent} have fewer than {MIN_ROWS_PER_ARM} rows (counts {counts}); "
                "uplift needs both control and treated rows"
            )
        binary = bool(np.isin(yv, (0.0, 1.0)).all())
        if self.binary_only and not binary:
            raise ValidationError(f"y: {type(self).__name__} needs a binary 0/1 outcome")
        self.arms_ = arms
        self.outcome_type_ = "binary" if binary else "continuous"
        self.n_features_in_ = Xa.shape[1]
        self.arm_counts_ = counts
        pd_ = self._check_p(p, codes, len(arms))
        return Xa, codes, yv, pd_

    def _check_p(self, p: Any, codes: np.ndarray, k: int) -> dict[int, np.ndarray]:
        """Propensity of each arm against control (within the arm-vs-control rows)."""
        n = len(codes)
        if p is None:
            out = {}
            for g in range(1, k + 1):
                share = (codes == g).sum() / ((codes == g).sum() + (codes == 0).sum())
                out[g] = np.full(n, share)
        elif isinstance(p, dict):
            out = {}
            for g, a in enumerate(self.arms_, start=1):
                if a not in p:
                    raise ValidationError(f"p: no propensity for arm {a!r}")
                out[g] = np.asarray(p[a], dtype=float)
        else:
            if k != 1:
                raise ValidationError("p: pass a dict {arm: propensity} for several treated arms")
            out = {1: np.asarray(p, dtype=float)}
        for g, v in out.items():
            if v.shape != (n,):
                raise ValidationError(
                    f"p: expected {n} propensities for arm {self.arms_[g - 1]!r}, got shape {v.shape}"
                )
            if not ((v > 0) & (v < 1)).all():
                raise ValidationError(
                    f"p: propensities must lie strictly in (0, 1) (arm {self.arms_[g - 1]!r})"
                )
        self.mean_propensity_ = {g: float(v.mean()) for g, v in out.items()}
        return out

    def _shape(self, te: np.ndarray) -> np.ndarray:
        te = np.asarray(te, dtype=np.float64).reshape(len(te), -1)
        return te[:, 0] if len(self.arms_) == 1 else te

    def _clip(self, a: np.ndarray) -> np.ndarray:
        return np.clip(a, 0.0, 1.0) if self.outcome_type_ == "binary" else a

    # ------------------------------------------------------------------ interface
    def fit(self, X: Any, treatment: Any, y: Any, p: Any = None) -> UpliftLearner:
        """Fit the learner.

        Parameters
        ----------
        X : DataFrame of numeric features (or a 2-D array)
        treatment : array-like
            Arm of each row (``control`` or one of ``arms``).
        y : array-like
            Outcome; no missing values.
        p : array-like or dict, optional
            Known ``P(T=arm|X, T in {control, arm})``; a dict keyed by arm for several arms.

        Returns
        -------
        self
        """
        Xa, codes, yv, pd_ = self._check_fit(X, treatment, y, p)
        self._fit(Xa, codes, yv, pd_)
        if not self.native_outcomes:
            ctrl = codes == 0
            self.baseline_model_ = _lgbm_regressor(self).fit(Xa[ctrl], yv[ctrl])
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted uplift of each treated arm against control (see module docs for shape)."""
        Xa = self._check_X(X, fitting=False)
        return self._shape(self._predict(Xa))

    def predict_components(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(mu0, uplift)``: control outcome (clipped to [0, 1] for binary outcomes) and uplift.

        One pass for callers that need both (the registered model). A numeric 2-D ndarray
        in ``feature_names_in_`` order (what :meth:`FeaturePrep.transform_records` returns)
        is the fast path: no DataFrame round trip, and the LightGBM components of the
        S, T, X, R and DR learners (and the baseline model of the econml learners) are
        called through their boosters (:func:`lgbm_predictor`) with the same numbers.
        """
        Xa = self._check_X(X, fitting=False)
        mu0, tau = self._components(Xa)
        return self._clip(np.asarray(mu0, dtype=np.float64)), self._shape(tau)

    def predict_outcomes(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Predicted outcomes ``(mu0, mu1)`` under control and under each treated arm.

        ``mu1 = mu0 + uplift`` (clipped to [0, 1] for binary outcomes), so the outcomes
        always agree with :meth:`predict` — for the X, R and DR learners the uplift comes
        from their effect models, not from a difference of outcome models.
        """
        mu0, tau = self.predict_components(X)
        mu1 = mu0[:, None] + tau.reshape(len(mu0), -1)
        return mu0, self._clip(self._shape(mu1))

    # subclasses implement these on validated numpy input and integer codes 0..K
    def _fit(self, X: np.ndarray, t: np.ndarray, y: np.ndarray, p: dict[int, np.ndarray]) -> None:
        raise NotImplementedError

    def _predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _mu0(self, X: np.ndarray) -> np.ndarray:
        """The learner's own estimate of the control outcome."""
        raise NotImplementedError

    def _components(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # learners whose uplift reuses the control model override this to predict it once
        mu0 = self._mu0(X) if self.native_outcomes else _est_predict(self.baseline_model_, X)
        return mu0, self._predict(X)

    def _const_p(self, n: int) -> dict[int, np.ndarray]:
        return {g: np.full(n, v) for g, v in self.mean_propensity_.items()}

    def _stack(self, d: dict) -> np.ndarray:
        return np.column_stack(
            [np.asarray(d[g], dtype=np.float64) for g in range(1, len(self.arms_) + 1)]
        )


class SLearner(UpliftLearner):
    """S-learner: one LightGBM model of ``y`` on ``X`` plus the treatment indicator."""

    name = "s"

    def _fit(self, X, t, y, p):
        from causalml.inference.meta import BaseSRegressor

        self.model_ = BaseSRegressor(learner=_lgbm_regressor(self), control_name=0)
        self.model_.fit(X, treatment=t, y=y)

    def _predict(self, X):
        return self.model_.predict(X, verbose=False)

    def _components(self, X):
        X0 = np.column_stack([np.zeros(len(X)), X])
        X1 = np.column_stack([np.ones(len(X)), X])
        groups = range(1, len(self.arms_) + 1)
        y0 = {g: _est_predict(self.model_.models[g], X0) for g in groups}
        tau = np.column_stack([_est_predict(self.model_.models[g], X1) - y0[g] for g in groups])
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

        self.model_ = BaseTRegressor(learner=_lgbm_regressor(self), control_name=0)
        self.model_.fit(X, treatment=t, y=y)

    def _predict(self, X):
        return self.model_.predict(X, verbose=False)

    def _mu0(self, X):
        return _est_predict(self.model_.model_c, X)

    def _components(self, X):
        mu0 = self._mu0(X)
        groups = range(1, len(self.arms_) + 1)
        return mu0, np.column_stack(
            [_est_predict(self.model_.models_t[g], X) - mu0 for g in groups]
        )


class XLearner(UpliftLearner):
    """X-learner (Künzel et al. 2019) with LightGBM outcome and effect models.

    The effect models are blended with the mean training propensity at predict time.
    """

    name = "x"

    def _fit(self, X, t, y, p):
        from causalml.inference.meta import BaseXRegressor

        self.model_ = BaseXRegressor(learner=_lgbm_regressor(self), control_name=0)
        self.model_.fit(X, treatment=t, y=y, p=p)

    def _predict(self, X):
        return self.model_.predict(X, p=self._const_p(len(X)), verbose=False)

    def _mu0(self, X):
        return _est_predict(self.model_.model_mu_c, X)

    def _components(self, X):
        # causalml's BaseXRegressor.predict with p = the mean training propensity, inlined
        # so that the effect models go through their boosters
        m = self.model_
        te = np.zeros((len(X), len(self.arms_)))
        for i, g in enumerate(range(1, len(self.arms_) + 1)):
            p = np.full(len(X), self.mean_propensity_[g])
            dc = _est_predict(m.models_tau_c[g], X)
            dt = _est_predict(m.models_tau_t[g], X)
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
            learner=_lgbm_regressor(self), control_name=0, n_fold=3, random_state=self.random_state
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
        m = _est_predict(self.model_.model_mu, X)
        pbar = np.array([self.mean_propensity_[g] for g in range(1, len(self.arms_) + 1)])
        return (m[:, None] - pbar * tau).mean(axis=1)

    def _components(self, X):
        # _mu0 and _predict (causalml's BaseRRegressor.predict) with one effect prediction
        te = np.column_stack(
            [_est_predict(self.model_.models_tau[g], X) for g in range(1, len(self.arms_) + 1)]
        )
        return self._control(X, te), te


class DRLearner(UpliftLearner):
    """Doubly-robust learner (Kennedy 2023), causalml's three-way cross-fitting."""

    name = "dr"

    def _fit(self, X, t, y, p):
        from causalml.inference.meta import BaseDRRegressor

        self.model_ = BaseDRRegressor(learner=_lgbm_regressor(self), control_name=0)
        self.model_.fit(X, treatment=t, y=y, p=p, seed=self.random_state)

    def _predict(self, X):
        return self.model_.predict(X, verbose=False)

    def _mu0(self, X):
        return np.mean([_est_predict(m, X) for m in self.model_.models_mu_c], axis=0)

    def _components(self, X):
        # _mu0 and causalml's BaseDRRegressor.predict (minus the unused treated-outcome
        # models) through the boosters
        mu0 = self._mu0(X)
        te = np.zeros((len(X), len(self.arms_)))
        for i, g in enumerate(range(1, len(self.arms_) + 1)):
            te[:, i] = np.r_[[_est_predict(m, X) for m in self.model_.models_tau[g]]].mean(axis=0)
        return mu0, te


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
        model_t = _lgbm_classifier(self) if varying else DummyClassifier(strategy="prior")
        n_trees = max(4, int(np.ceil(self.n_estimators / 4)) * 4)
        self.model_ = CausalForestDML(
            model_y=_lgbm_regressor(self),
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
        model_p = _lgbm_classifier(self) if varying else DummyClassifier(strategy="prior")
        self.model_ = _DR(
            model_propensity=model_p,
            model_regression=_lgbm_regressor(self),
            model_final=_lgbm_regressor(self),
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


LEARNERS: dict[str, type[UpliftLearner]] = {
    cls.name: cls
    for cls in (
        SLearner,
        TLearner,
        XLearner,
        RLearner,
        DRLearner,
        UpliftForest,
        CausalForest,
        EconDRLearner,
    )
}


def make_learner(name: str, **params: Any) -> UpliftLearner:
    """Build learner ``name`` (one of :data:`LEARNERS`) with ``params``."""
    if name not in LEARNERS:
        raise ValidationError(f"learner: unknown {name!r}; choose from {sorted(LEARNERS)}")
    return LEARNERS[name](**params)


def default_learners(
    *,
    names: Sequence[str] | None = None,
    n_estimators: int = 100,
    forest_estimators: int = 100,
    random_state: int = 0,
    control: Any = 0,
    arms: Sequence[Any] | None = None,
    binary: bool = True,
) -> dict[str, UpliftLearner]:
    """The candidate set for model selection, one instance per learner name.

    ``forest_estimators`` sizes the uplift and causal forests; ``binary=False`` drops the
    uplift random forest (it needs a binary outcome).
    """
    names = list(names) if names is not None else list(LEARNERS)
    out: dict[str, UpliftLearner] = {}
    for nm in names:
        if nm == "urf" and not binary:
            continue
        n_est = forest_estimators if nm in {"urf", "causal_forest"} else n_estimators
        out[nm] = make_learner(
            nm, n_estimators=n_est, random_state=random_state, control=control, arms=arms
        )
    return out
