"""The deployable uplift model: feature preparation + fitted learner + quadrant thresholds.

:class:`UpliftModel` is what gets registered in MLflow (as ``uplift@champion``). Its
``predict`` takes a DataFrame of *raw* features — exactly the columns, in the order,
seen at training — and returns ``uplift`` (the learner's estimate, what targeting ranks
by), ``p0`` (outcome without treatment), ``p1 = p0 + uplift`` (clipped to [0, 1] for
binary outcomes) and ``quadrant`` per row
(plus ``best_arm`` and ``uplift_<arm>`` columns for several treated arms). Missing,
extra or reordered columns raise :class:`~mktlab.errors.SchemaError`.

A categorical value never seen in training encodes as "none of the known levels" and is
scored without complaint; :func:`unseen_levels` (and :meth:`UpliftModel.unseen_levels`)
say per row which values those were, so an answer can report them.
"""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mktlab.errors import SchemaError
from mktlab.uplift.data import FeaturePrep, UpliftData, _category_strings
from mktlab.uplift.learners import UpliftLearner
from mktlab.uplift.quadrants import QuadrantThresholds, assign_quadrants

OUTPUT_COLUMNS = ["uplift", "p0", "p1", "quadrant"]


def unseen_levels(
    records: Sequence[Mapping[str, Any]] | pd.DataFrame, levels: Mapping[str, Sequence[str]]
) -> list[dict[str, str]]:
    """Per row, the categorical values not among the levels seen in training.

    Values are compared exactly as :class:`~mktlab.uplift.data.FeaturePrep` encodes them
    (as ``str`` of the column's values), so a value listed here is one the model scored
    as "no known level". Missing values and columns absent from a row are not listed
    (they are refused or encoded by the model itself).

    Parameters
    ----------
    records : sequence of mappings or DataFrame
        Raw feature rows.
    levels : mapping of str to sequence of str
        Categorical column -> levels seen in training (``FeaturePrep.levels_``, or the
        ``categorical`` entry of a served model's input schema).

    Returns
    -------
    list of dict
        One dict per row, ``{column: value}`` for each unseen value; ``{}`` when none.
    """
    if isinstance(records, pd.DataFrame):
        records = records.to_dict("records")
    rows = list(records)
    out: list[dict[str, str]] = [{} for _ in rows]
    for c, lv in levels.items():
        known = {str(v) for v in lv}
        present = [i for i, r in enumerate(rows) if isinstance(r, Mapping) and c in r]
        if not present:
            continue
        strings = _category_strings(c, [rows[i][c] for i in present])
        for i, v in zip(present, strings):
            if type(v) is str and v not in known and v != "nan":
                out[i][c] = v
    return out


class UpliftModel:
    """Feature preparation, a fitted learner and quadrant thresholds in one object.

    Parameters
    ----------
    prep : FeaturePrep
        Fitted feature preparation.
    learner : UpliftLearner
        Learner fitted on ``prep``'s output.
    thresholds : QuadrantThresholds, optional
    info : dict, optional
        Free-form description (data set, metrics) kept with the model.
    """

    def __init__(
        self,
        prep: FeaturePrep,
        learner: UpliftLearner,
        thresholds: QuadrantThresholds | None = None,
        info: dict[str, Any] | None = None,
    ):
        self.prep = prep
        self.learner = learner
        self.thresholds = thresholds or QuadrantThresholds()
        self.info = dict(info or {})

    @property
    def input_columns(self) -> list[str]:
        """Raw feature columns ``predict`` requires, in order."""
        return list(self.prep.input_columns_)

    @property
    def arms(self) -> tuple:
        return tuple(self.learner.arms_)

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Uplift, outcomes and quadrant of each row of raw features ``X``.

        Raises
        ------
        SchemaError
            ``X`` is not a DataFrame with exactly :attr:`input_columns` in that order.
        """
        if not isinstance(X, pd.DataFrame):
            raise SchemaError(
                f"input: expected a pandas DataFrame of {self.input_columns}, got {type(X).__name__}"
            )
        feats = self.prep.transform(X)
        mu0, taus = self.learner.predict_components(feats)
        return pd.DataFrame(self._outputs(mu0, taus), index=X.index)

    def predict_records(
        self, records: Sequence[Mapping[str, Any]], *, as_frame: bool = True
    ) -> pd.DataFrame | dict[str, np.ndarray]:
        """:meth:`predict` of raw rows given as mappings (the serving fast path).

        Same numbers, columns and dtypes as ``predict(pd.DataFrame(records))`` without any
        DataFrame on the way: :meth:`FeaturePrep.transform_records` and the learner's
        ndarray path (LightGBM components called through their boosters). Each record
        must hold exactly :attr:`input_columns` (key order does not matter).

        Parameters
        ----------
        records : sequence of mappings
            One mapping of column -> raw value per row.
        as_frame : bool, default True
            ``False`` returns a dict of 1-D numpy arrays instead, keyed by the same column
            names in the same order (``uplift, p0, p1, quadrant`` [``best_arm``,
            ``uplift_<arm>`` ...]): float64 arrays, object arrays of str for ``quadrant``
            and ``best_arm``. Cheaper for a handful of rows.

        Raises
        ------
        SchemaError
            No records, or a record with missing/extra columns or bad values (named).
        DataError
            Infinite numeric values.
        """
        feats = self.prep.transform_records(records)
        if len(feats) == 0:
            raise SchemaError(f"input: no records given; expected rows of {self.input_columns}")
        mu0, taus = self.learner.predict_components(feats)
        cols = self._outputs(mu0, taus)
        return pd.DataFrame(cols) if as_frame else cols

    def _outputs(self, mu0: np.ndarray, taus: np.ndarray) -> dict[str, np.ndarray]:
        """Output columns, in order, from the learner's ``(mu0, uplift)``."""
        binary = self.learner.outcome_type_ == "binary"
        if taus.ndim == 1:
            tau = taus
        else:
            best = taus.argmax(axis=1)
            tau = taus[np.arange(len(best)), best]
        p1 = mu0 + tau
        out = {
            "uplift": tau,
            "p0": mu0,
            "p1": np.clip(p1, 0, 1) if binary else p1,
            "quadrant": assign_quadrants(mu0, tau, self.thresholds),
        }
        if taus.ndim > 1:
            out["best_arm"] = np.asarray([str(a) for a in self.arms], dtype=object)[best]
            for j, a in enumerate(self.arms):
                out[f"uplift_{a}"] = taus[:, j]
        return out

    def unseen_levels(
        self, records: Sequence[Mapping[str, Any]] | pd.DataFrame
    ) -> list[dict[str, str]]:
        """Per row, categorical values unseen in training (see :func:`unseen_levels`)."""
        return unseen_levels(records, self.prep.levels_)

    def predict_uplift(self, X: pd.DataFrame) -> np.ndarray:
        """Just the learner's uplift (``(n,)`` or ``(n, n_arms)``) for raw features ``X``."""
        return self.learner.predict(self.prep.transform(X))

    def __repr__(self) -> str:
        return f"UpliftModel({type(self.learner).__name__}, arms={self.arms}, inputs={len(self.input_columns)})"


def fit_uplift_model(
    data: UpliftData,
    learner: UpliftLearner,
    *,
    thresholds: QuadrantThresholds | None = None,
    info: dict[str, Any] | None = None,
) -> UpliftModel:
    """Fit feature preparation and ``learner`` on all of ``data``; return the model."""
    prep = FeaturePrep().fit(data.X)
    learner.fit(prep.transform(data.X), data.treatment, data.y, p=data.propensity)
    return UpliftModel(prep, learner, thresholds, info={"data": data.name, **(info or {})})


def pip_requirements() -> list[str]:
    """Pinned requirements of a logged uplift model (avoids MLflow's inference subprocess)."""
    reqs = []
    for pkg in (
        "mlflow",
        "pandas",
        "numpy",
        "scikit-learn",
        "lightgbm",
        "causalml",
        "econml",
        "cloudpickle",
    ):
        try:
            reqs.append(f"{pkg}=={md.version(pkg)}")
        except md.PackageNotFoundError:
            continue
    return reqs


def log_model(
    model: UpliftModel, *, registered_model_name: str | None = None, name: str = "model"
) -> Any:
    """Log ``model`` to the active MLflow run as a pyfunc (optionally registering it).

    Returns the MLflow ``ModelInfo``. No MLflow signature is attached on purpose: MLflow
    would silently reorder columns, and the model itself validates its input.
    """
    from mktlab import tracking

    return tracking.log_python_predictor(
        model,
        name=name,
        registered_model_name=registered_model_name,
        pip_requirements=pip_requirements(),
        metadata={
            "input_columns": model.input_columns,
            "output_columns": OUTPUT_COLUMNS,
            "learner": type(model.learner).__name__,
            "arms": [str(a) for a in model.arms],
            "quadrant_thresholds": {
                "uplift": model.thresholds.uplift,
                "response": model.thresholds.response,
            },
        },
    )
