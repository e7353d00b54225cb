"""Run several attribution methods on the same journeys and compare them side by side."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mktlab.attribution.heuristics import HEURISTICS, heuristic_attribution
from mktlab.attribution.markov import MarkovAttribution
from mktlab.attribution.paths import Paths, as_paths
from mktlab.attribution.shapley import ShapleyAttribution
from mktlab.errors import ValidationError

METHODS = (*HEURISTICS, "markov", "shapley")


def _expand(methods: str | Sequence[str]) -> list[str]:
    if isinstance(methods, str):
        methods = [methods]
    out: list[str] = []
    for m in methods:
        if m == "all":
            out.extend(METHODS)
        elif m == "heuristics":
            out.extend(HEURISTICS)
        elif m in METHODS:
            out.append(m)
        else:
            raise ValidationError(f"method: {m!r} is not one of {(*METHODS, 'heuristics', 'all')}")
    return list(dict.fromkeys(out))


@dataclass
class AttributionResult:
    """Credits of every method run, plus the fitted Markov / Shapley models.

    Attributes
    ----------
    conversions : DataFrame
        Channels × methods, attributed conversions (each column sums to the total).
    value : DataFrame
        Channels × methods, attributed value.
    markov : MarkovAttribution or None
    shapley : ShapleyAttribution or None
    paths : Paths
    """

    conversions: pd.DataFrame
    value: pd.DataFrame
    paths: Paths
    markov: MarkovAttribution | None = None
    shapley: ShapleyAttribution | None = None
    params: dict = field(default_factory=dict)

    @property
    def shares(self) -> pd.DataFrame:
        """Channels × methods, share of total conversions."""
        return self.conversions / self.conversions.sum(axis=0)

    def ranking(self) -> pd.DataFrame:
        """Channels × methods, rank of each channel (1 = most credited)."""
        return self.conversions.rank(ascending=False, method="min").astype(int)

    def compare_to(self, truth: pd.Series) -> pd.DataFrame:
        """Agreement of each method with a true per-channel quantity.

        Returns, per method, the Spearman rank correlation with ``truth``, the total
        absolute difference of shares (0 = same split, 2 = disjoint) and whether the top
        channel matches.
        """
        from scipy.stats import spearmanr

        t = truth.reindex(self.conversions.index).fillna(0.0).astype(float)
        t_share = t / t.sum() if t.sum() > 0 else t
        rows = {}
        for m in self.conversions.columns:
            col = self.conversions[m]
            rho = spearmanr(col.to_numpy(), t.to_numpy()).statistic
            rows[m] = {
                "spearman": float(rho) if np.isfinite(rho) else 0.0,
                "share_l1": float((self.shares[m] - t_share).abs().sum()),
                "top_match": bool(col.idxmax() == t.idxmax()),
            }
        return pd.DataFrame(rows).T.rename_axis("method")


def attribute(
    paths: Any,
    methods: str | Sequence[str] = "all",
    *,
    markov_order: int = 1,
    half_life: float = 7.0,
    first_weight: float = 0.4,
    last_weight: float = 0.4,
    sep: str = " > ",
) -> AttributionResult:
    """Attribute conversions with several methods at once.

    Parameters
    ----------
    paths : Paths, DataFrame or list
        Journeys (see :func:`~mktlab.attribution.paths.as_paths`).
    methods : str or sequence of str
        Any of :data:`METHODS`, or ``"heuristics"`` / ``"all"``.
    markov_order : int
        Order of the Markov chain.
    half_life, first_weight, last_weight : float
        Time-decay and position-based parameters (see :func:`touch_shares`).

    Returns
    -------
    AttributionResult
    """
    paths = as_paths(paths, sep=sep)
    paths.require_conversions("attribute")
    chosen = _expand(methods)
    conv: dict[str, pd.Series] = {}
    val: dict[str, pd.Series] = {}
    markov = shapley = None
    for m in chosen:
        if m == "markov":
            markov = MarkovAttribution(order=markov_order, sep=" > " if sep == "auto" else sep).fit(
                paths
            )
            tab = markov.attribution_
        elif m == "shapley":
            shapley = ShapleyAttribution().fit(paths)
            tab = shapley.attribution_
        else:
            tab = heuristic_attribution(
                paths, m, half_life=half_life, first_weight=first_weight, last_weight=last_weight
            )
        conv[m] = tab["conversions"]
        val[m] = tab["value"]
    idx = pd.Index(paths.channels, name="channel")
    return AttributionResult(
        conversions=pd.DataFrame(conv, index=idx),
        value=pd.DataFrame(val, index=idx),
        paths=paths,
        markov=markov,
        shapley=shapley,
        params={
            "methods": ",".join(chosen),
            "markov_order": markov_order,
            "half_life": half_life,
            "half_life_unit": paths.age_unit,
            "first_weight": first_weight,
            "last_weight": last_weight,
        },
    )


def plot_comparison(
    table: pd.DataFrame | AttributionResult,
    *,
    truth: pd.Series | None = None,
    normalize: bool = True,
    ax: Any = None,
    title: str = "Attribution by method",
) -> Any:
    """Grouped bar chart: one group per channel, one bar per method (and the truth).

    ``normalize`` plots shares of the total so methods and truth share one axis.
    Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    tab = table.conversions if isinstance(table, AttributionResult) else table
    tab = tab.copy()
    if truth is not None:
        tab["truth"] = truth.reindex(tab.index).fillna(0.0).astype(float)
    if normalize:
        tab = tab / tab.sum(axis=0).replace(0, np.nan)
        tab = tab.fillna(0.0)
    order = tab.mean(axis=1).sort_values(ascending=False).index
    tab = tab.loc[order]
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(tab) + 3), 4))
    else:
        fig = ax.figure
    k = tab.shape[1]
    width = 0.8 / k
    x = np.arange(len(tab))
    for i, col in enumerate(tab.columns):
        style = {"color": "black", "alpha": 0.85} if col == "truth" else {}
        ax.bar(x + (i - (k - 1) / 2) * width, tab[col].to_numpy(), width, label=col, **style)
    ax.set_xticks(x, [str(c) for c in tab.index], rotation=30, ha="right")
    ax.set_ylabel("share of conversions" if normalize else "conversions")
    ax.set_title(title)
    ax.legend(fontsize=8, ncols=min(k, 4))
    fig.tight_layout()
    return fig
