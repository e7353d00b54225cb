"""Side-by-side reports of replayed strategies: table, plots, MLflow."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mktlab.errors import ValidationError
from mktlab.sandbox.replay import METRICS, StrategyResult

HEADLINE = ("incremental_conversions", "incremental_revenue", "roi")


def compare(
    results: Sequence[StrategyResult], *, estimator: str | None = None, baseline: str | None = None
) -> pd.DataFrame:
    """One row per strategy (the baseline first): every metric with its interval.

    Columns are ``<metric>``, ``<metric>_lo``, ``<metric>_hi`` plus ``estimator``,
    ``on_policy_rows`` and ``ess``; ``baseline`` names the strategy to put first and
    adds ``vs_baseline_incremental_conversions``.
    """
    if not results:
        raise ValidationError("compare: no results")
    rows = []
    for r in results:
        est = estimator if estimator in r.estimates else r.preferred
        row: dict[str, Any] = {"strategy": r.name, "estimator": est}
        for m in METRICS:
            iv = r.estimates[est][m]
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = iv.value, iv.lo, iv.hi
        row["on_policy_rows"] = r.on_policy_rows
        row["ess"] = r.ess.get(est, np.nan)
        row["capped"] = r.blocked.get("capped", 0)
        row["over_budget"] = r.blocked.get("budget", 0)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("strategy")
    if baseline is not None:
        if baseline not in table.index:
            raise ValidationError(
                f"compare: baseline {baseline!r} is not among {list(table.index)}"
            )
        table = table.loc[[baseline, *[s for s in table.index if s != baseline]]]
        table["vs_baseline_incremental_conversions"] = (
            table["incremental_conversions"] - float(table.loc[baseline, "incremental_conversions"])  # type: ignore[arg-type]
        )
    return table


def plot_comparison(table: pd.DataFrame, metrics: Sequence[str] = HEADLINE):
    """Bar charts with interval whiskers, one panel per metric; returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    names = list(table.index)
    x = np.arange(len(names))
    for ax, m in zip(axes[0], metrics, strict=True):
        v = table[m].to_numpy(dtype=float)
        lo = np.clip(v - table[f"{m}_lo"].to_numpy(dtype=float), 0, None)
        hi = np.clip(table[f"{m}_hi"].to_numpy(dtype=float) - v, 0, None)
        ax.bar(
            x,
            np.nan_to_num(v),
            yerr=[np.nan_to_num(lo), np.nan_to_num(hi)],
            capsize=4,
            color="#4C72B0",
        )
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_title(m.replace("_", " "))
    fig.tight_layout()
    return fig


def log_results(
    results: Sequence[StrategyResult],
    *,
    experiment: str = "sandbox",
    run_name: str | None = None,
    estimator: str | None = None,
    baseline: str | None = None,
) -> str:
    """Log the comparison (metrics, table, figure, strategies) to MLflow; return the run id."""
    import matplotlib.pyplot as plt

    from mktlab import tracking

    table = compare(results, estimator=estimator, baseline=baseline)
    params = {
        "data": results[0].data_name,
        "strategies": ",".join(table.index),
        "n_rows": results[0].n_rows,
    }
    with tracking.start_run(
        experiment, run_name, tags={"mktlab.stage": "sandbox"}, params=params
    ) as run:
        metrics = {}
        for name, row in table.iterrows():
            for m in METRICS:
                for suffix in ("", "_lo", "_hi"):
                    v = float(row[f"{m}{suffix}"])
                    if np.isfinite(v):
                        metrics[f"{_safe(str(name))}.{m}{suffix}"] = v
        tracking.log_metrics(metrics)
        tracking.log_table(table.reset_index(), "comparison.json")
        fig = plot_comparison(table)
        tracking.log_figure(fig, "comparison.png")
        plt.close(fig)
        tracking.log_dict({r.name: r.strategy.to_dict() for r in results}, "strategies.json")
        notes = {r.name: r.notes for r in results if r.notes}
        if notes:
            tracking.log_dict(notes, "warnings.json")
        return run.info.run_id


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))
