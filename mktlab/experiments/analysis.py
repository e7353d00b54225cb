"""Analyse an experiment: every metric × treatment arm against the control.

Two entry points over the same statistics (:mod:`mktlab.experiments.stats`):

* :func:`analyze` takes one row per unit (an arm column and metric columns), optionally
  with pre-period covariates for CUPED;
* :func:`analyze_summary` takes one row per arm × metric with ``n`` and either
  ``successes`` (proportions) or ``mean`` and ``std`` (means).

Both check the sample ratio (χ², flag at p < 0.001) and correct the p-values for the
number of metrics × arms (Holm by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mktlab.errors import SchemaError, ValidationError, require_columns
from mktlab.experiments import report
from mktlab.experiments.stats import (
    SRM_THRESHOLD,
    Comparison,
    SRMResult,
    adjust_pvalues,
    check_alpha,
    compare_means,
    compare_proportions,
    cuped_adjust,
    srm_test,
)

KINDS = ("proportion", "mean")


@dataclass
class ExperimentResult:
    """Results of one experiment: a table of comparisons and the SRM check.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per metric × treatment arm: means, absolute and relative lift with CIs,
        p-value, adjusted p-value, significance, chance to beat control, CUPED details.
    srm : SRMResult
    alpha : float
    correction : str
    """

    name: str
    table: pd.DataFrame
    srm: SRMResult
    alpha: float
    correction: str
    control: str
    arms: list[str]
    theta: dict[str, float] = field(default_factory=dict)

    @property
    def trustworthy(self) -> bool:
        """False when the sample ratio mismatches: the split is broken, lifts are suspect."""
        return not self.srm.mismatch

    def summary(self) -> pd.DataFrame:
        """A compact, rounded view of :attr:`table` for printing."""
        cols = ["metric", "arm", "mean_control", "mean_arm", "abs_lift", "rel_lift", "rel_ci_low",
                "rel_ci_high", "p_value", "p_adjusted", "significant", "chance_to_beat"]  # fmt: skip
        return self.table[cols].round(5)

    def figures(self, prefix: str = "") -> dict[str, float]:
        """Flat numbers for MLflow metrics: lifts, p-values, adjusted p-values, SRM p."""
        out: dict[str, float] = {f"{prefix}srm_p_value": self.srm.p_value}
        for r in self.table.itertuples():
            key = f"{prefix}{r.metric}.{r.arm}".replace(" ", "_")
            for col in ("abs_lift", "rel_lift", "p_value", "p_adjusted", "chance_to_beat"):
                v = float(getattr(r, col))
                if np.isfinite(v):
                    out[f"{key}.{col}"] = v
        return out

    def plot(self, ax: Any = None) -> Any:
        """Forest plot of the relative lifts with their CIs; returns the figure."""
        return report.plot_lifts(self, ax=ax)

    def log(self, *, experiment: str | None = None, run_name: str | None = None) -> None:
        """Log table, SRM, figures and plot to MLflow (see :func:`report.log_result`)."""
        report.log_result(self, experiment=experiment, run_name=run_name)


def _arms_order(
    present: Sequence[str], control: str | None, arms: Sequence[str] | None
) -> tuple[str, list[str]]:
    present = [str(a) for a in present]
    if arms is not None:
        arms = [str(a) for a in arms]
        unknown = sorted(set(present) - set(arms))
        if unknown:
            raise ValidationError(f"arm: unknown arm(s) {unknown} in the data; expected {arms}")
        empty = [a for a in arms if a not in present]
        if empty:
            raise ValidationError(f"arm: arm(s) {empty} have no units (empty arm)")
        order = arms
    else:
        order = sorted(present)
    if control is None:
        control = (
            order[0]
            if arms is not None
            else next((a for a in order if a.lower() in ("control", "no e-mail", "a")), order[0])
        )
    control = str(control)
    if control not in order:
        raise ValidationError(f"control: unknown arm {control!r}; arms are {order}")
    if len(order) < 2:
        raise ValidationError(f"arm: an experiment needs at least two arms, got {order}")
    return control, [control] + [a for a in order if a != control]


def _infer_kind(values: pd.Series, metric: str) -> str:
    vals = values.dropna().unique()
    return (
        "proportion"
        if len(vals) and set(np.asarray(vals, dtype=float).tolist()) <= {0.0, 1.0}
        else "mean"
    )


def _numeric(df: pd.DataFrame, col: str, what: str) -> np.ndarray:
    s = df[col]
    if pd.api.types.is_bool_dtype(s):
        s = s.astype("float64")
    if not pd.api.types.is_numeric_dtype(s):
        bad = s[pd.to_numeric(s, errors="coerce").isna() & s.notna()].head(3).tolist()
        raise SchemaError(f"{col}: {what} must be numeric, got dtype {s.dtype} (e.g. {bad})")
    arr = s.to_numpy(dtype="float64", na_value=np.nan)
    return arr


def _finish(
    name: str,
    rows: list[dict[str, Any]],
    srm: SRMResult,
    alpha: float,
    correction: str,
    control: str,
    arms: list[str],
    theta: dict[str, float],
) -> ExperimentResult:
    table = pd.DataFrame(rows)
    table["p_adjusted"] = adjust_pvalues(table["p_value"].to_numpy(), correction)
    table["significant"] = table["p_adjusted"] < alpha
    table.insert(0, "experiment", name)
    return ExperimentResult(name, table, srm, alpha, correction, control, arms, theta)


def analyze(
    data: pd.DataFrame,
    metrics: Sequence[str] | Mapping[str, str],
    *,
    arm: str = "arm",
    control: str | None = None,
    arms: Sequence[str] | None = None,
    covariates: Mapping[str, str] | None = None,
    shares: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    correction: str = "holm",
    prior: tuple[float, float] = (1.0, 1.0),
    srm_threshold: float = SRM_THRESHOLD,
    name: str = "experiment",
) -> ExperimentResult:
    """Analyse unit-level results: each metric × treatment arm against the control.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per unit with the arm column and one column per metric.
    metrics : sequence of str or mapping metric -> kind
        Metric columns; kinds ``"proportion"`` (0/1) or ``"mean"``. In a sequence, a
        metric whose values are all 0/1 is a proportion, any other a mean.
    arm : str, default "arm"
        Column holding the arm of each unit.
    control : str, optional
        The control arm; by default the first of ``arms``, else an arm named like
        "control" or the first in sorted order.
    arms : sequence of str, optional
        The planned arms: unknown arms in the data and planned arms without units raise.
    covariates : mapping metric -> column, optional
        Pre-period covariate per metric for CUPED (θ pooled over all arms). A metric
        with a covariate is tested with Welch's t on the adjusted values.
    shares : mapping arm -> planned share, optional
        For the SRM check; equal by default.
    alpha : float, default 0.05
    correction : {"holm", "bonferroni", "bh", "none"}, default "holm"
        Applied across all metrics × arms.
    prior : (float, float), default (1, 1)
        Beta prior for the chance to beat control of proportions.
    srm_threshold : float, default 0.001
    name : str
        Experiment name for the table and reports.

    Returns
    -------
    ExperimentResult
    """
    alpha = check_alpha(alpha)
    if not isinstance(data, pd.DataFrame):
        raise ValidationError(f"data: expected a pandas DataFrame, got {type(data).__name__}")
    kinds: dict[str, str | None]
    if isinstance(metrics, Mapping):
        kinds = {str(k): v for k, v in metrics.items()}
    elif isinstance(metrics, str):
        kinds = {metrics: None}
    else:
        kinds = dict.fromkeys(map(str, metrics))
    if not kinds:
        raise ValidationError("metrics: give at least one metric column")
    covariates = dict(covariates or {})
    unknown_cov = sorted(set(covariates) - set(kinds))
    if unknown_cov:
        raise ValidationError(
            f"covariates: metric(s) {unknown_cov} are not among the metrics {list(kinds)}"
        )
    require_columns(data, [arm, *kinds, *covariates.values()], table="data")
    if len(data) == 0:
        raise ValidationError("data: no rows")
    arm_col = data[arm]
    if arm_col.isna().any():
        raise ValidationError(f"{arm}: {int(arm_col.isna().sum())} unit(s) without an arm")
    labels = arm_col.astype(str).to_numpy()
    present = list(pd.unique(labels))
    control, order = _arms_order(present, control, arms)
    counts = {a: int((labels == a).sum()) for a in order}
    srm = srm_test(counts, shares, threshold=srm_threshold)
    masks = {a: labels == a for a in order}
    rows: list[dict[str, Any]] = []
    thetas: dict[str, float] = {}
    for metric, kind in kinds.items():
        y = _numeric(data, metric, "metric")
        kind = kind or _infer_kind(data[metric], metric)
        if kind not in KINDS:
            raise ValidationError(f"{metric}: kind must be one of {KINDS}, got {kind!r}")
        finite = np.isfinite(y)
        if kind == "proportion" and not np.isin(y[finite], (0.0, 1.0)).all():
            bad = np.unique(y[finite][~np.isin(y[finite], (0.0, 1.0))])[:5].tolist()
            raise ValidationError(
                f"{metric}: a proportion metric must be 0/1, got values like {bad}"
            )
        cov_col = covariates.get(metric)
        variance_reduction = np.nan
        if cov_col is not None:
            x = _numeric(data, cov_col, "covariate")
            ok = finite & np.isfinite(x)
            y_use = np.full_like(y, np.nan)
            y_use[ok], theta = cuped_adjust(y[ok], x[ok], metric=metric, covariate=cov_col)
            thetas[metric] = theta
            within = [y[ok & masks[a]] for a in order]
            within_adj = [y_use[ok & masks[a]] for a in order]
            v_raw = sum(float(np.var(v, ddof=1)) * (len(v) - 1) for v in within if len(v) > 1)
            v_adj = sum(float(np.var(v, ddof=1)) * (len(v) - 1) for v in within_adj if len(v) > 1)
            variance_reduction = 1 - v_adj / v_raw if v_raw > 0 else np.nan
        else:
            y_use = y
        stats_by_arm = {}
        for a in order:
            v = y_use[masks[a]]
            v = v[np.isfinite(v)]
            if v.size == 0:
                raise ValidationError(f"{metric}: arm {a!r} has no values (empty arm)")
            stats_by_arm[a] = (
                v.size,
                float(v.sum()),
                float(v.mean()),
                float(v.std(ddof=1)) if v.size > 1 else 0.0,
            )
        nc, sc, mc, sdc = stats_by_arm[control]
        for a in order[1:]:
            nt, st, mt, sdt = stats_by_arm[a]
            if kind == "proportion" and cov_col is None:
                c = compare_proportions(round(sc), nc, round(st), nt, alpha=alpha, prior=prior,
                                        metric=metric, arm=a, control=control)  # fmt: skip
            else:
                c = compare_means(
                    mc, sdc, nc, mt, sdt, nt, alpha=alpha, metric=metric, arm=a, control=control
                )
                if kind == "proportion":
                    c = _as_kind(c, "proportion")
            row = c.to_dict()
            row.update(
                covariate=cov_col,
                theta=thetas.get(metric, np.nan),
                variance_reduction=variance_reduction,
            )
            rows.append(row)
    return _finish(name, rows, srm, alpha, correction, control, order, thetas)


def _as_kind(c: Comparison, kind: str) -> Comparison:
    d = c.to_dict()
    d["kind"] = kind
    d["test"] = "Welch t (CUPED)"
    return Comparison(**d)


SUMMARY_COLUMNS = ("arm", "metric", "n")


def analyze_summary(
    summary: pd.DataFrame,
    *,
    control: str | None = None,
    arms: Sequence[str] | None = None,
    shares: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    correction: str = "holm",
    prior: tuple[float, float] = (1.0, 1.0),
    srm_threshold: float = SRM_THRESHOLD,
    name: str = "experiment",
) -> ExperimentResult:
    """Analyse aggregated results: one row per arm × metric.

    Parameters
    ----------
    summary : pandas.DataFrame
        Columns ``arm``, ``metric``, ``n`` and either ``successes`` (a proportion; alias
        ``conversions``) or ``mean`` and ``std`` (a mean, ``std`` with ddof=1). A row
        whose ``successes`` is empty is read as a mean.
    control, arms, shares, alpha, correction, prior, srm_threshold, name
        As in :func:`analyze`. The SRM check uses the largest ``n`` of each arm.

    Returns
    -------
    ExperimentResult
    """
    alpha = check_alpha(alpha)
    if not isinstance(summary, pd.DataFrame):
        raise ValidationError(f"summary: expected a pandas DataFrame, got {type(summary).__name__}")
    df = summary.rename(
        columns={"conversions": "successes", "sd": "std", "visitors": "n", "users": "n"}
    )
    require_columns(df, SUMMARY_COLUMNS, table="summary")
    has_succ = "successes" in df.columns
    has_mean = {"mean", "std"} <= set(df.columns)
    if not (has_succ or has_mean):
        raise SchemaError(
            "summary: needs a 'successes' column (proportions) or 'mean' and 'std' (means)"
        )
    if len(df) == 0:
        raise ValidationError("summary: no rows")
    for col in ("n", "successes", "mean", "std"):
        if col in df.columns:
            _numeric(df, col, "summary value")
    df = df.assign(arm=df["arm"].astype(str), metric=df["metric"].astype(str))
    dup = df[df.duplicated(["arm", "metric"], keep=False)]
    if len(dup):
        raise ValidationError(
            f"summary: duplicate arm × metric rows {dup[['arm', 'metric']].drop_duplicates().values.tolist()[:5]}"
        )
    control, order = _arms_order(list(pd.unique(df["arm"])), control, arms)
    bad_n = df[~(df["n"] > 0)]
    if len(bad_n):
        raise ValidationError(
            f"n: units must be > 0, got {bad_n[['arm', 'metric', 'n']].values.tolist()[:5]}"
        )
    srm = srm_test(
        {a: int(df.loc[df.arm == a, "n"].max()) for a in order}, shares, threshold=srm_threshold
    )
    rows = []
    for metric, g in df.groupby("metric", sort=False):
        by_arm: dict[Any, dict[Any, Any]] = g.set_index("arm").to_dict("index")
        missing = [a for a in order if a not in by_arm]
        if missing:
            raise ValidationError(f"{metric}: no row for arm(s) {missing} (empty arm)")
        is_prop = has_succ and bool(g["successes"].notna().all())
        c_row = by_arm[control]
        for a in order[1:]:
            t_row = by_arm[a]
            if is_prop:
                c = compare_proportions(c_row["successes"], c_row["n"], t_row["successes"], t_row["n"],
                                        alpha=alpha, prior=prior, metric=str(metric), arm=a, control=control)  # fmt: skip
            else:
                if not has_mean or g[["mean", "std"]].isna().any().any():
                    raise ValidationError(
                        f"{metric}: needs 'successes' or both 'mean' and 'std' for every arm"
                    )
                c = compare_means(float(c_row["mean"]), float(c_row["std"]), c_row["n"], float(t_row["mean"]),
                                  float(t_row["std"]), t_row["n"], alpha=alpha, metric=str(metric), arm=a, control=control)  # fmt: skip
            row = c.to_dict()
            row.update(covariate=None, theta=np.nan, variance_reduction=np.nan)
            rows.append(row)
    return _finish(name, rows, srm, alpha, correction, control, order, {})


def summarize(data: pd.DataFrame, metrics: Sequence[str], *, arm: str = "arm") -> pd.DataFrame:
    """Aggregate unit-level data to the form :func:`analyze_summary` reads.

    0/1 metrics get ``successes``; others ``mean`` and ``std``.
    """
    require_columns(data, [arm, *metrics], table="data")
    rows = []
    kinds = {m: _infer_kind(data[m], m) for m in metrics}
    for a, g in data.groupby(arm, sort=True, observed=True):
        for m in metrics:
            y = _numeric(g, m, "metric")
            y = y[np.isfinite(y)]
            row: dict[str, Any] = {"arm": str(a), "metric": m, "n": int(y.size)}
            if kinds[m] == "proportion":
                row["successes"] = int(y.sum())
            else:
                row["mean"] = float(y.mean()) if y.size else np.nan
                row["std"] = float(y.std(ddof=1)) if y.size > 1 else np.nan
            rows.append(row)
    return pd.DataFrame(rows)
