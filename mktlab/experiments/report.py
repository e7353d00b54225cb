"""Reports: plots of lifts and of sequential monitoring, logged to MLflow via tracking.

This module owns presentation. It reads results through the two small protocols below
and imports neither :mod:`~mktlab.experiments.analysis` nor
:mod:`~mktlab.experiments.sequential`; their results' ``.plot()`` and ``.log()`` call
into here, so the dependency runs one way (analysis, sequential -> report).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import pandas as pd

from mktlab import tracking
from mktlab.errors import ValidationError
from mktlab.experiments.stats import SRMResult

MLFLOW_EXPERIMENT = "ab-tests"


class LiftsResult(Protocol):
    """What a lift report reads (an :class:`~mktlab.experiments.analysis.ExperimentResult`)."""

    name: str
    table: pd.DataFrame
    srm: SRMResult
    alpha: float
    correction: str
    control: str
    arms: list[str]

    def figures(self, prefix: str = "") -> dict[str, float]: ...


class MonitorReport(Protocol):
    """What a monitoring report reads (a :class:`~mktlab.experiments.sequential.MonitorResult`)."""

    history: pd.DataFrame
    decisions: list[dict[str, Any]]
    stopped: bool
    stop_day: Any
    reason: str
    alpha: float
    n_opt: float


def _key(s: str) -> str:
    # MLflow metric names allow only alphanumerics, _ - . space and /
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", s).replace(" ", "_")


def plot_lifts(result: LiftsResult, ax: Any = None) -> Any:
    """Forest plot: relative lift and its CI per metric × arm; significant ones filled."""
    import matplotlib.pyplot as plt

    t = result.table
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(t)))
    else:
        fig = ax.figure
    y = np.arange(len(t))[::-1]
    rows: list[dict[Any, Any]] = t.to_dict("records")
    for yi, r in zip(y, rows):
        sig, rel = bool(r["significant"]), float(r["rel_lift"])
        color = "tab:green" if sig and rel > 0 else "tab:red" if sig else "tab:gray"
        err = [[max(rel - r["rel_ci_low"], 0) * 100], [max(r["rel_ci_high"] - rel, 0) * 100]]
        ax.errorbar(
            rel * 100, yi, xerr=err, fmt="o", color=color, mfc=color if sig else "white", capsize=3
        )
    ax.axvline(0, color="black", lw=0.8)
    labels = [f"{r['metric']} · {r['arm']}\np_adj={r['p_adjusted']:.3g}" for r in rows]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel(f"relative lift vs {result.control} (%), {1 - result.alpha:.0%} CI")
    srm = "SRM!" if result.srm.mismatch else "no SRM"
    ax.set_title(
        f"{result.name}: lifts ({result.correction} adjusted; {srm}, p={result.srm.p_value:.3g})",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def plot_sequential(
    res: MonitorReport, metric: str, *, arm: str | None = None, ax: Any = None
) -> Any:
    """Estimate with the anytime-valid sequence (shaded) and the naive daily CI (dashed)."""
    import matplotlib.pyplot as plt

    h = res.history
    if h.empty or metric not in set(h["metric"]):
        raise ValidationError(f"metric: {metric!r} was not monitored")
    h = h[(h["metric"] == metric) & h["valid"]]
    arm = arm or str(h["arm"].iloc[0])
    h = h[h["arm"] == arm]
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 3.5))
    else:
        fig = ax.figure
    x = (
        np.arange(len(h))
        if not np.issubdtype(np.asarray(h["day"]).dtype, np.number)
        else h["day"].to_numpy()
    )
    ax.fill_between(
        x,
        h["cs_low"],
        h["cs_high"],
        alpha=0.25,
        color="tab:blue",
        label=f"{1 - res.alpha:.0%} confidence sequence",
    )
    ax.plot(x, h["naive_low"], "--", color="tab:orange", lw=1, label="naive daily CI")
    ax.plot(x, h["naive_high"], "--", color="tab:orange", lw=1)
    ax.plot(x, h["estimate"], color="tab:blue", lw=1.5, label="estimate")
    ax.axhline(0, color="black", lw=0.8)
    if res.stopped:
        ax.axvline(x[-1], color="tab:red", lw=1, label="stopped")
    ax.set_xlabel("look (day)")
    ax.set_ylabel(f"{metric}: {arm} − control")
    ax.set_title(
        f"sequential monitoring of {metric}" + (f" — {res.reason}" if res.stopped else ""),
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@contextlib.contextmanager
def _run(experiment: str | None, run_name: str | None, params: dict[str, Any]) -> Iterator[None]:
    if experiment is None:  # log into the caller's active run
        yield
        return
    with tracking.start_run(experiment, run_name=run_name, params=params):
        yield


def log_result(
    result: LiftsResult,
    *,
    experiment: str | None = MLFLOW_EXPERIMENT,
    run_name: str | None = None,
) -> None:
    """Log an :class:`~mktlab.experiments.analysis.ExperimentResult` to MLflow.

    Logs figures (lifts, p-values, adjusted p-values, SRM p) as metrics, the full table,
    the SRM check and the forest plot. With ``experiment=None`` logs into the active run.
    """
    import matplotlib.pyplot as plt

    params = {"experiment": result.name, "alpha": result.alpha, "correction": result.correction,
              "control": result.control, "arms": ",".join(result.arms)}  # fmt: skip
    with _run(experiment, run_name or result.name, params):
        tracking.log_metrics({_key(k): v for k, v in result.figures(f"{result.name}.").items()})
        tracking.log_table(result.table.astype({c: "float64" for c in result.table.select_dtypes("number").columns}),
                           f"experiments/{result.name}/results.json")  # fmt: skip
        tracking.log_dict({"observed": result.srm.observed, "expected_shares": result.srm.expected,
                           "chi2": result.srm.chi2, "p_value": result.srm.p_value,
                           "mismatch": result.srm.mismatch}, f"experiments/{result.name}/srm.json")  # fmt: skip
        fig = plot_lifts(result)
        tracking.log_figure(fig, f"experiments/{result.name}/lifts.png")
        plt.close(fig)


def log_monitor(
    res: MonitorReport, *, experiment: str | None = MLFLOW_EXPERIMENT, run_name: str | None = None
) -> None:
    """Log a :class:`~mktlab.experiments.sequential.MonitorResult`: decisions, history table, one plot per metric."""
    import matplotlib.pyplot as plt

    with _run(experiment, run_name or "sequential", {"alpha": res.alpha, "n_opt": res.n_opt}):
        tracking.log_dict({"stopped": res.stopped, "stop_day": str(res.stop_day), "reason": res.reason,
                           "decisions": [{k: str(v) if k == "day" else v for k, v in d.items()} for d in res.decisions]},
                          "sequential/decisions.json")  # fmt: skip
        if not res.history.empty:
            h = res.history.assign(day=res.history["day"].astype(str))
            tracking.log_table(h, "sequential/history.json")
            tracking.log_metrics(
                {
                    "sequential.stopped": float(res.stopped),
                    "sequential.looks": float(len(res.decisions)),
                }
            )
            for metric in dict.fromkeys(h["metric"]):
                fig = plot_sequential(res, metric)
                tracking.log_figure(fig, f"sequential/{_key(metric)}.png")
                plt.close(fig)
