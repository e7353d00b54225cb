# %% [markdown]
# # 07 · A reinforcement-learning marketing policy
#
# Marketing is sequential: a coupon today changes whether the user buys next week,
# touches build fatigue (and churn), coupons teach users to wait for the next coupon,
# and the campaign budget runs out. This notebook
#
# 1. calibrates the marketing environment from the synthetic world (who is a
#    persuadable, a sure thing, a lost cause or a sleeping dog; their RFM),
# 2. trains a PPO agent on the vectorised environment,
# 3. scores it against the policies a team would otherwise use — never treat, always
#    each action, an RFM rule and a myopic uplift-greedy policy — on the same held-out
#    seeds, with 95% CIs,
# 4. explains what the agent does, and registers it as `rl_policy@champion`.

# %%
# %load_ext autoreload
# %autoreload 2

# %% tags=["parameters"]
SMALL = False  # tests run with SMALL=True: a short training run and few seeds
TIMESTEPS = 4_000_000  # user-weeks of experience
TIME_BUDGET_S = 540  # stop PPO training after this many seconds
N_SEEDS = 20  # held-out populations
N_USERS = 3_000  # users per held-out population
REGISTER = True

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from mktlab.datasets import load_world, make_world
from mktlab.errors import DataError
from mktlab.rl import (
    ACTIONS,
    SEGMENTS,
    EnvConfig,
    MarketingSimulator,
    RandomPolicy,
    TrainConfig,
    UserPrior,
    evaluate_policies,
    load_policy,
    log_policy,
    ope_on_world,
    plot_curve,
    standard_baselines,
    train_agent,
)

torch.set_num_threads(1)
if SMALL:
    TIMESTEPS, TIME_BUDGET_S, N_SEEDS, N_USERS = 150_000, 120, 3, 600
MYOPIC_USERS = 1_500 if SMALL else 8_000

# %% [markdown]
# ## The users: calibrated from the synthetic world
# Each simulated user is drawn from the world's users: their profile (recency,
# frequency, monetary, tier, age) and their uplift quadrant with the potential-outcome
# probabilities `p0`, `p1` of campaign C001.

# %%
try:
    world = load_world()
except DataError:
    world = make_world(20_000, seed=7)
prior = UserPrior.from_world(world)
config = EnvConfig()
pd.Series(prior.segment_shares(), name="share of users").to_frame()

# %% [markdown]
# ## The dynamics respond the way marketers expect
# Purchase probability this week under each action, by hidden segment (fresh users, no
# fatigue or habituation yet): coupons lift persuadables, put sleeping dogs off, and
# change little for sure things and lost causes.

# %%
sim = MarketingSimulator(config, 5_000, prior=prior)
sim.reset(0)
p = pd.DataFrame(
    {a: sim.purchase_probability(np.full(sim.n, k)) for k, a in enumerate(ACTIONS)}
).assign(segment=np.asarray(SEGMENTS)[sim.segment])
by_seg = p.groupby("segment")[list(ACTIONS)].mean()
ax = by_seg.plot.bar(figsize=(8, 4), title="P(buy this week) by action and segment")
ax.set_ylabel("probability")
plt.show()
by_seg.round(3)

# %% [markdown]
# ## Baselines and the agent
# The myopic uplift-greedy baseline fits P(buy | state, action) on logged random-policy
# weeks and sends the action with the best predicted one-step profit when it beats doing
# nothing. The agent (PPO) sees the same observation: RFM, fatigue, coupon history,
# weeks and budget left, and noisy segment signals — never the hidden segment.

# %%
baselines = standard_baselines(config, prior, myopic_users=MYOPIC_USERS)
result = train_agent(
    TrainConfig(total_timesteps=TIMESTEPS, time_budget_s=TIME_BUDGET_S),
    config,
    prior,
    progress=True,
)
print(f"trained PPO on {result.timesteps:,} user-weeks in {result.wall_s:.0f} s")

# %%
evaluation = evaluate_policies(
    [*baselines, RandomPolicy(0), result.policy],
    config,
    n_seeds=N_SEEDS,
    n_users=N_USERS,
    prior=prior,
    progress=True,
)
summary = evaluation.summary()
summary.round(3)

# %%
levels = summary.set_index("policy")["return_per_user"]
plot_curve(result.curve, {k: levels[k] for k in ("never_treat", "myopic_uplift", "rfm_rule")})
plt.title("PPO learning curve vs baselines (held-out)")
plt.show()

# %%
fig, ax = plt.subplots(figsize=(8, 4))
s = summary.iloc[::-1]
ax.barh(
    s["policy"],
    s["return_per_user"],
    xerr=[s["return_per_user"] - s["ci_low"], s["ci_high"] - s["return_per_user"]],
)
ax.set_xlabel("return per user over the horizon (yuan), 95% CI over seeds")
plt.show()

# %%
baseline_names = [b.name for b in baselines]
best = summary[summary["policy"].isin(baseline_names)].iloc[0]["policy"]
comparison = evaluation.compare("ppo", best)
pd.Series(comparison)

# %% [markdown]
# ## What the agent does
# Share of user-weeks given each action, by the (hidden) segment of the user.

# %%
share = evaluation.action_share
shown = share[share["policy"].isin(["ppo", "myopic_uplift", "rfm_rule"])]
fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharey=True)
for ax, (name, g) in zip(axes, shown.groupby("policy"), strict=False):
    g.set_index("segment")[list(ACTIONS)].plot.bar(
        stacked=True, ax=ax, legend=ax is axes[-1], title=name
    )
plt.show()
shown.round(2)

# %% [markdown]
# ## Off-policy check on the world's logged campaign
# The world's campaign C001 was randomised and logged with propensities. A sequential
# policy can only be judged there on its first-week decision (coupon or not), through
# the sandbox's self-normalised IPS estimator.

# %%
ope = ope_on_world(result.policy, world, n_boot=50 if SMALL else 300)
ope.round(3)

# %% [markdown]
# ## Register the policy
# Logged to MLflow with its reward curve and evaluation, registered as
# `rl_policy@champion`: a pyfunc mapping a DataFrame of user states to actions.

# %%
logged = log_policy(result, evaluation=evaluation, register=REGISTER)
states = pd.DataFrame(sim.reset(1)[:5], columns=result.policy.input_columns)
served = load_policy().predict(states) if REGISTER else result.policy.predict(states)
served

# %%
results = {
    "timesteps": int(result.timesteps),
    "train_wall_s": float(result.wall_s),
    "ppo_return": float(levels["ppo"]),
    "random_return": float(levels["random"]),
    "best_baseline": str(best),
    "best_baseline_return": float(levels[best]),
    "relative_gain": float(comparison["relative_gain"]),
    "target_met": bool(comparison["target_met"]),
    "n_policies": len(summary),
    "ope_value_per_user": float(ope.set_index("policy").loc["ppo", "value_per_user"]),
    "registered_version": logged["version"],
    "served_actions": [str(a) for a in served["action"]],
}
results
