"""Multi-touch attribution: heuristics, Markov removal effects, Shapley values, budget advice.

Quick start::

    from mktlab.attribution import Paths, attribute
    paths = Paths.from_frame(df, sep=" > ")          # path, conversions, value, nulls
    result = attribute(paths, "all")                 # channels x methods
    result.conversions, result.markov.removal_effects_, result.shapley.coalitions_
"""

from mktlab.attribution.budget import reallocate_budget
from mktlab.attribution.compare import METHODS, AttributionResult, attribute, plot_comparison
from mktlab.attribution.heuristics import HEURISTICS, heuristic_attribution, touch_shares
from mktlab.attribution.markov import MarkovAttribution, markov_attribution
from mktlab.attribution.model import AttributionModel, log_attribution
from mktlab.attribution.paths import RESERVED, Paths, as_paths
from mktlab.attribution.shapley import (
    ShapleyAttribution,
    channel_indicators,
    coalition_value,
    exact_shapley,
    model_coalition_value,
    ordered_shapley,
    sampled_shapley,
    shapley_attribution,
)
from mktlab.attribution.simulate import simulate_paths

__all__ = [
    "HEURISTICS",
    "METHODS",
    "RESERVED",
    "AttributionModel",
    "AttributionResult",
    "MarkovAttribution",
    "Paths",
    "ShapleyAttribution",
    "as_paths",
    "attribute",
    "channel_indicators",
    "coalition_value",
    "exact_shapley",
    "heuristic_attribution",
    "log_attribution",
    "markov_attribution",
    "model_coalition_value",
    "ordered_shapley",
    "plot_comparison",
    "reallocate_budget",
    "sampled_shapley",
    "shapley_attribution",
    "simulate_paths",
    "touch_shares",
]
