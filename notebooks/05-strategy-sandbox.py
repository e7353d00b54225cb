# %% [markdown]
# # 05 · Strategy sandbox: rules and honest replay
#
# Before spending money a marketer wants to know what a strategy *would have done*:
# treated users, coupons, redemptions, cost, incremental conversions and revenue, ROI.
# Here we
#
# 1. declare ECA **rules** as data, validate them, look for conflicts, and run them over
#    the world's event stream in batch (and check the online engine agrees);
# 2. **replay** several strategies over the logged targeted campaign `C002` with
#    off-policy estimators (IPS, SNIPS, DM, DR) and bootstrap intervals;
# 3. compare the estimates with the world's **ground truth** (every user's potential
#    outcomes) and log the comparison to MLflow.
#
# All the work happens in `mktlab.rules` and `mktlab.sandbox`; this notebook calls them.

# %%
# %load_ext autoreload
# %autoreload 2

# %% tags=["parameters"]
SMALL = False  # True: a small world and fewer bootstrap replicates (tests)
N_USERS = 200_000  # people in the synthetic world
SEED = 7
N_BOOT = 1000
ONLINE_SAMPLE = 20_000  # events replayed one by one to check batch == online
USE_REGISTRY = True  # register the uplift model in MLflow and load it back by name
N_REPEATS = 30  # small worlds for the coverage study

# %%
if SMALL:
    N_USERS, N_BOOT, ONLINE_SAMPLE, N_REPEATS = 8_000, 200, 3_000, 10

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mktlab.config import settings
from mktlab.datasets import make_world
from mktlab.rules import Budget, FieldSchema, OnlineEngine, RuleSet, compile_rules, find_conflicts
from mktlab.sandbox import (
    CouponTerms,
    LowEffectiveSampleSizeWarning,
    TreatmentPolicy,
    Strategy,
    compare,
    fit_reward_models,
    from_world,
    log_results,
    plot_comparison,
    replay_many,
    true_incremental,
)

world = make_world(N_USERS, SEED, out_dir=settings().interim_dir / "sandbox-world")
print(
    f"world: {N_USERS:,} people, {len(world.events):,} events, {len(world.campaign_log):,} campaign decisions"
)

# %% [markdown]
# ## 1 · Rules as data
# A browse-abandonment pattern (3 views of one category within 30 minutes and no order),
# a big-order thank-you, and a deliberately overlapping coupon rule so governance has
# something to say. Frequency caps: at most 1 push a day, 3 touches a week.

# %%
RULES = """
name: engagement
version: 1
caps:
  - {channel: push, max: 1, per: 1d}
  - {channel: "*", max: 3, per: 7d}
rules:
  - id: browse_abandon
    when: {pattern: {event: view, count: 3, within: 30m, same: [category], absent: order}}
    if:
      - {field: context.hour, op: between, value: [8, 22]}
    then:
      - {send_message: {channel: push, template: still_looking}}
      - {issue_coupon: {coupon: C10, value: 10}}
  - id: big_order
    when: {event: order}
    priority: 2
    if: [{field: event.amount, op: ">=", value: 200}]
    then:
      - {issue_coupon: {coupon: C20, value: 20}}
      - {set_lifecycle: {state: vip}}
  - id: app_order
    when: {event: order}
    if: [{field: event.channel, op: "==", value: app}, {field: profile.tier_level, op: ">=", value: 3}]
    then: [{issue_coupon: {coupon: C5, value: 5}}, {send_message: {channel: sms, template: thanks}}]
"""
rules = RuleSet.from_yaml(RULES)
# events arrive with raw identifiers; rules key on user_id where the event carries one
events = world.events.loc[world.events["id_type"] == "user_id"].rename(
    columns={"id_value": "user_id"}
)
profiles = world.profiles.set_index("user_id")
network = compile_rules(rules, FieldSchema.from_frames(events, profiles))
print(network.describe())
for c in find_conflicts(rules):
    print("conflict:", c)

# %%
firings = network.run_batch(events, profiles=profiles)
summary = (
    firings.groupby(["rule_id", "action", "status"], observed=True).size().unstack(fill_value=0)
)
summary

# %%
fig, ax = plt.subplots(1, 2, figsize=(12, 3.5))
ok = firings[firings["status"] == "ok"]
ok.set_index("ts").groupby("rule_id", observed=True).resample("D").size().unstack(0).fillna(0).plot(
    ax=ax[0]
)
ax[0].set_title("allowed actions per day by rule")
firings["status"].value_counts().plot.bar(ax=ax[1])
ax[1].set_title("candidate actions by outcome (caps, stacking)")
fig.tight_layout()

# %% [markdown]
# The online engine (one event at a time, as a service would run it) must make the
# same decisions as the batch replay.

# %%
sample = events.sort_values("ts", kind="stable").head(ONLINE_SAMPLE).reset_index(drop=True)
batch_sample = network.run_batch(sample, profiles=profiles)
engine = OnlineEngine(network, profiles=profiles)
online = [
    (i, d.rule_id, d.status)
    for i, ev in enumerate(sample.to_dict("records"))
    for d in engine.process(ev)
]
batch = [(int(r.row), str(r.rule_id), str(r.status)) for r in batch_sample.itertuples()]
agree = online == batch
print(f"batch == online on {len(sample):,} events ({len(batch):,} decisions): {agree}")

# %% [markdown]
# ## 2 · Strategies over the logged campaign C002
# `C002` was targeted by a marketer's rule of thumb, and every logged decision carries
# its propensity, so we can replay other strategies honestly. The uplift model is
# trained on the *randomised* campaign `C001` with `mktlab.uplift`.

# %%
from mktlab import tracking
from mktlab.uplift.data import world_data
from mktlab.uplift.learners import TLearner
from mktlab.uplift.model import fit_uplift_model, log_model

uplift_model = fit_uplift_model(world_data(world, campaign_id="C001"), TLearner())
models = {"sandbox-uplift": uplift_model}
if USE_REGISTRY:
    with tracking.start_run("sandbox", "uplift-for-sandbox"):
        info = log_model(uplift_model, registered_model_name="sandbox-uplift")
    tracking.set_alias("sandbox-uplift", info.registered_model_version)
    models = None  # the strategy resolves "sandbox-uplift" from the registry (@champion)

data = from_world(world, "C002")
data.frame["young"] = data.frame["age"] < 35
terms = CouponTerms(face_value=10, send_cost=0.2, margin=0.35)
strategies = [
    Strategy("logged", TreatmentPolicy("logged"), coupon=terms),
    Strategy("everyone", TreatmentPolicy("all"), coupon=terms),
    Strategy("random-30%", TreatmentPolicy("random", rate=0.3), coupon=terms),
    Strategy("young", TreatmentPolicy("all"), audience="young", coupon=terms),
    Strategy(
        "uplift-top-30%",
        TreatmentPolicy("uplift_threshold", model="sandbox-uplift", top_fraction=0.3),
        coupon=terms,
    ),
    Strategy(
        "uplift-top-30%-budget",
        TreatmentPolicy("uplift_threshold", model="sandbox-uplift", top_fraction=0.3),
        coupon=terms,
        budget=Budget(max_coupons=len(data) // 10),
    ),
]
q_hat = fit_reward_models(data)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", LowEffectiveSampleSizeWarning)
    results = replay_many(strategies, data, models=models, q_hat=q_hat, n_boot=N_BOOT)
for w in caught:
    print("warning:", w.message)
table = compare(results, estimator="dr", baseline="logged")
table[["treated", "redemptions", "cost", "incremental_conversions", "incremental_conversions_lo",
       "incremental_conversions_hi", "incremental_revenue", "roi", "ess"]].round(2)  # fmt: skip

# %%
fig = plot_comparison(table)

# %% [markdown]
# ## 3 · Against the truth
# The world knows each user's potential outcomes `y0, y1`, so the true incremental
# conversions of every strategy's decisions are known. Each estimator's 95% interval
# should contain them; DR's should be the narrowest unbiased one.

# %%
truth = data.meta["truth"]
rows = []
for r in results:
    t = true_incremental(r.pi, truth["y0"], truth["y1"])
    for e in ("ips", "snips", "dm", "dr"):
        iv = r.get("incremental_conversions", e)
        rows.append({"strategy": r.name, "estimator": e, "truth": t, "estimate": iv.value, "lo": iv.lo, "hi": iv.hi,
                     "covers": iv.covers(t), "width": iv.width})  # fmt: skip
check = pd.DataFrame(rows)
check.pivot(index="strategy", columns="estimator", values="covers")

# %%
fig, ax = plt.subplots(figsize=(9, 4))
for k, e in enumerate(("ips", "snips", "dm", "dr")):
    sub = check[check["estimator"] == e].reset_index(drop=True)
    x = np.arange(len(sub)) + (k - 1.5) * 0.18
    ax.errorbar(
        x,
        sub["estimate"],
        yerr=[sub["estimate"] - sub["lo"], sub["hi"] - sub["estimate"]],
        fmt="o",
        label=e,
        capsize=3,
    )
ax.scatter(
    np.arange(len(sub)), sub["truth"], marker="*", s=150, color="black", label="truth", zorder=5
)
ax.set_xticks(np.arange(len(sub)), sub["strategy"], rotation=20, ha="right")
ax.set_ylabel("incremental conversions")
ax.legend()
fig.tight_layout()

# %% [markdown]
# One world is one draw: a 95% interval misses the truth in about one world out of
# twenty, and when it misses, it misses for every strategy at once (they share the same
# logged rows). How unusual is this world's log? The IPS estimate of the treated
# potential outcomes `Σ y1` against their true total, in standard errors of the
# randomisation, says whether the *sample* (not the estimator) is off:

# %%
log_t = data.frame["treatment"].to_numpy()
p_treat = np.where(log_t == 1, data.pscore, 1 - data.pscore)
y1 = truth["y1"].to_numpy()
z_design = ((log_t * data.conversions / p_treat).sum() - y1.sum()) / np.sqrt(
    (y1 * (1 - p_treat) / p_treat).sum()
)
print(f"design z-score of the logged treated group: {z_design:+.2f}")

# %% [markdown]
# The claim that matters is coverage over *repeated* worlds: generate many small worlds,
# replay one strategy on each, and count how often the interval contains the truth.

# %%
hits = {"ips": [], "dr": []}
widths = {"ips": [], "dr": []}
young = Strategy("young", TreatmentPolicy("all"), audience="young")
for seed in range(N_REPEATS):
    w_small = make_world(
        4_000, 1_000 + seed, out_dir=settings().interim_dir / "sandbox-repeats" / str(seed)
    )
    d_small = from_world(w_small, "C002")
    d_small.frame["young"] = d_small.frame["age"] < 35
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowEffectiveSampleSizeWarning)
        r_small = replay_many([young], d_small, estimators=("ips", "dr"), n_boot=300, seed=seed)[0]
    t_small = true_incremental(r_small.pi, d_small.meta["truth"]["y0"], d_small.meta["truth"]["y1"])
    for e in hits:
        iv = r_small.get("incremental_conversions", e)
        hits[e].append(iv.covers(t_small))
        widths[e].append(iv.width)
repeat = pd.DataFrame(
    {e: [np.mean(hits[e]), np.mean(widths[e])] for e in hits}, index=["coverage", "mean width"]
)
repeat

# %%
run_id = log_results(
    results, experiment="sandbox", run_name="05-strategy-sandbox", estimator="dr", baseline="logged"
)
print("logged to MLflow run", run_id)

# %%
dr = check[check["estimator"] == "dr"].set_index("strategy")
ips = check[check["estimator"] == "ips"].set_index("strategy")
results = {
    "n_firings": len(firings),
    "n_allowed": int((firings["status"] == "ok").sum()),
    "batch_online_agree": float(agree),
    "design_z": float(z_design),
    "repeat_ips_coverage": float(repeat.loc["coverage", "ips"]),
    "repeat_dr_coverage": float(repeat.loc["coverage", "dr"]),
    "repeat_ips_width": float(repeat.loc["mean width", "ips"]),
    "repeat_dr_width": float(repeat.loc["mean width", "dr"]),
    "dr_coverage": float(dr["covers"].mean()),
    "ips_coverage": float(ips["covers"].mean()),
    "dr_mean_width": float(dr["width"].mean()),
    "ips_mean_width": float(ips["width"].mean()),
    "top30_dr_incremental": float(dr.loc["uplift-top-30%", "estimate"]),
    "top30_truth_incremental": float(dr.loc["uplift-top-30%", "truth"]),
    "everyone_dr_incremental": float(dr.loc["everyone", "estimate"]),
    "top30_roi": float(table.loc["uplift-top-30%", "roi"]),
    "budget_treated": float(table.loc["uplift-top-30%-budget", "treated"]),
}
results
