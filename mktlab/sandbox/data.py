"""Logged decision data for replay: who got which arm, with what probability, and what happened.

:class:`LoggedData` wraps a DataFrame with one row per logged decision (a user offered a
campaign or not) and checks it before any replay: arms, propensities in ``(0, 1]``,
outcomes. :func:`from_world` and :func:`from_hillstrom` adapt our two anchors.
:class:`RewardModel` fits the outcome model the direct and doubly robust estimators need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mktlab.errors import DataError, SchemaError, ValidationError, require_columns

WORLD_FEATURES = (
    "age",
    "gender",
    "city",
    "tier_level",
    "recency_days",
    "frequency_90d",
    "monetary_90d",
)
HILLSTROM_FEATURES = ("recency", "history", "mens", "womens", "zip_code", "newbie", "channel")
HILLSTROM_ARMS = ("No E-Mail", "Mens E-Mail", "Womens E-Mail")


@dataclass
class LoggedData:
    """One row per logged decision.

    Parameters
    ----------
    frame : DataFrame
    arms : sequence
        Arm labels as they appear in ``action_col``; the first is the control
        ("no treatment").
    action_col, conversion_col : str
        Logged arm and the binary outcome (conversion, visit).
    propensity_col : str or None
        Probability the logging policy gave to the *logged* arm. ``None`` or a missing
        column means the log has no propensities: only on-policy replay is possible.
    revenue_col : str or None
        Revenue per row (0 when not converted).
    user_col, ts_col : str or None
        User key and decision time (rows are replayed in time order; row order if None).
    features : sequence of str, optional
        Columns models and rules may read (default: every other column).
    arm_propensities : ndarray, optional
        The logging policy's full distribution ``(n, n_arms)`` when known (e.g. a
        randomised test); derived for two arms from ``propensity_col``.
    """

    frame: pd.DataFrame
    arms: tuple = (0, 1)
    action_col: str = "treatment"
    propensity_col: str | None = "propensity"
    conversion_col: str = "converted"
    revenue_col: str | None = "revenue"
    user_col: str | None = "user_id"
    ts_col: str | None = "ts"
    features: tuple[str, ...] | None = None
    arm_propensities: np.ndarray | None = None
    name: str = "log"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.frame, pd.DataFrame):
            raise SchemaError(
                f"{self.name}: expected a pandas DataFrame, got {type(self.frame).__name__}"
            )
        self.frame = self.frame.reset_index(drop=True)
        self.arms = tuple(self.arms)
        if len(self.arms) < 2 or len(set(self.arms)) != len(self.arms):
            raise ValidationError(
                f"{self.name}: arms must be >= 2 distinct labels (control first), got {self.arms!r}"
            )
        cols = [self.action_col, self.conversion_col]
        cols += [c for c in (self.revenue_col, self.user_col, self.ts_col) if c is not None]
        require_columns(self.frame, cols, table=self.name)
        if self.propensity_col is not None and self.propensity_col not in self.frame.columns:
            self.meta["no_propensity_reason"] = f"column {self.propensity_col!r} is absent"
            self.propensity_col = None
        elif self.propensity_col is None:
            self.meta["no_propensity_reason"] = "no propensity column was given"
        index = {a: i for i, a in enumerate(self.arms)}
        act = self.frame[self.action_col]
        codes = act.map(index)
        bad = codes.isna().to_numpy()
        if bad.any():
            rows = np.flatnonzero(bad)[:5]
            raise ValidationError(
                f"{self.name}.{self.action_col}: {int(bad.sum())} row(s) hold arms not in {self.arms!r}, "
                f"e.g. rows {rows.tolist()} = {act.iloc[rows].tolist()}"
            )
        self.action = codes.to_numpy(dtype=np.int64)
        if self.propensity_col is not None:
            p = pd.to_numeric(self.frame[self.propensity_col], errors="coerce").to_numpy(
                dtype=float, na_value=np.nan
            )
            bad_p = np.flatnonzero(~np.isfinite(p) | (p <= 0) | (p > 1))
            if len(bad_p):
                raise ValidationError(
                    f"{self.name}.{self.propensity_col}: propensities must be in (0, 1]; {len(bad_p)} row(s) are "
                    f"not (0 means the logged arm could not have been chosen, > 1 is not a probability), "
                    f"e.g. rows {bad_p[:5].tolist()} = {p[bad_p[:5]].tolist()}"
                )
            self.pscore: np.ndarray | None = p
        else:
            self.pscore = None
        y = pd.to_numeric(self.frame[self.conversion_col], errors="coerce").to_numpy(
            dtype=float, na_value=np.nan
        )
        if not np.isfinite(y).all():
            raise DataError(
                f"{self.name}.{self.conversion_col}: {int((~np.isfinite(y)).sum())} missing outcome(s)"
            )
        self.conversions = y
        if self.revenue_col is not None:
            rev = pd.to_numeric(self.frame[self.revenue_col], errors="coerce").to_numpy(
                dtype=float, na_value=np.nan
            )
            if not np.isfinite(rev).all():
                raise DataError(
                    f"{self.name}.{self.revenue_col}: {int((~np.isfinite(rev)).sum())} missing value(s)"
                )
            self.revenue = rev
        else:
            self.revenue = np.zeros(len(self.frame))
        if self.features is None:
            skip = {
                self.action_col,
                self.propensity_col,
                self.conversion_col,
                self.revenue_col,
                self.user_col,
                self.ts_col,
            }
            self.features = tuple(c for c in self.frame.columns if c not in skip)
        else:
            self.features = tuple(self.features)
            require_columns(self.frame, self.features, table=self.name)
        if self.arm_propensities is not None:
            ap = np.asarray(self.arm_propensities, dtype=float)
            if ap.shape != (len(self.frame), len(self.arms)):
                raise ValidationError(
                    f"arm_propensities: expected shape {(len(self.frame), len(self.arms))}, got {ap.shape}"
                )
            self.arm_propensities = ap

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def n_arms(self) -> int:
        return len(self.arms)

    @property
    def has_propensity(self) -> bool:
        return self.pscore is not None

    @property
    def X(self) -> pd.DataFrame:
        """The feature columns."""
        return self.frame[list(self.features or ())]

    def order(self) -> np.ndarray:
        """Row positions in decision-time order (stable)."""
        if self.ts_col is None:
            return np.arange(len(self.frame))
        return np.argsort(pd.to_datetime(self.frame[self.ts_col]).to_numpy(), kind="stable")

    def logging_pi(self) -> np.ndarray | None:
        """The logging policy's distribution over arms per row, when it is known."""
        if self.arm_propensities is not None:
            return self.arm_propensities
        if self.pscore is None or self.n_arms != 2:
            return None
        pi = np.empty((len(self), 2))
        rows = np.arange(len(self))
        pi[rows, self.action] = self.pscore
        pi[rows, 1 - self.action] = 1 - self.pscore
        return pi

    def subset(self, idx: np.ndarray) -> LoggedData:
        """Rows ``idx`` as a new :class:`LoggedData`."""
        return LoggedData(
            frame=self.frame.iloc[idx].reset_index(drop=True),
            arms=self.arms,
            action_col=self.action_col,
            propensity_col=self.propensity_col,
            conversion_col=self.conversion_col,
            revenue_col=self.revenue_col,
            user_col=self.user_col,
            ts_col=self.ts_col,
            features=self.features,
            arm_propensities=None if self.arm_propensities is None else self.arm_propensities[idx],
            name=self.name,
            meta=dict(self.meta),
        )


def from_world(
    world=None, campaign_id: str = "C001", *, features: Sequence[str] = WORLD_FEATURES
) -> LoggedData:
    """Campaign ``campaign_id`` of the synthetic world as :class:`LoggedData`.

    ``treatment`` is the arm (0/1), ``propensity`` the probability of the logged arm,
    outcomes ``converted`` and ``revenue``. ``meta["truth"]`` keeps the matching rows of
    ``campaign_truth`` (potential outcomes ``y0, y1`` and probabilities ``p0, p1``).
    """
    from mktlab.datasets import load_world

    world = world if world is not None else load_world()
    log = world.campaign_log
    if campaign_id not in set(log["campaign_id"].unique()):
        raise DataError(
            f"campaign_log: no campaign {campaign_id!r}; have {sorted(log['campaign_id'].unique())}"
        )
    log = log[log["campaign_id"] == campaign_id].reset_index(drop=True)
    truth = world.campaign_truth
    truth = (
        truth[truth["campaign_id"] == campaign_id]
        .set_index("user_id")
        .loc[log["user_id"]]
        .reset_index()
    )
    data = LoggedData(log, arms=(0, 1), features=tuple(features), name=f"world:{campaign_id}")
    data.meta["truth"] = truth
    data.meta["policy"] = str(log["policy"].iloc[0]) if len(log) else ""
    return data


def from_hillstrom(df: pd.DataFrame | None = None, *, outcome: str = "visit") -> LoggedData:
    """The Hillstrom e-mail test: three arms, each logged with propensity 1/3."""
    from mktlab.datasets import load_hillstrom

    df = (load_hillstrom() if df is None else df).copy()
    df["propensity"] = 1.0 / 3.0
    df["row_id"] = np.arange(len(df))
    return LoggedData(
        df,
        arms=HILLSTROM_ARMS,
        action_col="segment",
        conversion_col=outcome,
        revenue_col="spend",
        user_col="row_id",
        ts_col=None,
        features=HILLSTROM_FEATURES,
        arm_propensities=np.full((len(df), 3), 1.0 / 3.0),
        name=f"hillstrom:{outcome}",
    )


# ---------------------------------------------------------------------- reward model
def _default_estimator(binary: bool, X: pd.DataFrame):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, SplineTransformer, StandardScaler

    num = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c]) and X[c].nunique() > 5]
    flags = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c]) and c not in num]
    cat = [c for c in X.columns if c not in num and c not in flags]
    parts = []
    if num:
        parts.append(
            ("num", make_pipeline(StandardScaler(), SplineTransformer(n_knots=4, degree=2)), num)
        )
    if flags:
        parts.append(("flag", "passthrough", flags))
    if cat:
        parts.append(("cat", OneHotEncoder(handle_unknown="ignore"), cat))
    prep = ColumnTransformer(parts)
    model = (
        LogisticRegression(C=1.0, max_iter=500, solver="newton-cholesky")
        if binary
        else Ridge(alpha=1.0)
    )
    return make_pipeline(prep, model)


class RewardModel:
    """Cross-fitted outcome model ``q(x, a)``: one regressor per arm, ``n_folds`` folds.

    Each row's prediction comes from models that did not see it, which keeps the
    doubly robust estimate free of overfitting bias.

    Parameters
    ----------
    estimator : sklearn estimator, optional
        Cloned per arm and fold. Default: splines + one-hot into a logistic regression
        (binary outcomes) or ridge (continuous outcomes).
    n_folds : int
    random_state : int
    """

    def __init__(self, estimator=None, n_folds: int = 2, random_state: int = 0):
        self.estimator = estimator
        self.n_folds = n_folds
        self.random_state = random_state

    def fit_predict(
        self, X: pd.DataFrame, action: np.ndarray, reward: np.ndarray, n_arms: int
    ) -> np.ndarray:
        """Out-of-fold predictions ``(n, n_arms)``."""
        from threadpoolctl import threadpool_limits

        if self.n_folds < 2:
            raise ValidationError(f"n_folds: expected >= 2, got {self.n_folds}")
        n = len(X)
        reward = np.asarray(reward, dtype=float)
        binary = bool(np.isin(reward, (0.0, 1.0)).all())
        base = self.estimator if self.estimator is not None else _default_estimator(binary, X)
        folds = np.random.default_rng(self.random_state).integers(0, self.n_folds, size=n)
        q = np.zeros((n, n_arms))
        # many small fits: multi-threaded BLAS only adds contention (10x slower on 2 busy cores)
        with threadpool_limits(1):
            self._fit_folds(X, action, reward, n_arms, base, binary, folds, q)
        return q

    def _fit_folds(self, X, action, reward, n_arms, base, binary, folds, q) -> None:
        from sklearn.base import clone

        for k in range(self.n_folds):
            test = folds == k
            for a in range(n_arms):
                train = (~test) & (action == a)
                y = reward[train]
                if train.sum() < 10 or np.unique(y).size < 2:
                    q[test, a] = y.mean() if len(y) else reward.mean()
                    continue
                m = clone(base).fit(X.loc[train], y)
                q[test, a] = (
                    m.predict_proba(X.loc[test])[:, 1]
                    if binary and hasattr(m, "predict_proba")
                    else m.predict(X.loc[test])
                )
