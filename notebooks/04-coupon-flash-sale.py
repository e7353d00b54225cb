# %% [markdown]
# # 04 · Coupon flash sale
#
# Drive the Redis coupon issuer (`mktlab.coupons`) with three arrival processes —
# steady, bursts, and a thundering herd at the opening second — from several worker
# processes, with duplicate users and retried requests. For each sale we check the
# guarantees (never more than the stock, never a user twice, the ledger equals Redis)
# and look at throughput, latency and why requests were turned away.

# %%
# %load_ext autoreload
# %autoreload 2

# %% tags=["parameters"]
SMALL = False
STOCK = 20_000
REQUESTS = 80_000
WORKERS = 4
SHARDS = 4
SEED = 7

# %%
if SMALL:
    STOCK, REQUESTS, WORKERS = 1_000, 4_000, 2

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mktlab.config import settings
from mktlab.coupons.simulate import SimulationConfig, simulate

ledger_url = f"sqlite:///{settings().processed_dir / 'coupon-notebook-ledger.db'}"

# %% [markdown]
# ## Three sales, same stock
# `steady` and `burst` run open-loop at a fixed mean rate (latency includes queueing);
# `herd` sends everything as fast as the workers can (the opening-second stampede).

# %%
rate = REQUESTS / 4.0  # spread steady/burst sales over about four seconds
reports = {}
for arrival, r in [("steady", rate), ("burst", rate), ("herd", None)]:
    cfg = SimulationConfig(
        stock=STOCK,
        n_requests=REQUESTS,
        arrival=arrival,
        rate=r,
        workers=WORKERS,
        shards=SHARDS,
        duplicate_rate=0.10,
        retry_rate=0.02,
        seed=SEED,
    )
    reports[arrival] = simulate(cfg, ledger=ledger_url)

summary = pd.DataFrame({k: rep.summary() for k, rep in reports.items()}).T
summary[
    [
        "stock",
        "requests",
        "distinct_users",
        "issued",
        "expected_issued",
        "ledger_issued",
        "redis_issued",
        "duplicates",
        "over_issued",
        "throughput",
        "p50_ms",
        "p99_ms",
        "response_p99_ms",
    ]
]

# %% [markdown]
# ## Rejects by reason

# %%
rejects = pd.DataFrame({k: rep.rejects for k, rep in reports.items()}).fillna(0).astype(int).T
rejects

# %% [markdown]
# ## When were coupons issued, and how long did a decision take?

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for arrival, rep in reports.items():
    f = rep.frame
    issued = f[f["status"] == "issued"].sort_values("done_at")
    axes[0].plot(issued["done_at"], np.arange(1, len(issued) + 1), label=arrival)
    axes[1].hist(f["t"], bins=60, histtype="step", label=arrival)
    axes[2].hist(f["service_ms"], bins=60, histtype="step", label=arrival)
axes[0].axhline(STOCK, color="grey", ls="--", lw=1)
axes[0].set(title="coupons issued over time", xlabel="seconds", ylabel="issued (cumulative)")
axes[1].set(title="arrivals", xlabel="seconds", ylabel="requests")
axes[2].set(title="per-decision latency (batch round trip)", xlabel="ms", ylabel="requests")
for ax in axes:
    ax.legend()
fig.tight_layout()

# %% [markdown]
# ## Guarantees
# Every sale must hand out exactly `min(stock, distinct users)` coupons, no user may get
# two, and the ledger (the durable source of truth) must agree with Redis.

# %%
ok = all(
    rep.issued == rep.expected_issued == rep.ledger_issued == rep.redis_issued
    and rep.duplicates == 0
    and rep.over_issued == 0
    for rep in reports.values()
)
print("guarantees hold:", ok)

# %%
results = {
    "guarantees_hold": bool(ok),
    "stock": STOCK,
    **{f"{k}_issued": int(rep.issued) for k, rep in reports.items()},
    **{f"{k}_duplicates": int(rep.duplicates) for k, rep in reports.items()},
    **{f"{k}_throughput": float(rep.throughput) for k, rep in reports.items()},
    **{f"{k}_p99_ms": float(rep.p99_ms) for k, rep in reports.items()},
}
results
