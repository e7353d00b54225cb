# %% [markdown]
# # 01 · One ID: resolving raw identifiers into people
#
# The synthetic world logs identifiers (`user_id`, `phone`, `email`, `device`, `openid`)
# seen together in app logins, web sessions, orders and a partner feed. Its noise is the
# kind a CDP's ID mapping must survive: junk values, a factory-default device id seen on
# thousands of phones, family members sharing a tablet, recycled phone numbers and typos.
#
# We resolve them with `mktlab.identity.resolve` under the default rules (user_id and phone
# single-valued, recency order, blocklist, hub detection), look at what was refused and
# why, and score the result against the world's hidden truth.

# %%
# %load_ext autoreload
# %autoreload 2

# %% tags=["parameters"]
SMALL = True  # the test runs small; `make demo` / humans run full
N_USERS = None  # None: 20k people when SMALL, else 300k
SEED = 7
ENGINE = "local"  # "spark": the same rules on PySpark local[2] (Java 17+), the same map

# %%
import matplotlib.pyplot as plt
import pandas as pd

from mktlab.config import settings
from mktlab.datasets import load_world, make_world
from mktlab.errors import MktlabError
from mktlab.identity import IdentityMap, IdentityRules, assign_records, pairwise_scores, resolve

n_users = N_USERS or (20_000 if SMALL else 300_000)
try:
    world = load_world()
    if (world.meta.get("n_users"), world.meta.get("seed")) != (n_users, SEED):
        raise LookupError("different world on disk")
except (MktlabError, LookupError):
    world = make_world(n_users=n_users, seed=SEED)
ids = world.identities
print(f"{len(ids):,} observations in {ids['record_id'].nunique():,} records")
ids.head()

# %%
ids.groupby(["source", "id_type"]).size().unstack(fill_value=0)

# %% [markdown]
# ## Resolve with the default rules

# %%
rules = IdentityRules()
print(rules.to_yaml())
imap = resolve(ids, rules, engine=ENGINE)
print(imap.report)

# %% [markdown]
# ## The same map on the other engine
# `ENGINE = "spark"` resolved the map above on Spark; the local engine checks it here (same
# people, same `global_id`/`uid`, same refusals). The default local run skips this cell's
# Spark half: a session takes ~10 s to start and the small world ~1 min on two cores, too
# much for the notebook's CI run (`tests/identity/test_spark.py` checks the equality there).

# %%
if ENGINE == "spark":
    check = resolve(ids, rules, engine="local")
    same_map = bool(check.mapping.equals(imap.mapping) and check.audit.equals(imap.audit))
    print("the local engine gives the same mapping and audit:", same_map)
else:
    same_map = None

# %% [markdown]
# ## People by number of identifiers

# %%
sizes = imap.mapping.groupby("uid").size()
fig, ax = plt.subplots(1, 2, figsize=(11, 3.5))
sizes.value_counts().sort_index().plot.bar(ax=ax[0], color="steelblue")
ax[0].set(title="people by number of identifiers", xlabel="identifiers", ylabel="people")
per_type = imap.people[rules.names].mean()
per_type.plot.bar(ax=ax[1], color="darkorange")
ax[1].set(title="mean identifiers per person, by type", ylabel="per person")
fig.tight_layout()

# %% [markdown]
# ## What was refused, and why
#
# A link is refused when applying it would give one person two values of a single-valued
# type (`single_valued:*`) or more than the allowed number of a many-valued one
# (`limit:*`); links through hub identifiers are not used at all (`hub`).

# %%
print(imap.audit["reason"].value_counts().to_string())
imap.audit.sort_values("last_ts", ascending=False).head(8)

# %%
imap.excluded.sort_values("n_observations", ascending=False).head(8)

# %% [markdown]
# ### A recycled phone
# A phone refused against one `user_id` but kept by another: under the recency rule the
# latest owner keeps it and the two owners stay separate people.

# %%
phone_refusals = imap.audit[
    (imap.audit["reason"] == "single_valued:user_id")
    & ((imap.audit["id_type_a"] == "phone") | (imap.audit["id_type_b"] == "phone"))
]
if len(phone_refusals):
    row = phone_refusals.iloc[0]
    phone = row["id_value_a"] if row["id_type_a"] == "phone" else row["id_value_b"]
    seen = ids[(ids["id_type"] == "phone") & (ids["id_value"] == phone)][["record_id", "ts"]]
    timeline = ids[ids["record_id"].isin(seen["record_id"]) & (ids["id_type"] == "user_id")]
    display(timeline.sort_values("ts")[["ts", "id_value", "source"]])  # noqa: F821
    print("phone", phone, "now belongs to", imap.lookup("phone", phone))

# %% [markdown]
# ## Score against the truth
# Every record is assigned the person of its highest-priority resolvable identifier;
# pairwise precision / recall / F1 of "same person" are computed from a contingency table
# (no pair enumeration).

# %%
truth = world.identity_truth
rec = assign_records(ids, imap).merge(truth, on="record_id", validate="1:1")
scores = pairwise_scores(rec["uid"], rec["person_id"])
per = imap.mapping.groupby(["uid", "id_type"]).size().unstack(fill_value=0)
violations = int(sum((per[t.name] > t.max_per_person).sum() for t in rules.types if t.name in per))
print({k: round(v, 5) for k, v in scores.items() if k in ("precision", "recall", "f1")})
print("people holding two values of a single-valued type (or over a limit):", violations)

# %% [markdown]
# ## Recency vs frequency

# %%
rows = []
for order in ("recency", "frequency"):
    m = resolve(ids, IdentityRules(order=order))
    r = assign_records(ids, m).merge(truth, on="record_id")
    s = pairwise_scores(r["uid"], r["person_id"])
    rows.append(
        {
            "order": order,
            "people": m.report.n_people,
            **{k: s[k] for k in ("precision", "recall", "f1")},
        }
    )
comparison = pd.DataFrame(rows)
comparison

# %% [markdown]
# ## Events get a uid; save the map

# %%
events = imap.attach_uid(world.events, warn=False)
unresolved = events.attrs["uid_unresolved"]
print(f"{unresolved:,} of {len(events):,} events ({unresolved / len(events):.2%}) have no uid")
saved = imap.save()
print("saved to", saved, "under", settings().processed_dir)
assert IdentityMap.load().n_people == imap.n_people

# %%
results = {
    "engine": ENGINE,
    "same_map_other_engine": same_map,
    "n_people": imap.report.n_people,
    "true_people": int(truth["person_id"].nunique()),
    "precision": scores["precision"],
    "recall": scores["recall"],
    "f1": scores["f1"],
    "violations": violations,
    "refused": len(imap.audit),
    "hubs": int(sum(imap.report.hubs.values())),
    "f1_frequency": float(comparison.loc[comparison["order"] == "frequency", "f1"].iloc[0]),
    "events_unresolved_share": unresolved / len(events),
}
results
