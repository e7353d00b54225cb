# %% [markdown]
# # 03 · Uplift: who to treat, measured honestly
#
# We estimate the individual effect of a treatment, `P(Y|T=1,X) − P(Y|T=0,X)`, on the
# real **Hillstrom** e-mail experiment (Womens e-mail vs no e-mail, outcome `visit`) and on
# the **synthetic world**, where the true effect of every user is known.
#
# 1. compare eight learners on the same cross-validation folds and pick a champion;
# 2. report the champion's Qini coefficient and uplift@30% with intervals over five
#    stratified 70/30 splits;
# 3. split users into the four quadrants and see what each would cost;
# 4. choose whom to treat under a budget, and compare with oracles on the world;
# 5. explain the uplift with SHAP; register the champion in MLflow as `uplift@champion`.
#
# **Metric conventions** (`mktlab.uplift.metrics`): the Qini coefficient and AUUC are
# normalised so that **1.0 = the perfect ordering of the observed outcomes** and **0 =
# random targeting**; **uplift@k** is the treated-minus-control visit rate among the top
# k% by predicted uplift.

# %%
# %load_ext autoreload
# %autoreload 2

# %% tags=["parameters"]
SMALL = False  # tests run with SMALL=True: a sample of rows and small models
SEED = 0
N_SPLITS = 5  # CV folds for model selection
N_REPEATS = 5  # stratified 70/30 splits for the champion's report
N_ESTIMATORS = 100
FOREST_ESTIMATORS = 100
N_BOOT = 200
HILLSTROM_ROWS = None  # None = all 42,693 Womens / No e-mail rows
WORLD_USERS = 100_000
LEARNERS = None  # None = all eight; a list of names to compare fewer
REGISTER = True

# %%
if SMALL:
    N_SPLITS, N_REPEATS, N_ESTIMATORS, FOREST_ESTIMATORS, N_BOOT = 2, 2, 30, 20, 30
    HILLSTROM_ROWS, WORLD_USERS = 6000, 8000
    LEARNERS = LEARNERS or ["s", "t", "x", "urf"]

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.base import clone

from mktlab.config import settings
from mktlab.datasets import load_hillstrom, load_world, make_world
from mktlab.uplift import (
    Economics,
    QuadrantThresholds,
    cross_validate,
    default_learners,
    explain_uplift,
    fit_uplift_model,
    hillstrom_data,
    plan_targeting,
    quadrant_summary,
    repeated_split_report,
    train,
    world_data,
)
from mktlab.uplift import metrics as M
from mktlab.uplift.selection import make_splits
from mktlab.uplift.train import world_report

pd.set_option("display.precision", 4)

# %% [markdown]
# ## 1 · Hillstrom: the data

# %%
data = hillstrom_data(load_hillstrom(), arms=("Womens E-Mail",), outcome="visit")
if HILLSTROM_ROWS:
    idx = np.random.default_rng(SEED).choice(len(data), HILLSTROM_ROWS, replace=False)
    data = data.subset(np.sort(idx))
print(f"{len(data):,} rows; treated share {data.w.mean():.3f}")
print(f"visit rate: e-mail {data.y[data.w == 1].mean():.4f}, none {data.y[data.w == 0].mean():.4f}")
print(f"average uplift (ATE) {data.y[data.w == 1].mean() - data.y[data.w == 0].mean():.4f}")

# %% [markdown]
# ## 2 · Model selection on shared folds
#
# Every learner is fitted on the same stratified folds (treatment × outcome); the
# champion has the best mean Qini coefficient on the held-out folds.

# %%
learners = default_learners(
    n_estimators=N_ESTIMATORS, forest_estimators=FOREST_ESTIMATORS, random_state=SEED
)
cv = cross_validate(data, learners, n_splits=N_SPLITS, seed=SEED)
cv.table[
    [
        "qini_mean",
        "qini_std",
        "auuc_mean",
        "uplift_at_30_mean",
        "uplift_at_30_std",
        "fit_seconds_mean",
    ]
]

# %%
cv.plot(metrics=("qini", "uplift_at_30", "fit_seconds"))
plt.show()

# %%
ax = M.plot_curves(cv.oof, data.y, data.w, kind="qini")
ax.set_ylim(bottom=min(0, ax.get_ylim()[0]), top=ax.get_ylim()[1] * 0.5)
ax.set_title("Out-of-fold Qini curves (Hillstrom)")
plt.show()
champion = cv.champion
print("champion:", champion)

# %%
M.uplift_by_decile(data.y, data.w, cv.oof[champion])

# %% [markdown]
# ## 3 · The champion over five stratified 70/30 splits
#
# Each split: fit on 70%, score the other 30%, bootstrap 95% intervals on that split;
# then the mean over splits with a t-interval.

# %%
per_split, hill = repeated_split_report(
    data, learners[champion], n_repeats=N_REPEATS, n_boot=N_BOOT, seed=SEED
)
per_split[
    ["split", "qini", "qini_lo", "qini_hi", "uplift_at_30", "uplift_at_30_lo", "uplift_at_30_hi"]
]

# %%
print(
    f"{champion}: Qini {hill['qini_mean']:.4f} [{hill['qini_ci_lo']:.4f}, {hill['qini_ci_hi']:.4f}]; "
    f"uplift@30% {hill['uplift_at_30_mean']:.4f} [{hill['uplift_at_30_ci_lo']:.4f}, {hill['uplift_at_30_ci_hi']:.4f}] "
    f"(random targeting ≈ ATE {per_split['ate'].mean():.4f}; target ≥ 0.07)"
)

# %% [markdown]
# ## 4 · Four quadrants
#
# On Hillstrom the average lift is about 4.5 points, so we call an effect "real" above
# 5 points and a visitor "sure" at a 20% baseline visit rate. Economics are illustrative:
# a visit is worth 2.0, an e-mail costs 0.02 and there is no coupon.

# %%
model = fit_uplift_model(
    data, clone(learners[champion]), thresholds=QuadrantThresholds(uplift=0.05, response=0.20)
)
scored = model.predict(data.X)
quadrant_summary(scored["quadrant"], scored["p0"], scored["p1"], margin=2.0, contact_cost=0.02)

# %% [markdown]
# ## 5 · SHAP: what drives the predicted uplift

# %%
explanation = explain_uplift(
    model.learner, model.prep.transform(data.X), max_rows=1000 if SMALL else 3000, seed=SEED
)
print("method:", explanation.method, "surrogate R²:", round(explanation.surrogate_r2, 3))
explanation.plot(max_display=12)
plt.show()
explanation.importance().head(8)

# %% [markdown]
# ## 6 · The synthetic world: truth-based checks
#
# Campaign C001 was randomised 50/50, and the world records every user's true `p0`, `p1`
# and uplift. We train on 70% of users and score the rest against the truth: PEHE (vs a
# T-learner with the same LightGBM base), the true-uplift Qini, quadrant accuracy, and
# the profit of budgeted targeting against two oracles.

# %%
if SMALL or not (settings().world_dir / "campaign_log.parquet").exists():
    world = make_world(
        n_users=WORLD_USERS, seed=7, out_dir=settings().interim_dir / f"world-{WORLD_USERS}"
    )
else:
    world = load_world()
wdata = world_data(world, campaign_id="C001")
tr, te = make_splits(wdata, n_repeats=1, test_size=0.3, seed=SEED)[0]
wtrain, wtest = wdata.subset(tr), wdata.subset(te)
wcv = cross_validate(
    wtrain,
    default_learners(
        names=LEARNERS,
        n_estimators=N_ESTIMATORS,
        forest_estimators=FOREST_ESTIMATORS,
        random_state=SEED,
    ),
    n_splits=N_SPLITS,
    seed=SEED,
)
wcv.table[["qini_mean", "pehe_mean", "true_qini_mean", "uplift_at_30_mean"]]

# %%
wchamp = wcv.champion
wmodel = fit_uplift_model(
    wtrain,
    default_learners(
        names=[wchamp],
        n_estimators=N_ESTIMATORS,
        forest_estimators=FOREST_ESTIMATORS,
        random_state=SEED,
    )[wchamp],
)
econ = Economics(margin=30.0, contact_cost=0.5, coupon_cost=5.0)
world_rep = world_report(wmodel, wtrain, wtest, econ, budget_share=0.2, seed=SEED)
pd.Series(world_rep)

# %%
wscored = wmodel.predict(wtest.X)
quadrant_summary(wscored["quadrant"], wscored["p0"], wscored["p1"], margin=econ.margin,
                 contact_cost=econ.contact_cost, coupon_cost=econ.coupon_cost,
                 true_quadrant=wtest.truth["quadrant"])  # fmt: skip

# %%
plan = plan_targeting(wscored["uplift"], wscored["p1"], econ, budget=world_rep["budget"])
print(f"treat {plan.n_selected:,} of {len(wtest):,} users; expected profit {plan.expected_profit:,.0f}, "
      f"cost {plan.expected_cost:,.0f}, ROI {plan.roi:.2f}, cut-off uplift {plan.cutoff_uplift:.3f}")  # fmt: skip
plan.plot()
plt.title("Budgeted targeting on the world (held-out users)")
plt.show()

# %% [markdown]
# The individual-level oracle knows each user's drawn type, which the features only
# hint at (the world samples it at random given the features), so no model can reach
# it; the feature oracle — LightGBM fitted to the true effects — is the fair bound.

# %% [markdown]
# ## 7 · Train, log and register the champion (Hillstrom)
#
# The pipeline reuses the CV above, logs parameters, metrics with intervals, plots and
# the model to MLflow, and registers the refitted champion as `uplift@champion`.

# %%
result = train(
    data, learners=list(learners), n_splits=N_SPLITS, n_estimators=N_ESTIMATORS,
    forest_estimators=FOREST_ESTIMATORS, seed=SEED, n_boot=N_BOOT, register=REGISTER,
    thresholds=QuadrantThresholds(uplift=0.05, response=0.20), cv=cv,
)  # fmt: skip
print(result.champion, result.run_id, result.model_version)

# %%
results = {
    "hillstrom_rows": len(data),
    "champion": champion,
    "cv_best_qini": float(cv.table["qini_mean"].iloc[0]),
    "hillstrom_qini_mean": hill["qini_mean"],
    "hillstrom_qini_ci_lo": hill["qini_ci_lo"],
    "hillstrom_qini_ci_hi": hill["qini_ci_hi"],
    "hillstrom_uplift_at_30_mean": hill["uplift_at_30_mean"],
    "hillstrom_uplift_at_30_ci_lo": hill["uplift_at_30_ci_lo"],
    "hillstrom_uplift_at_30_ci_hi": hill["uplift_at_30_ci_hi"],
    "hillstrom_ate": float(per_split["ate"].mean()),
    "quadrant_shares": scored["quadrant"].value_counts(normalize=True).to_dict(),
    "shap_top_feature": explanation.importance().index[0],
    "world_champion": wchamp,
    "world_pehe": world_rep["pehe"],
    "world_pehe_t_learner": world_rep["pehe_t_learner"],
    "world_true_qini": world_rep["true_qini"],
    "world_ratio_oracle": world_rep["ratio_oracle"],
    "world_ratio_feature_oracle": world_rep["ratio_feature_oracle"],
    "registered_version": result.model_version,
}
results
