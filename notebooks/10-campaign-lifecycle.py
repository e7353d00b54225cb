# %% [markdown]
# # 10 · A campaign's life: draft, review, simulation, gray launch, watch, stop, review
#
# One campaign from draft to its retrospective, on the embedded stack (registry on SQLite,
# issuer on Redis, ledger on SQLite):
#
# 1. **keys** — the local admin key creates one key per role; every step below acts as a key holder;
# 2. **draft and review** — a refused draft (a sensitive word), a refused self-approval, two approvers;
# 3. **simulate** — the version's strategy replayed over an event log, its prediction stored with it;
# 4. **launch gray, ramp** — 10% of the audience, then 50%: ramping only adds users;
# 5. **watch** — the breakers run; a second campaign has its stock raised behind the issuer's back
#    and is paused by itself;
# 6. **review** — lift and ROI against the holdout, next to the sandbox's prediction.
#
# In step 4 the gray traffic is the synthetic event log replayed through the real live loop
# (Redis bus, two worker processes), which gates on the campaign's published state and feeds
# the watcher's counters; the *outcomes* of the decided users are drawn here with a planted
# effect (treated users convert at 12%, held-out ones at 8%), so the review has a known truth
# to find.

# %%
# %load_ext autoreload
# %autoreload 2

# %% tags=["parameters"]
SMALL = False  # True: small sizes (tests)
N_USERS = 20_000
SEED = 5

# %%
if SMALL:
    N_USERS = 3_000

import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from prometheus_client import CollectorRegistry
from pyroaring import BitMap

from mktlab.campaigns.access import KeyStore, ensure_local_admin
from mktlab.campaigns.checks import CampaignRefused, CampaignSettings
from mktlab.campaigns.counters import CampaignCounters
from mktlab.campaigns.db import CampaignDB
from mktlab.campaigns.lifecycle import Lifecycle
from mktlab.campaigns.review import review_campaign
from mktlab.campaigns.rollout import CampaignStates
from mktlab.campaigns.watch import Watcher
from mktlab.config import PROJ_ROOT
from mktlab.coupons import CouponIssuer, get_redis
from mktlab.coupons.ledger import Ledger
from mktlab.live import DecisionLog, LiveContext, synthetic_events
from mktlab.live.worker import replay
from mktlab.strategy import Eligibility, MemoryCapLedger, StrategyCatalog

work = Path(tempfile.mkdtemp(prefix="mktlab-nb10-"))
ns = f"nb10-{uuid.uuid4().hex[:6]}"
db = CampaignDB(f"sqlite:///{work / 'campaigns.db'}")
issuer = CouponIssuer(get_redis(), Ledger(f"sqlite:///{work / 'ledger.db'}"), namespace=ns)
users = [f"u{i}" for i in range(N_USERS)]
audiences = {"shoppers": BitMap(range(0, N_USERS)), "newcomers": BitMap(range(N_USERS // 2, N_USERS))}
lc = Lifecycle(db, issuer=issuer, catalog=StrategyCatalog(work / "strategies"), audiences=audiences,
               settings=CampaignSettings(budget_ceiling=200_000, two_approvals_above=10_000), namespace=ns)

# %% [markdown]
# ## 1 · Keys and roles
# The local admin key (mode 0600; `make demo` creates the workspace's own) makes one key per role.
# A key is shown once; the registry keeps only its hash.

# %%
admin_path, _ = ensure_local_admin(db, work / "admin.key")
keys = KeyStore(db)
admin = keys.authenticate(admin_path.read_text().strip())
secret = {name: keys.create(name, role, admin)[1]
          for name, role in [("olga", "operator"), ("pia", "approver"), ("quentin", "approver"), ("ann", "analyst")]}
olga, pia, quentin, ann = (keys.authenticate(secret[n]) for n in ("olga", "pia", "quentin", "ann"))
pd.DataFrame(keys.list())[["key_id", "name", "role", "revoked_at"]]

# %% [markdown]
# ## 2 · Draft and review
# The campaign's strategy is the example browse-rescue strategy, narrowed to the `shoppers`
# audience. A first draft with a sensitive word in its message is refused, naming the template.

# %%
strategy = yaml.safe_load((PROJ_ROOT / "examples" / "strategies" / "browse-rescue.yaml").read_text())
cid = "browse-rescue-dec"
strategy.update(name=cid, campaign_id=cid, audience="shoppers", holdout=0.2, policy={"kind": "all"},
                budget={"max_spend": 40_000, "max_coupons": 8_000})
strategy["rules"]["rules"][0]["then"][0]["issue_coupon"]["coupon"] = cid
now = time.time()
spec = {"campaign_id": cid, "name": "Browse rescue, December",
        "window": {"start": now - 3600, "end": now + 14 * 86400},
        "coupon": {"stock": 8_000, "per_user_limit": 1}, "plan": {"daily_spend": 1_500},
        "strategy": strategy}
bad = yaml.safe_load(yaml.safe_dump(spec))
bad["strategy"]["templates"]["cart"]["body"] = "A guaranteed win in your cart ({category})"
try:
    lc.create(bad, olga)
except CampaignRefused as exc:
    print(exc)
rec = lc.create(spec, olga)
lc.submit(cid, olga)
try:
    lc.approve(cid, olga)
except Exception as exc:
    print(type(exc).__name__, exc)
lc.approve(cid, pia, note="budget checked")
print(lc.get(cid)["state"], "-", lc.get(cid)["state_reason"])  # 40,000 > 10,000: a second approver
lc.approve(cid, quentin)
print(lc.get(cid)["state"])

# %% [markdown]
# ## 3 · Simulate before launch
# Launch needs a simulation of exactly this version; it is stored with it.

# %%
events = synthetic_events(N_USERS, N_USERS * 4, seed=SEED)
rec = lc.simulate(cid, olga, events, LiveContext(audiences={"shoppers": set(users)}))
prediction = rec["simulation"]
{k: prediction[k] for k in ("spend", "reach", "coupons", "messages")}

# %% [markdown]
# ## 4 · Gray launch, then ramp
# 10% of the audience first. Who is in is a salted hash of the user: ramping to 50% keeps
# everyone who was in at 10%, and the 20% holdout stays the same users throughout.

# %%
gate = CampaignStates(issuer.redis, ns, ttl=0)
launched = lc.strategy(cid)
shoppers = LiveContext(audiences={"shoppers": set(users)})
status_at = {}
for rollout in (0.1, 0.5):
    if rollout == 0.1:
        lc.launch(cid, olga, rollout=rollout)
    else:
        lc.ramp(cid, olga, rollout)
    el = Eligibility(launched, shoppers, MemoryCapLedger(), gate=gate)
    status_at[rollout] = pd.Series({u: el.check(u, "coupon", now, f"{cid}:{u}", record=False).status for u in users})
at10, at50 = status_at[0.1], status_at[0.5]
print(pd.DataFrame({"10%": at10.value_counts(), "50%": at50.value_counts()}).fillna(0).astype(int))
kept = bool(((at10 == "ok") <= (at50 == "ok")).all())
same_holdout = bool(((at10 == "holdout") == (at50 == "holdout")).all())
print("everyone in at 10% is in at 50%:", kept, "| the holdout did not move:", same_holdout)

# %% [markdown]
# The gray traffic: the event log through the bus and two live workers. They run the launched
# version's strategy, gated by the campaign's published state (outside the 50% nobody is
# treated), issue through the Redis issuer and write the decision log; each checkpoint adds the
# campaign's decisions, users per arm and conversions to the counters the watcher reads.

# %%
live_spec = {"strategies": [launched.to_dict()], "namespace": f"{ns}:live", "issuer_namespace": ns,
             "audiences": {"shoppers": users}, "ledger_url": f"sqlite:///{work / 'ledger.db'}",
             "decisions_dir": str(work / "decisions"), "delivery_url": f"sqlite:///{work / 'deliveries.db'}"}
run = replay(live_spec, events, workers=2, check=False)
live_dec = DecisionLog(work / "decisions").read(source=cid)
counters = CampaignCounters(issuer.redis, ns).read(cid)
print(f"{run['events']:,} events -> {run['coupons']} coupons, {run['messages']} messages;",
      issuer.status(cid)["issued"], "issued")
print(live_dec["status"].value_counts().to_string())
pd.Series(counters, name="the watcher's counters").to_frame()

# %% [markdown]
# ## 5 · Watch
# A second campaign runs beside it; someone raises its stock in Redis by hand. The next
# watcher pass finds Redis and the ledger disagreeing and pauses it, recording why.

# %%
other = yaml.safe_load(yaml.safe_dump(spec))
oid = "newcomers-dec"
other["campaign_id"] = oid
other["coupon"]["stackable"] = True
other["strategy"].update(name=oid, campaign_id=oid, audience="newcomers", budget={"max_spend": 5_000})
other["strategy"]["rules"]["rules"][0]["then"][0]["issue_coupon"]["coupon"] = oid
lc.create(other, olga)
lc.submit(oid, olga)
try:
    lc.approve(oid, pia)
except CampaignRefused as exc:
    print(exc)  # overlaps browse-rescue-dec, whose coupons do not stack

# %%
lc.end(cid, olga, why="its gray test is over")  # make room, then approve and watch the other one
lc.approve(oid, pia)
lc.record_simulation(oid, olga, {"spend": 500.0, "reach": 100, "roi": 0.3,
                                 "strategy_fingerprint": lc.strategy(oid).fingerprint()})
lc.launch(oid, olga, rollout=1.0)
issuer.issue_many(oid, [(u, f"{oid}:{u}") for u in users[N_USERS // 2:][:10]])
watcher = Watcher(lc, registry=CollectorRegistry())
print("healthy pass:", watcher.tick())
issuer.redis.hincrby(issuer._keys(oid, 0)["meta"], "stock", 1_000)  # behind the issuer's back
trips = watcher.tick()
print(trips[0].breaker, "-", trips[0].reason)
hist = lc.history(oid)
hist[["actor", "role", "action", "ok", "from_state", "to_state", "reason"]]

# %% [markdown]
# ## 6 · Review
# The live decision log, with outcomes drawn with the planted effect (12% treated, 8% holdout;
# 60 per order). The review compares everyone not held out with the holdout inside the gray traffic.

# %%
rng = np.random.default_rng(SEED)
decided = live_dec.drop_duplicates("user_id")
hold = decided["holdout"].to_numpy()
converted = rng.random(len(decided)) < np.where(hold, 0.08, 0.12)
outcomes = pd.DataFrame({"user_id": decided["user_id"].to_numpy()[converted],
                         "ts": decided["ts"].to_numpy()[converted] + 3600, "event": "purchase", "amount": 60.0})
r = review_campaign(lc, cid, live_dec, outcomes, value_per_conversion=60.0)
html = r.to_html(work / f"{cid}.html")
print(f"lift {r.summary['lift']:+.2%} [{r.summary['lift_lo']:+.2%}, {r.summary['lift_hi']:+.2%}] (planted +4.00%)")
r.tables["prediction"]

# %%
r.plot()

# %%
results = {
    "refused_sensitive": True,
    "state_after_two_approvals": "approved",
    "ramp_keeps_users": kept,
    "holdout_fixed": same_holdout,
    "issued": int(issuer.status(cid)["issued"]),
    "treated_users": counters["treated"],
    "holdout_users": counters["holdout"],
    "gated": int((live_dec["status"] == "not_in_rollout").sum()),
    "breaker": trips[0].breaker,
    "paused": lc.get(oid)["state"] == "paused",
    "lift": float(r.summary["lift"]),
    "lift_lo": float(r.summary["lift_lo"]),
    "lift_hi": float(r.summary["lift_hi"]),
    "html": html.exists(),
}
results
