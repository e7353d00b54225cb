# %% [markdown]
# # 02 · Bitmap audiences
#
# Every tag value of every user is a roaring bitmap of dense `uid`s (from One ID); an
# audience is bit arithmetic over them. This notebook builds the store from the
# synthetic world, composes audiences in the audience language, sizes and overlaps
# them, and checks one against the equivalent DuckDB SQL over the columnar tables.

# %%
# %load_ext autoreload
# %autoreload 2

# %% tags=["parameters"]
SMALL = True  # the test runs small; `make demo` / humans use the full size
N_USERS = 20_000 if SMALL else 200_000
SEED = 7
ENGINE = "local"  # "chdb": ClickHouse in process; "clickhouse": the server at MKTLAB_CLICKHOUSE_URL

# %%
import time

import duckdb
import matplotlib.pyplot as plt

from mktlab.audience import (
    AudienceCatalog,
    overlap_matrix,
    plot_overlap_heatmap,
    plot_upset,
    to_sql,
)
from mktlab.audience.world import store_from_world
from mktlab.config import settings
from mktlab.datasets import load_world, make_world

# %% [markdown]
# ## The world and One ID
# Profiles are keyed by `user_id`, events by the raw identifier they arrived with
# (device, phone, openid, ...). `store_from_world` resolves identities
# (`mktlab.identity.resolve`), attaches `uid`s to both tables and builds the store.

# %%
try:
    world = load_world()
    if world.meta.get("n_users") != N_USERS or world.meta.get("seed") != SEED:
        raise LookupError("different world on disk")
except Exception:
    world = make_world(n_users=N_USERS, seed=SEED)
world.meta

# %%
t0 = time.perf_counter()
catalog = AudienceCatalog(settings().processed_dir / "audiences-02.duckdb")
store, imap = store_from_world(world, catalog=catalog, engine=ENGINE)
build_seconds = time.perf_counter() - t0
print(store, f"built in {build_seconds:.1f} s")
print("dropped rows:", store.dropped_rows)
store.describe()

# %% [markdown]
# ## Composing audiences
# Tags compare like columns (`age between 25 and 34`, `city in ("SH", "BJ")`,
# `tier >= "gold"` — tier is ordered), window tags come from the events
# (`active_7d` = any event in the last 7 days, `purchased_30d` = an order in 30 days),
# and `count(order, 30d) >= 2` counts events in a window. `@name` refers to a saved
# audience.

# %%
definitions = {
    "active_no_purchase": 'active_7d & ~purchased_30d & (tier_level >= 4 | city in ("SH", "BJ"))',
    "repeat_buyers": "count(order, 30d) >= 2",
    "young_big_city": 'age between 25 and 34 & city in ("SH", "BJ", "SZ", "GZ")',
    "high_value": 'monetary_90d >= 500 | tier >= "platinum"',
    "lapsing_vip": "@high_value & ~active_30d",
}
for name, expr in definitions.items():
    row = store.save(name, expr)
    print(f"@{name:20s} {row.size:7,d} users  ({row.build_seconds * 1e3:6.1f} ms)  {expr}")
store.saved()[["name", "size", "build_seconds", "as_of"]]

# %%
aud = store.query("@repeat_buyers & ~@high_value & coupon_redeem_30d")
print(aud)
aud.sample(5, identity_map=imap)

# %% [markdown]
# Errors point at the offending token and suggest the closest name:

# %%
for bad in ['cty == "SH"', "city >= 3", "active_900d", 'tier == "gld"']:
    try:
        store.query(bad)
    except Exception as exc:
        print(type(exc).__name__, exc, sep=": ", end="\n\n")

# %% [markdown]
# ## Overlap

# %%
sets = store.sets(list(definitions))
overlap_matrix(sets, "jaccard").round(3)

# %%
fig = plot_upset(
    {k: sets[k] for k in ["active_no_purchase", "repeat_buyers", "young_big_city", "high_value"]}
)
plt.show()

# %%
fig = plot_overlap_heatmap(sets, value="share_of_a")
plt.show()

# %% [markdown]
# ## Check against DuckDB SQL
# The same AST, translated to SQL over the uid-keyed profile and event tables (what an
# analyst would write by hand), must select exactly the same users.

# %%
from mktlab.audience.world import world_inputs

inputs, _ = world_inputs(world, imap)
con = duckdb.connect()
con.register("profiles", inputs.profiles)
con.register("events", inputs.events)
check_expr = (
    definitions["active_no_purchase"] + ' | (count(order, 30d) >= 2 & age >= 40 & ~(gender == "F"))'
)
sql = to_sql(
    check_expr, events="events", as_of=store.as_of, profile_columns=set(inputs.profiles.columns)
)
t0 = time.perf_counter()
sql_uids = {int(r[0]) for r in con.execute(sql).fetchall()}
sql_ms = (time.perf_counter() - t0) * 1e3
t0 = time.perf_counter()
bitmap_uids = set(store.evaluate(check_expr))
bitmap_ms = (time.perf_counter() - t0) * 1e3
sql_agrees = sql_uids == bitmap_uids
print(
    f"bitmap {len(bitmap_uids):,} users in {bitmap_ms:.1f} ms; SQL {len(sql_uids):,} in {sql_ms:.1f} ms; agree: {sql_agrees}"
)

# %% [markdown]
# ## The same audiences on ClickHouse
# `ENGINE` (the parameters cell) decides where the bitmaps live: `"local"` in this process
# (pyroaring or bitsets), `"chdb"` as ClickHouse `groupBitmap` states in process, or
# `"clickhouse"` on the server at `MKTLAB_CLICKHOUSE_URL`; every cell above runs unchanged.
# Here the other side of that switch is built and must give identical members.

# %%
other = "chdb" if ENGINE in ("local", "auto", "roaring", "dense") else "local"
twin, _ = store_from_world(world, imap, catalog=catalog, engine=other)
exprs = [*definitions.values(), check_expr]
engines_agree = all(sorted(twin.evaluate(e)) == sorted(store.evaluate(e)) for e in exprs)
print(f"{store.engine} vs {twin.engine}: identical members for {len(exprs)} audiences: {engines_agree}")
ch = twin if twin.clickhouse is not None else store
print(ch.sql(definitions["young_big_city"])[:400], "...")

# %%
results = {
    "n_users": len(store),
    "n_tags": len(store.tags),
    "build_seconds": build_seconds,
    **{f"size_{k}": len(v) for k, v in sets.items()},
    "check_size": len(bitmap_uids),
    "sql_agrees": bool(sql_agrees),
    "engines_agree": bool(engines_agree),
}
results
