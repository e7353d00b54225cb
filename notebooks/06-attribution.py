# %% [markdown]
# # 06 · Multi-touch attribution: heuristics, Markov, Shapley
#
# Who gets credit for a conversion? We take the synthetic world's journeys (touches in
# eight channels, then a conversion or not), credit conversions to channels with every
# method in `mktlab.attribution`, and — because the world was generated from known
# per-touch channel effects — check each method's ranking against the truth
# (`channel_truth.true_incremental_conversions`: conversions lost if a channel's touches
# were removed). Then we turn credits into budget advice and log the fitted model.

# %%
# %load_ext autoreload
# %autoreload 2

# %% tags=["parameters"]
SMALL = True  # small world for tests; False = the full world under data/raw/world
N_USERS = 20_000  # users when a world has to be generated
SEED = 7
LOOKBACK_DAYS = 30.0  # touches older than this before the conversion are ignored
CUT_AT_CONVERSION = True  # touches after the conversion cannot have caused it
MARKOV_ORDER = 1
N_PERMUTATIONS = 200  # sampled Shapley of the model-based value function
LOG = True  # log the run to MLflow
REGISTER = False  # register the Markov model as attribution@champion

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from mktlab.attribution import (
    MarkovAttribution,
    Paths,
    ShapleyAttribution,
    attribute,
    log_attribution,
    model_coalition_value,
    plot_comparison,
    reallocate_budget,
    sampled_shapley,
)
from mktlab.config import settings
from mktlab.datasets import load_world, make_world

# %% [markdown]
# ## Journeys
# One row per touch (`journey_id, ts, channel`) plus one row per journey in
# `conversions`. `Paths.from_touches` orders touches in time, drops those after the
# conversion and outside the lookback window, and encodes journeys as integer arrays.

# %%
if SMALL:
    world = make_world(
        n_users=N_USERS, seed=SEED, out_dir=settings().interim_dir / "world-attribution"
    )
else:
    world_dir = settings().world_dir
    world = (
        load_world()
        if (world_dir / "touches.parquet").exists()
        else make_world(n_users=N_USERS, seed=SEED)
    )
touches, conversions = world.touches, world.conversions
truth = world.channel_truth.set_index("channel")
paths = Paths.from_touches(
    touches, conversions, lookback_days=LOOKBACK_DAYS, cut_at_conversion=CUT_AT_CONVERSION
)
print(paths)
# conversions with no touch inside the window cannot be credited to any channel
print(
    f"unattributable conversions (no touch in the window): {paths.unattributed_conversions:g} "
    f"of {paths.unattributed_conversions + paths.total_conversions:g}"
)
paths.to_frame().sort_values("conversions", ascending=False).head(10)

# %%
truth

# %% [markdown]
# ## Every method side by side
# Heuristics (first, last, linear, time decay with a 7-day half-life, U-shape 40/20/40),
# the Markov removal effect solved exactly, and the simplified Shapley value in closed form.

# %%
result = attribute(paths, "all", markov_order=MARKOV_ORDER, half_life=7.0)
result.conversions.round(2)

# %%
fig = plot_comparison(
    result,
    truth=truth["true_incremental_conversions"],
    title="Share of conversions by method vs truth",
)
plt.show()

# %% [markdown]
# ## How each method ranks channels against the truth
# Spearman correlation of each method's credit with the true incremental conversions,
# the L1 distance between credit shares and true shares, and whether the top channel matches.

# %%
vs_truth = result.compare_to(truth["true_incremental_conversions"])
ranks = result.ranking().assign(
    truth=truth["true_incremental_conversions"].rank(ascending=False, method="min").astype(int)
)
display(vs_truth.round(3))
ranks.sort_values("truth")

# %% [markdown]
# ## Markov chain: transition matrix and removal effects

# %%
markov = result.markov
tm = markov.transition_matrix_
fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
im = axes[0].imshow(tm.to_numpy(), cmap="viridis")
axes[0].set_xticks(range(len(tm)), tm.columns, rotation=60, ha="right")
axes[0].set_yticks(range(len(tm)), tm.index)
axes[0].set_title("transition probabilities")
fig.colorbar(im, ax=axes[0])
markov.removal_effects_.sort_values().plot.barh(
    ax=axes[1], title=f"removal effect (P(conv) = {markov.conversion_probability_:.3f})"
)
fig.tight_layout()
plt.show()

# %%
higher = MarkovAttribution(order=2).fit(paths)
pd.DataFrame(
    {"order 1": markov.attribution_["conversions"], "order 2": higher.attribution_["conversions"]}
).round(2)

# %% [markdown]
# ## Shapley: the coalition table and the ordered variant
# Each converting journey splits its conversions equally over its distinct channels; the
# ordered variant keeps the rank of each channel's first touch.

# %%
shap = ShapleyAttribution(ordered=True).fit(paths)
display(shap.coalitions_.sort_values("conversions", ascending=False).head(8))
shap.ordered_.round(2)

# %% [markdown]
# ## Model-based Shapley (sampled)
# The simplified game only counts journeys whose whole channel set sits inside a
# coalition. A model-based alternative: fit P(convert | channels touched), and let the
# value of a coalition S be the expected conversions if every journey kept only the
# channels in S. Its Shapley values (estimated by permutation sampling) measure
# *incremental* conversions — the same quantity as the world's truth.

# %%
expected_conversions = model_coalition_value(paths)
model_shap = sampled_shapley(
    expected_conversions, paths.channels, n_permutations=N_PERMUTATIONS, random_state=SEED
)
comparison = pd.DataFrame(
    {
        "model_shapley": model_shap["shapley"],
        "std_error": model_shap["std_error"],
        "simplified_shapley": result.conversions["shapley"],
        "truth": truth["true_incremental_conversions"],
    }
)
comparison.round(2)

# %%
from scipy.stats import spearmanr

model_spearman = float(spearmanr(comparison["model_shapley"], comparison["truth"]).statistic)
model_spearman

# %% [markdown]
# ## Budget advice
# The world has no spend table, so we assume one (illustrative: a cost per touch per
# channel). ROI = attributed value / spend. The proposed split assumes every channel's
# return follows `value = a · spend^0.5` through its current point (diminishing returns,
# same elasticity everywhere) and that attributed value is causal; `direct` has no spend
# and keeps none.

# %%
cost_per_touch = {
    "search": 1.2,
    "social": 0.6,
    "display": 0.3,
    "email": 0.05,
    "push": 0.02,
    "sms": 0.08,
    "affiliate": 0.9,
    "direct": 0.0,
}
n_touches = pd.Series(
    np.bincount(paths.touches, minlength=paths.n_channels), index=list(paths.channels)
)
spend = pd.Series({c: n_touches.get(c, 0) * cost_per_touch.get(c, 0.5) for c in paths.channels})
budget = reallocate_budget(result.value["markov"], spend, elasticity=0.5)
print(budget.attrs["assumption"])
budget.round(2).sort_values("roi", ascending=False)

# %% [markdown]
# ## Log the run and the fitted model
# The pyfunc model takes journeys (`path`, optional `conversions`) and returns credits per
# channel; the service loads it as `attribution@champion`.

# %%
info = None
if LOG:
    info = log_attribution(
        result,
        method="markov",
        run_name="06-attribution",
        truth=truth["true_incremental_conversions"],
        register=REGISTER,
        figure=fig,
    )
info

# %%
results = {
    "n_paths": paths.n_paths,
    "total_conversions": paths.total_conversions,
    "unattributed_conversions": paths.unattributed_conversions,
    "markov_total": float(result.conversions["markov"].sum()),
    "shapley_total": float(result.conversions["shapley"].sum()),
    "spearman": {m: float(v) for m, v in vs_truth["spearman"].items()},
    "model_shapley_spearman": model_spearman,
    "budget_total": float(budget["proposed_spend"].sum()),
    "spend_total": float(spend.sum()),
    "logged": info is not None,
}
results
