"""The uplift learners' shared base: validation, arms, outcome models, the LightGBM fast path.

:class:`UpliftLearner` validates ``fit`` / ``predict`` input and handles arms, propensities
and the control-outcome model once for every learner; subclasses (in
:mod:`~mktlab.uplift.meta_learners` and :mod:`~mktlab.uplift.forests`) implement
``_fit`` / ``_predict`` (and ``_mu0`` / ``_components`` when their estimator has native
outcome models). See :mod:`mktlab.uplift.learners` for the interface and the catalogue.
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


def est_predict(est: Any, X: np.ndarray) -> np.ndarray:
    """``est.predict(X)``, through the booster for LightGBM regressors (if :data:`FAST_LGBM_PREDICT`)."""
    # classifiers' predict() gives labels, not what lgbm_predictor returns
    if FAST_LGBM_PREDICT and not hasattr(est, "predict_proba"):
        fn = lgbm_predictor(est)
        if fn is not None:
            return fn(X)
    return est.predict(X)


def lgbm_regressor(est: UpliftLearner, **over: Any):
    """A LightGBM regressor sized by the learner's parameters (``over`` overrides)."""
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


def lgbm_classifier(est: UpliftLearner, **over: Any):
    """A LightGBM classifier (e.g. a propensity model) sized by the learner's parameters."""
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
            self.baseline_model_ = lgbm_regressor(self).fit(Xa[ctrl], yv[ctrl])
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
        mu0 = self._mu0(X) if self.native_outcomes else est_predict(self.baseline_model_, X)
        return mu0, self._predict(X)

    def _const_p(self, n: int) -> dict[int, np.ndarray]:
        return {g: np.full(n, v) for g, v in self.mean_propensity_.items()}

    def _stack(self, d: dict) -> np.ndarray:
        return np.column_stack(
            [np.asarray(d[g], dtype=np.float64) for g in range(1, len(self.arms_) + 1)]
        )
