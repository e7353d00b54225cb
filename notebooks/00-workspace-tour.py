# %% [markdown]
# # 00 · Workspace tour
#
# What the workspace holds before any modelling: the **synthetic marketing world**
# (raw identities, profiles, events, journeys and coupon campaigns, with the hidden
# truth kept in separate tables) and the real **Hillstrom** e-mail experiment.
#
# Everything here comes from `mktlab`; the notebook only calls it and looks.

# %%
# %load_ext autoreload
# %autoreload 2

# %% tags=["parameters"]
N_USERS = 200_000  # people in the world (make demo uses 1,000,000)
SEED = 42
REGENERATE = False  # True: build the world even if one is on disk

# %%
import matplotlib.pyplot as plt

from mktlab.config import settings
from mktlab.datasets import load_hillstrom, load_world, make_world
from mktlab.errors import DataError

try:
    world = load_world()
    if REGENERATE or world.meta["n_users"] != N_USERS or world.meta["seed"] != SEED:
        raise DataError("different world requested")
except DataError:
    world = make_world(N_USERS, SEED, progress=True)
print(f"world at {world.path}: {world.meta['n_users']:,} users, seed {world.meta['seed']}")
world.summary()

# %% [markdown]
# ## Raw identities: what One ID has to untangle
# Records from app logins, web sessions, orders and partner feeds, each carrying
# several identifiers. Junk values and a hub device ride along on purpose.

# %%
ids = world.identities
fig, ax = plt.subplots(1, 2, figsize=(11, 3.5))
ids.groupby(["source", "id_type"]).size().unstack(fill_value=0).plot.bar(stacked=True, ax=ax[0])
ax[0].set_title("identifier observations by source")
ax[0].set_ylabel("rows")
top = ids.id_value.value_counts().head(10)
top.plot.barh(ax=ax[1])
ax[1].set_title("most frequent identifier values (junk and hubs)")
fig.tight_layout()

# %% [markdown]
# ## Campaign truth: the four quadrants
# Every user's potential outcomes with and without a coupon are known, so uplift
# models and the sandbox can be scored against the truth.

# %%
truth = world.campaign_truth
shares = truth[truth.campaign_id == "C001"].quadrant.value_counts(normalize=True)
fig, ax = plt.subplots(1, 2, figsize=(11, 3.5))
shares.plot.bar(ax=ax[0], color=["tab:green", "tab:gray", "tab:blue", "tab:red"])
ax[0].set_title("share of users by true quadrant")
truth.true_uplift.plot.hist(bins=60, ax=ax[1])
ax[1].set_title("true uplift of a coupon (p1 − p0)")
fig.tight_layout()
shares

# %% [markdown]
# ## Hillstrom: a real randomised e-mail test
# 64,000 customers, a third each to a Mens e-mail, a Womens e-mail or none.

# %%
hill = load_hillstrom()
rates = hill.groupby("segment")[["visit", "conversion", "spend"]].mean()
ax = rates["visit"].plot.bar(figsize=(5, 3), title="visit rate by arm")
ax.set_ylabel("visit rate")
rates

# %%
results = {
    "world_users": int(world.meta["n_users"]),
    "identity_rows": len(ids),
    "quadrants": int(shares.size),
    "persuadable_share": float(shares["persuadable"]),
    "hillstrom_rows": len(hill),
    "hillstrom_visit_womens": float(rates.loc["Womens E-Mail", "visit"]),
    "data_dir": str(settings().data_dir),
}
results
