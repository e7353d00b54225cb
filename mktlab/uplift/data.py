"""Uplift data sets and feature preparation.

Every source (Hillstrom, the synthetic world, simulated data) is turned into one
:class:`UpliftData`: raw features ``X``, a treatment vector, an outcome and, where the
design is known, the propensity ``P(T=1|X)``. :class:`FeaturePrep` turns raw features
into the numeric matrix the learners see (one-hot categoricals, a stable column order
recorded at ``fit``), so the same transformation runs in training, in a notebook and
inside the registered MLflow model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mktlab.errors import SchemaError, ValidationError, require_columns

HILLSTROM_FEATURES = [
    "recency", "history_segment", "history", "mens", "womens", "zip_code", "newbie", "channel",
]  # fmt: skip
HILLSTROM_CONTROL = "No E-Mail"
WORLD_FEATURES = [
    "age", "gender", "city", "tier_level", "recency_days", "frequency_90d", "monetary_90d",
]  # fmt: skip


def check_feature_frame(
    X: object, expected: Sequence[str], *, what: str = "features"
) -> pd.DataFrame:
    """Check that ``X`` is a DataFrame whose columns are exactly ``expected``, in order.

    Raises
    ------
    SchemaError
        Naming missing, unexpected or out-of-order columns.
    """
    if not isinstance(X, pd.DataFrame):
        raise SchemaError(f"{what}: expected a pandas DataFrame, got {type(X).__name__}")
    cols = [str(c) for c in X.columns]
    expected = list(expected)
    if cols == expected:
        return X
    missing = [c for c in expected if c not in cols]
    extra = [c for c in cols if c not in expected]
    if missing or extra:
        raise SchemaError(
            f"{what}: missing column(s) {missing or 'none'}, unexpected column(s) {extra or 'none'}; "
            f"expected {expected}"
        )
    first = next(i for i, (a, b) in enumerate(zip(cols, expected)) if a != b)
    raise SchemaError(
        f"{what}: columns are in a different order than at fit time (position {first}: got "
        f"{cols[first]!r}, expected {expected[first]!r}); expected order {expected}"
    )


class FeaturePrep:
    """One-hot encode categorical columns and fix the column order.

    Parameters
    ----------
    categorical : sequence of str, optional
        Columns to one-hot encode. ``None`` means every non-numeric column.
    max_levels : int, default 50
        Refuse categoricals with more distinct values (an id column passed by mistake).

    Attributes
    ----------
    input_columns_ : list of str
        Raw columns, in the order ``transform`` requires.
    levels_ : dict of str -> list of str
        Levels seen at fit per categorical column (unseen levels encode as all zeros).
    feature_names_ : list of str
        Output column order.
    """

    def __init__(self, categorical: Sequence[str] | None = None, max_levels: int = 50):
        self.categorical = categorical
        self.max_levels = max_levels

    def fit(self, X: pd.DataFrame) -> FeaturePrep:
        """Learn the columns, categorical levels and output order from ``X``."""
        if not isinstance(X, pd.DataFrame):
            raise SchemaError(f"features: expected a pandas DataFrame, got {type(X).__name__}")
        cols = [str(c) for c in X.columns]
        if len(set(cols)) != len(cols):
            raise SchemaError(f"features: duplicate column names in {cols}")
        if self.categorical is None:
            cats = [c for c in cols if not pd.api.types.is_numeric_dtype(X[c])]
        else:
            require_columns(X, self.categorical, table="features")
            cats = list(self.categorical)
        self.input_columns_ = cols
        self.levels_: dict[str, list[str]] = {}
        names: list[str] = []
        for c in cols:
            if c in cats:
                levels = sorted(X[c].astype(str).unique().tolist())
                if len(levels) > self.max_levels:
                    raise ValidationError(
                        f"features: column {c!r} has {len(levels)} levels (> max_levels="
                        f"{self.max_levels}); is it an identifier?"
                    )
                self.levels_[c] = levels
                names += [f"{c}={lv}" for lv in levels]
            else:
                names.append(c)
        self.feature_names_ = names
        self.__dict__.pop("_records_plan", None)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Return the numeric feature frame (float32 columns in ``feature_names_`` order).

        Raises
        ------
        SchemaError
            ``X`` lacks columns, has extra ones, or has them in another order.
        DataError
            A numeric column holds missing or non-numeric values.
        """
        if not hasattr(self, "feature_names_"):
            raise ValidationError("FeaturePrep is not fitted; call fit first")
        check_feature_frame(X, self.input_columns_)
        n = len(X)
        out = np.empty((n, len(self.feature_names_)), dtype=np.float32)
        j = 0
        for c in self.input_columns_:
            col = X[c]
            if c in self.levels_:
                vals = col.astype(str).to_numpy()
                for lv in self.levels_[c]:
                    out[:, j] = vals == lv
                    j += 1
            else:
                try:
                    arr = col.to_numpy(dtype=np.float32)
                except (TypeError, ValueError) as exc:
                    raise SchemaError(
                        f"features: column {c!r} is not numeric ({col.dtype})"
                    ) from exc
                out[:, j] = _no_missing(arr, c)
                j += 1
        return pd.DataFrame(out, columns=self.feature_names_, index=X.index)

    def fit_transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """``fit(X).transform(X)``."""
        return self.fit(X).transform(X)

    # ------------------------------------------------------------------ records
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_records_plan", None)  # a cache, rebuilt on first use
        return state

    def _plan(self) -> list[tuple[str, int, dict[str, int] | None]]:
        plan = self.__dict__.get("_records_plan")
        if plan is None:
            plan, j = [], 0
            for c in self.input_columns_:
                levels = self.levels_.get(c)
                if levels is None:
                    plan.append((c, j, None))
                    j += 1
                else:
                    plan.append((c, j, {lv: k for k, lv in enumerate(levels)}))
                    j += len(levels)
            self._records_plan = plan
        return plan

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """:meth:`transform` of raw rows given as mappings, as a float32 ndarray.

        Returns the same numbers as ``transform(pd.DataFrame(records)).to_numpy()``
        (columns in ``feature_names_`` order) without building a DataFrame: the serving
        path for a handful of rows. Every record must hold exactly :attr:`input_columns_`
        (in any key order). Values are interpreted as pandas would interpret the column:
        categorical values are compared as ``str`` of the column's values (a float column's
        ``1`` is ``'1.0'``; missing values and unseen levels encode as all zeros); numeric
        columns must hold numbers. Columns of unusual value types (mixed types, ``None``,
        numpy scalars) are converted by pandas itself.

        Raises
        ------
        SchemaError
            A record is not a mapping, lacks columns or has extra ones (named with the
            row); a numeric column holds a non-numeric value (column, row and value
            named) or a missing value (column and rows named).
        """
        if not hasattr(self, "feature_names_"):
            raise ValidationError("FeaturePrep is not fitted; call fit first")
        if isinstance(records, Mapping | str | bytes):
            raise SchemaError(
                f"features: expected a sequence of records (mappings), got {type(records).__name__}"
            )
        if not isinstance(records, Sequence):
            records = list(records)
        plan = self._plan()
        cols = self.input_columns_
        ncols = len(cols)
        for i, r in enumerate(records):
            if not isinstance(r, Mapping):
                raise SchemaError(
                    f"features: row {i} is a {type(r).__name__}, not a mapping of column -> value"
                )
            if len(r) != ncols or not all(c in r for c in cols):
                missing = [c for c in cols if c not in r]
                extra = [k for k in r if k not in cols]
                raise SchemaError(
                    f"features: row {i}: missing column(s) {missing or 'none'}, unexpected "
                    f"column(s) {extra or 'none'}; expected {cols}"
                )
        n = len(records)
        out = np.zeros((n, len(self.feature_names_)), dtype=np.float32)
        for c, j, index in plan:
            vals = [r[c] for r in records]
            if index is None:
                out[:, j] = _numeric_values(c, vals)
            else:
                for i, v in enumerate(_category_strings(c, vals)):
                    k = index.get(v) if type(v) is str else None
                    if k is not None:
                        out[i, j + k] = 1.0
        return out


_MAX_EXACT_INT = 2**53


def _pandas_column(c: str, vals: list) -> pd.Series:
    """The column as ``pd.DataFrame.from_records`` / ``pd.DataFrame(records)`` infers it."""
    return pd.DataFrame.from_records([[v] for v in vals], columns=[c])[c]


def _numeric_values(c: str, vals: list) -> np.ndarray:
    """float32 values of a numeric column, as ``transform`` converts them."""
    types = {type(v) for v in vals}
    arr: np.ndarray | None = None
    if types <= {float, int}:
        if types == {int}:  # pandas: an int64 column, cast to float32
            try:
                arr = np.array(vals, dtype=np.int64).astype(np.float32)
            except OverflowError:
                arr = None
        elif float not in types or all(
            type(v) is float or -_MAX_EXACT_INT < v < _MAX_EXACT_INT for v in vals
        ):  # pandas: a float64 column, cast to float32
            arr = np.array(vals, dtype=np.float64).astype(np.float32)
    if arr is None:
        col = _pandas_column(c, vals)
        try:
            arr = col.to_numpy(dtype=np.float32)
        except (TypeError, ValueError) as exc:
            where = ""
            for i, v in enumerate(vals):
                try:
                    np.asarray([v], dtype=object).astype(np.float32)
                except (TypeError, ValueError):
                    where = f"; row {i} holds {v!r}"
                    break
            raise SchemaError(
                f"features: column {c!r} is not numeric ({col.dtype}{where})"
            ) from exc
    return _no_missing(arr, c)


def _no_missing(arr: np.ndarray, column: str) -> np.ndarray:
    """``arr`` if it holds no NaN, else a SchemaError naming the column and rows."""
    if np.isnan(arr).any():
        bad = np.flatnonzero(np.isnan(arr))[:5].tolist()
        raise SchemaError(f"features: column {column!r} has missing values (rows {bad})")
    return arr


def _category_strings(c: str, vals: list) -> list:
    """``col.astype(str)`` of a categorical column: str per value, NaN where missing."""
    types = {type(v) for v in vals}
    if len(types) == 1:
        t = next(iter(types))
        if t is str:
            return vals
        if t is int or t is bool:  # int64 / bool column
            return [str(v) for v in vals]
        if t is float:  # float64 column; NaN stays missing
            return [str(v) if v == v else None for v in vals]
    return list(_pandas_column(c, vals).astype(str).to_numpy())


@dataclass
class UpliftData:
    """Features, treatment, outcome (and optional propensity / truth) of one experiment.

    Attributes
    ----------
    X : DataFrame
        Raw features (pass through :class:`FeaturePrep`).
    treatment : ndarray
        Arm of each row; ``control`` marks the untreated.
    y : ndarray
        Outcome (binary or continuous).
    control : object
        The control arm's value in ``treatment``.
    arms : tuple
        Treated arms, in a stable order.
    propensity : ndarray, optional
        ``P(T=1|X)`` of the treated arm for binary designs (known for experiments).
    truth : DataFrame, optional
        ``p0, p1, true_uplift, quadrant`` when the data are synthetic.
    name : str
        Where the data came from (logged as a tag).
    """

    X: pd.DataFrame
    treatment: np.ndarray
    y: np.ndarray
    control: object = 0
    arms: tuple = (1,)
    propensity: np.ndarray | None = None
    truth: pd.DataFrame | None = None
    name: str = "data"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.X)
        self.treatment = np.asarray(self.treatment)
        self.y = np.asarray(self.y, dtype=float)
        for what, arr in (
            ("treatment", self.treatment),
            ("y", self.y),
            ("propensity", self.propensity),
        ):
            if arr is not None and len(arr) != n:
                raise ValidationError(f"{what}: length {len(arr)} != {n} rows of X")
        if self.truth is not None and len(self.truth) != n:
            raise ValidationError(f"truth: length {len(self.truth)} != {n} rows of X")

    def __len__(self) -> int:
        return len(self.X)

    def subset(self, idx: np.ndarray) -> UpliftData:
        """Rows ``idx`` (positions) as a new :class:`UpliftData`."""
        return UpliftData(
            X=self.X.iloc[idx].reset_index(drop=True),
            treatment=self.treatment[idx],
            y=self.y[idx],
            control=self.control,
            arms=self.arms,
            propensity=None if self.propensity is None else self.propensity[idx],
            truth=None if self.truth is None else self.truth.iloc[idx].reset_index(drop=True),
            name=self.name,
            meta=dict(self.meta),
        )

    @property
    def w(self) -> np.ndarray:
        """Binary treatment indicator (1 = any treated arm)."""
        return (self.treatment != self.control).astype(np.int8)


def hillstrom_data(
    df: pd.DataFrame | None = None,
    *,
    arms: Sequence[str] = ("Womens E-Mail",),
    outcome: str = "visit",
) -> UpliftData:
    """Hillstrom as :class:`UpliftData`: the chosen e-mail arm(s) against No E-Mail.

    Parameters
    ----------
    df : DataFrame, optional
        The Hillstrom table; loaded with :func:`mktlab.datasets.load_hillstrom` if omitted.
    arms : sequence of str, default ("Womens E-Mail",)
        Treated arms to keep (``"Mens E-Mail"``, ``"Womens E-Mail"`` or both).
    outcome : {"visit", "conversion", "spend"}
        Outcome column.

    Returns
    -------
    UpliftData
        Binary treatment (0/1) for one arm, the arm names for several. The propensity is
        the arm's share among kept rows (the test randomised a third to each arm).
    """
    if df is None:
        from mktlab.datasets import load_hillstrom

        df = load_hillstrom()
    require_columns(df, [*HILLSTROM_FEATURES, "segment", outcome], table="hillstrom")
    known = {"Mens E-Mail", "Womens E-Mail"}
    bad = [a for a in arms if a not in known]
    if bad or not arms:
        raise ValidationError(f"arms: {bad or list(arms)} not among {sorted(known)}")
    if outcome not in {"visit", "conversion", "spend"}:
        raise ValidationError(f"outcome: {outcome!r} is not one of visit, conversion, spend")
    keep = df["segment"].isin([HILLSTROM_CONTROL, *arms]).to_numpy()
    sub = df.loc[keep].reset_index(drop=True)
    seg = sub["segment"].astype(str).to_numpy()
    if len(arms) == 1:
        treatment = (seg == arms[0]).astype(np.int8)
        control: object = 0
        arm_values: tuple = (1,)
        propensity = np.full(len(sub), treatment.mean())
    else:
        treatment = seg.astype(object)
        control = HILLSTROM_CONTROL
        arm_values = tuple(arms)
        propensity = None
    return UpliftData(
        X=sub[HILLSTROM_FEATURES].copy(),
        treatment=treatment,
        y=sub[outcome].to_numpy(dtype=float),
        control=control,
        arms=arm_values,
        propensity=propensity,
        name=f"hillstrom:{'+'.join(arms)}:{outcome}",
        meta={"source": "hillstrom", "arms": list(arms), "outcome": outcome},
    )


def world_data(
    world: object = None, *, campaign_id: str = "C001", outcome: str = "converted"
) -> UpliftData:
    """One campaign of the synthetic world as :class:`UpliftData`, with its truth.

    Parameters
    ----------
    world : mktlab.datasets.World, optional
        Loaded with :func:`mktlab.datasets.load_world` if omitted.
    campaign_id : str, default "C001"
        ``C001`` was randomised 50/50; ``C002`` was targeted by a rule (propensities vary).
    outcome : {"converted", "revenue"}
        Outcome column.

    Returns
    -------
    UpliftData
        ``propensity`` is ``P(T=1|X)`` (the log stores the probability of the *logged*
        action, so it is flipped for control rows); ``truth`` holds ``p0, p1,
        true_uplift, quadrant``.
    """
    if world is None:
        from mktlab.datasets import load_world

        world = load_world()
    log = world.campaign_log
    truth = world.campaign_truth
    require_columns(
        log,
        ["campaign_id", "user_id", "treatment", "propensity", outcome, *WORLD_FEATURES],
        table="campaign_log",
    )
    require_columns(
        truth,
        ["campaign_id", "user_id", "p0", "p1", "true_uplift", "quadrant"],
        table="campaign_truth",
    )
    log = log.loc[log["campaign_id"] == campaign_id].reset_index(drop=True)
    if log.empty:
        known = sorted(world.campaign_log["campaign_id"].unique().tolist())
        raise ValidationError(f"campaign_id: {campaign_id!r} not in campaign_log (have {known})")
    tr = truth.loc[
        truth["campaign_id"] == campaign_id, ["user_id", "p0", "p1", "true_uplift", "quadrant"]
    ]
    tr = log[["user_id"]].merge(tr, on="user_id", how="left", validate="one_to_one")
    t = log["treatment"].to_numpy().astype(np.int8)
    logged = log["propensity"].to_numpy(dtype=float)
    p_treat = np.where(t == 1, logged, 1.0 - logged)
    return UpliftData(
        X=log[WORLD_FEATURES].copy(),
        treatment=t,
        y=log[outcome].to_numpy(dtype=float),
        control=0,
        arms=(1,),
        propensity=p_treat,
        truth=tr.drop(columns=["user_id"]),
        name=f"world:{campaign_id}:{outcome}",
        meta={"source": "world", "campaign_id": campaign_id, "outcome": outcome,
              "user_id": log["user_id"].to_numpy()},
    )  # fmt: skip


def simulate(
    n: int = 20_000,
    *,
    seed: int = 0,
    n_features: int = 5,
    base_rate: float = 0.1,
    effect: float = 0.15,
    binary: bool = True,
    p_treat: float = 0.5,
    n_arms: int = 1,
) -> UpliftData:
    """Simulated randomised experiment with a planted, known effect.

    The effect is ``effect * 1[x0 > 0] - effect/2 * 1[x1 > 1]`` (persuadables in half
    the population, a sleeping-dog pocket in the top ~16% of ``x1``); the baseline
    rises with ``x2``. Arm ``k`` of several has the effect scaled by ``k``. A categorical
    column ``region`` (no effect) exercises the one-hot path.

    Returns
    -------
    UpliftData
        With ``truth`` holding ``p0, p1, true_uplift`` (for ``binary=False``, expected
        outcomes) for the first arm.
    """
    if n < 100:
        raise ValidationError(f"n: need at least 100 rows, got {n}")
    rng = np.random.default_rng(seed)
    Xn = rng.normal(size=(n, max(n_features, 3)))
    X = pd.DataFrame(Xn, columns=[f"x{i}" for i in range(Xn.shape[1])])
    X["region"] = pd.Series(rng.choice(np.array(["north", "south", "east"]), size=n), dtype=object)
    tau = effect * (Xn[:, 0] > 0) - effect / 2 * (Xn[:, 1] > 1)
    p0 = np.clip(base_rate * (1 + 0.5 * np.tanh(Xn[:, 2])), 0.01, 0.99 - effect)
    if n_arms == 1:
        t = (rng.random(n) < p_treat).astype(np.int8)
        arms: tuple = (1,)
        scale = t.astype(float)
    else:
        t = rng.integers(0, n_arms + 1, size=n).astype(np.int8)
        arms = tuple(range(1, n_arms + 1))
        scale = t.astype(float)
    p1 = np.clip(p0 + tau, 0.0, 1.0)
    mean = np.clip(p0 + tau * scale, 0.0, 1.0)
    if binary:
        y = (rng.random(n) < mean).astype(float)
    else:
        y = 10 * mean + rng.normal(scale=1.0, size=n)
        p0, p1 = 10 * p0, 10 * p1
    truth = pd.DataFrame({"p0": p0, "p1": p1, "true_uplift": p1 - p0})
    return UpliftData(
        X=X,
        treatment=t,
        y=y,
        control=0,
        arms=arms,
        propensity=np.full(n, p_treat) if n_arms == 1 else None,
        truth=truth,
        name=f"simulated:{n}:{seed}",
        meta={"source": "simulated"},
    )
