# %% [markdown]
# # 08 · A/B testing that survives scrutiny
#
# The experiment framework every marketing team runs before trusting a strategy:
#
# 1. **Analysis** of a real randomised test — Hillstrom's e-mail experiment (Mens vs
#    Womens vs No E-Mail on visit, conversion and spend): lifts with CIs, p-values,
#    Bayesian chance to beat control, CUPED, the sample-ratio check and corrections for
#    testing 3 metrics × 2 arms.
# 2. **Design**: how many customers a follow-up test needs, and for how long.
# 3. **Assignment**: salted hashing into 10,000 buckets; why `uid % 100` is not enough.
# 4. **Sequential monitoring**: peeking every day with an anytime-valid confidence
#    sequence, and a guardrail that stops a harmful test.
#
# Everything comes from `mktlab.experiments`; the notebook only calls it and looks.

# %%
# %load_ext autoreload
# %autoreload 2

# %% tags=["parameters"]
SMALL = False  # True: fewer simulations and ids (tests); False: the full run
SEED = 8
LOG_TO_MLFLOW = True

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mktlab import tracking
from mktlab.datasets import load_hillstrom
from mktlab.experiments import (
    Assigner,
    Experiment,
    Guardrail,
    Layer,
    analyze,
    hash_buckets,
    mde_proportion,
    monitor,
    peeking_table,
    sample_size_proportion,
)

N_SIMS = 400 if SMALL else 4000
N_IDS = 200_000 if SMALL else 2_000_000
pd.set_option("display.width", 160)

# %% [markdown]
# ## 1 · Hillstrom: what did the e-mails do?
# 64,000 customers, a third each to a Mens e-mail, a Womens e-mail or none. The control
# is *No E-Mail*. Visit and conversion are proportions (pooled z-test, exact
# Beta-Binomial chance to beat control); spend is a mean (Welch t). Six comparisons,
# so p-values are adjusted (Holm keeps the family-wise error at 5 %).

# %%
hill = load_hillstrom()
METRICS = {"visit": "proportion", "conversion": "proportion", "spend": "mean"}
res = analyze(
    hill, METRICS, arm="segment", control="No E-Mail", correction="holm", name="hillstrom"
)
print(f"SRM check: chi2={res.srm.chi2:.3f}, p={res.srm.p_value:.3f} -> "
      f"{'MISMATCH' if res.srm.mismatch else 'split as planned'}; counts {res.srm.observed}")  # fmt: skip
res.summary()

# %%
fig = res.plot()

# %% [markdown]
# Both e-mails lift every metric; the Mens e-mail roughly doubles conversion. Under the
# stricter corrections the conclusions hold — compare the adjusted p-values side by side:

# %%
corrections = {m: analyze(hill, METRICS, arm="segment", control="No E-Mail", correction=m).table["p_adjusted"].to_numpy()
               for m in ("none", "bonferroni", "holm", "bh")}  # fmt: skip
adj = res.table[["metric", "arm", "p_value"]].assign(
    **{f"p_{m}": v for m, v in corrections.items() if m != "none"}
)
adj

# %% [markdown]
# ### CUPED with the pre-period
# `history` is each customer's spend in the year *before* the test, so it can adjust
# spend without bias. Here it is only weakly related to two weeks of spend, so the
# variance reduction is small — an honest result: CUPED helps as much as the
# covariate predicts the metric (reduction ≈ ρ²).

# %%
cuped = analyze(
    hill, {"spend": "mean"}, arm="segment", control="No E-Mail", covariates={"spend": "history"}
)
plain = res.table[res.table.metric == "spend"]
pd.DataFrame({
    "arm": cuped.table["arm"],
    "ci_width_plain": (plain["abs_ci_high"] - plain["abs_ci_low"]).to_numpy(),
    "ci_width_cuped": (cuped.table["abs_ci_high"] - cuped.table["abs_ci_low"]).to_numpy(),
    "variance_reduction": cuped.table["variance_reduction"],
    "theta": cuped.table["theta"],
})  # fmt: skip

# %% [markdown]
# ## 2 · Designing the follow-up
# Baseline conversion without e-mail is about 0.57 %. How many customers per arm does a
# test need to detect a +20 % relative lift, and how long does it run at 5,000 eligible
# customers a day? Conversely, what could Hillstrom's own ~21,300 per arm detect?

# %%
base_conv = float(res.table.loc[res.table.metric == "conversion", "mean_control"].iloc[0])
plan = sample_size_proportion(base_conv, 0.20, power=0.8, alpha=0.05)
dur = plan.duration(daily_traffic=5_000)
mde_hill = mde_proportion(base_conv, res.srm.observed["No E-Mail"])
print(f"baseline {base_conv:.4%}: {plan.n_control:,} per arm ({plan.total:,} total), "
      f"{dur.days} days ({dur.days_needed} days of traffic, rounded to whole weeks)")  # fmt: skip
print(
    f"with {res.srm.observed['No E-Mail']:,} per arm Hillstrom detects a relative lift of {mde_hill:.1%}"
)
mdes = np.linspace(0.05, 0.5, 30)
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(mdes * 100, [sample_size_proportion(base_conv, m).n_control for m in mdes])
ax.set_yscale("log")
ax.set_xlabel("relative MDE (%)")
ax.set_ylabel("customers per arm")
ax.set_title(f"sample size at baseline {base_conv:.2%}, power 0.8, α 0.05")
fig.tight_layout()

# %% [markdown]
# ## 3 · Assignment: salted hashing, layers, namespaces
# Each unit's bucket is `MurmurHash3_x86_32(f"{salt}:{id}") * 10000 >> 32`. Every
# experiment has its own salt, so its split is independent of every other. Splitting on
# `uid % 100 < 50` instead puts the *same* users in treatment in every experiment.

# %%
from scipy import stats

uids = np.arange(N_IDS)
naive = pd.crosstab(uids % 100 < 50, uids % 100 < 50)
layout = Assigner(
    [Layer("email", [Experiment("subject_line"), Experiment("send_time", {"control": 1, "morning": 1, "evening": 1})]),
     Layer("coupon", [Experiment("coupon_value", {"control": 0.5, "5_off": 0.25, "10_off": 0.25}, traffic=0.5)])],
    holdout=0.05,
)  # fmt: skip
arms = layout.assign(uids)
both = arms[["subject_line", "coupon_value"]].dropna()  # units in both experiments
salted = pd.crosstab(both["subject_line"], both["coupon_value"])
p_naive = stats.chi2_contingency(naive).pvalue
p_salted = stats.chi2_contingency(salted).pvalue
print(f"uid % 100 in two experiments: chi2 p = {p_naive:.3g} (completely dependent)")
print(f"salted hash, two layers:      chi2 p = {p_salted:.3g} (independent)")
buckets = hash_buckets(uids, "subject_line")
fig, ax = plt.subplots(1, 2, figsize=(11, 3))
ax[0].hist(buckets, bins=100)
ax[0].set_title("units per bucket group (uniform)")
arms.drop(columns="holdout").apply(
    lambda s: s.value_counts(dropna=False, normalize=True)
).T.plot.barh(stacked=True, ax=ax[1], legend=False)
ax[1].set_title("share of units per experiment and arm (NaN = not in it)")
fig.tight_layout()
salted

# %% [markdown]
# ## 4 · Sequential monitoring: peek every day, safely
# An A/A simulation: the same total sample looked at 1, 7, 14, 28 or 56 times. Testing
# at 5 % at every look inflates false positives; the confidence sequence does not.

# %%
table = peeking_table(n_sims=N_SIMS, total_per_arm=14_000, kinds=("proportion", "mean"), seed=SEED)
fig, ax = plt.subplots(figsize=(7, 3))
for kind, g in table.groupby("kind"):
    ax.plot(g["looks"], g["naive_fpr"], "o-", label=f"naive daily z-test ({kind})")
    ax.plot(g["looks"], g["sequential_fpr"], "s--", label=f"confidence sequence ({kind})")
ax.axhline(0.05, color="black", lw=0.8, ls=":")
ax.set_xscale("log")
ax.set_xlabel("number of looks")
ax.set_ylabel("false-positive rate (A/A)")
ax.legend(fontsize=8)
fig.tight_layout()
table

# %% [markdown]
# Hillstrom's test ran two weeks. Spreading its customers over 14 entry days at random,
# we replay it look by look: spend of the Mens e-mail with its 95 % confidence sequence
# (valid at every look at once) against the naive daily CI.

# %%
rng = np.random.default_rng(SEED)
daily = hill.assign(day=rng.integers(1, 15, len(hill)))
two_arms = daily[daily.segment.isin(["No E-Mail", "Mens E-Mail"])]
seq = monitor(two_arms, ["visit", "spend"], arm="segment", control="No E-Mail", n_opt=21_000,
              guardrails=[Guardrail("spend")])  # fmt: skip
fig = seq.plot("spend")
seq.history[seq.history.metric == "visit"][
    ["day", "estimate", "cs_low", "cs_high", "p_always_valid"]
].tail(3)

# %% [markdown]
# A guardrail in action, on the real data: suppose the Mens e-mail is the champion and
# the Womens e-mail a challenger that replaces it. Visits are the guardrail. The monitor
# stops the challenger as soon as the confidence sequence of its visit lift lies wholly
# below zero, and logs why; later days are never looked at.

# %%
challenger = daily[daily.segment.isin(["Mens E-Mail", "Womens E-Mail"])]
stop = monitor(challenger, ["visit", "spend"], arm="segment", control="Mens E-Mail", n_opt=21_000,
               guardrails=[Guardrail("visit"), Guardrail("spend")])  # fmt: skip
print(f"stopped={stop.stopped} on day {stop.stop_day}: {stop.reason}")
stop.decisions[-1]

# %%
fig = stop.plot("visit")

# %%
if LOG_TO_MLFLOW:
    res.log(experiment="08-ab-testing", run_name="hillstrom")
    seq.log(experiment="08-ab-testing", run_name="hillstrom-sequential")
    print(f"logged to {tracking.tracking_uri()} (experiment '08-ab-testing')")

# %%
t = res.table.set_index(["metric", "arm"])
results = {
    "srm_p_value": float(res.srm.p_value),
    "srm_mismatch": bool(res.srm.mismatch),
    **{f"{m}_{a.split()[0].lower()}_{col}": float(t.loc[(m, a), col])
       for m in METRICS for a in ("Mens E-Mail", "Womens E-Mail")
       for col in ("abs_lift", "rel_lift", "p_value", "p_adjusted")},
    "p_bh_spend_womens": float(adj.loc[(adj.metric == "spend") & (adj.arm == "Womens E-Mail"), "p_bh"].iloc[0]),
    "cuped_variance_reduction": float(cuped.table["variance_reduction"].iloc[0]),
    "sample_size_per_arm": int(plan.n_control),
    "duration_days": int(dur.days),
    "hillstrom_mde": float(mde_hill),
    "p_uid_mod": float(p_naive),
    "p_salted": float(p_salted),
    "naive_fpr_28": float(table.query("kind == 'proportion' and looks == 28")["naive_fpr"].iloc[0]),
    "sequential_fpr_28": float(table.query("kind == 'proportion' and looks == 28")["sequential_fpr"].iloc[0]),
    "guardrail_stopped": bool(stop.stopped),
    "guardrail_stop_day": int(stop.stop_day) if stop.stopped else -1,
}  # fmt: skip
results
