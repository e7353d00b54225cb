# %% [markdown]
# # 09 · Live journeys: from a drawn journey to real events, coupons and messages
#
# A strategy is only worth what it does when events arrive. Here we
#
# 1. **define** a journey (cart abandonment: wait a day for an order, hold out 20%, then
#    a coupon-vs-reminder experiment) and a rule strategy (a first-view welcome message with a
#    frequency cap), validate both and draw the journey;
# 2. **simulate** them in the sandbox over the synthetic world's app events on an event-time
#    clock: what would be sent, issued and spent;
# 3. **launch** them: events go through the real event bus (Redis Streams here, RabbitMQ with
#    `BACKEND = "rabbitmq"`) to two worker processes, coupons through the Redis issuer, messages
#    through the gateway's delivery log;
# 4. **look** at deliveries, coupons and spend, and check the live decisions equal the
#    simulation's;
# 5. **evaluate** the journey from its own decision log: lift against the holdout, an
#    off-policy replay, and an uplift model retrained on the live logs.
#
# All the work happens in `mktlab.live`, `mktlab.strategy`, `mktlab.messaging` and
# `mktlab.sandbox`; this notebook calls them.

# %%
# %load_ext autoreload
# %autoreload 2

# %% tags=["parameters"]
SMALL = False  # True: a small world (tests)
N_USERS = 100_000  # people in the synthetic world
SEED = 11
WORKERS = 2  # live worker processes
BACKEND = "redis"  # or "rabbitmq" (RabbitMQ at MKTLAB_AMQP_URL)
PARTITIONS = 8

# %%
if SMALL:
    N_USERS = 4_000

import uuid

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mktlab.config import settings
from mktlab.coupons import Campaign, CouponIssuer, get_redis
from mktlab.datasets import make_world
from mktlab.live import DecisionLog, Journey, LiveContext, open_bus, publish_frame, validate
from mktlab.live import simulate as simulate_journeys
from mktlab.live.decisions import same_decisions, simulated_decisions
from mktlab.live.diagram import draw, to_mermaid
from mktlab.live.runner import definitions, load_spec
from mktlab.live.worker import run_workers
from mktlab.messaging import DeliveryLog
from mktlab.strategy import Strategy
from mktlab.strategy import simulate as simulate_strategies

world = make_world(N_USERS, SEED, out_dir=settings().interim_dir / "live-world")
app = world.events[world.events["id_type"] == "user_id"]  # events the app sends with a login
events = pd.DataFrame({
    "event_id": "w" + app["event_id"].astype(str),
    "user_id": app["id_value"].astype(str),
    "ts": app["ts"].astype("datetime64[ns]").astype("int64") / 1e9,
    "event": app["event"].astype(str),
    "category": app["category"].astype(str),
    "amount": app["amount"].astype(float),
}).sort_values("ts", kind="stable").reset_index(drop=True)  # fmt: skip
print(f"{len(events):,} app events of {events['user_id'].nunique():,} users, "
      f"{pd.to_datetime(events['ts'].min(), unit='s'):%Y-%m-%d} .. {pd.to_datetime(events['ts'].max(), unit='s'):%Y-%m-%d}")  # fmt: skip
events["event"].value_counts()

# %% [markdown]
# ## 1 · Define: a journey and a rule strategy, as data
#
# The journey enters a user who adds to the cart, waits a day for an order, keeps 20% out
# as a holdout (for the whole campaign, by salted hash), splits the rest 50/50 between a
# coupon (during the user's day time) and a reminder, and watches for an order for three
# more days. (Windowed entries such as "3 views of one category within 30 minutes and no
# order" are written `trigger: {pattern: ...}`: see `examples/journeys/browse_abandon.yaml`.)
# Validation names any bad node.

# %%
JOURNEY = """
name: cart-abandon
version: 1
campaign_id: nb-cart
nodes:
  - {id: start, type: entry, event: cart, reentry: after 7d, next: wait_order}
  - {id: wait_order, type: wait, event: order, timeout: 1d, on_event: bought, on_timeout: holdout}
  - {id: holdout, type: split, by: holdout, fraction: 0.2, holdout: measure, treated: offer}
  - {id: offer, type: split, by: experiment, arms: {coupon: 1, reminder: 1},
     branches: {coupon: daytime, reminder: remind}}
  - {id: daytime, type: delay, until: "09:00-21:00", tz: Europe/Paris, next: coupon}
  - {id: coupon, type: coupon, value: 5, next: push_coupon}
  - {id: push_coupon, type: message, template: cart_coupon, channels: [push, sms], next: measure}
  - {id: remind, type: message, template: cart_reminder, channels: [push, email], next: measure}
  - {id: measure, type: wait, event: order, timeout: 3d, on_event: bought, on_timeout: done}
  - {id: bought, type: update, set: {lifecycle: active}, next: done}
  - {id: done, type: exit}
"""
TEMPLATES = {
    "cart_coupon": {"body": "5 off your cart, today only", "channels": ["push", "sms"]},
    "cart_reminder": {"body": "Still thinking about it? Your cart is waiting.",
                      "channels": ["push", "email"]},
    "beauty": {"body": "New in beauty this week", "channels": ["push", "inapp"]},
}  # fmt: skip
journey = validate(Journey.from_yaml(JOURNEY), templates=set(TEMPLATES))
bad = JOURNEY.replace("on_timeout: holdout", "on_timeout: nowhere")
try:
    Journey.from_yaml(bad)
except Exception as exc:  # validation names the node and the problem
    print("refused:", exc)
print(to_mermaid(journey))

# %%
STRATEGY = {
    "name": "beauty-news",
    "version": 1,
    "holdout": 0.1,
    "policy": {"kind": "random", "rate": 0.5},
    "rules": {"name": "beauty", "rules": [
        {"id": "beauty-view", "when": {"event": "view"},
         "if": [{"field": "event.category", "op": "==", "value": "beauty"}],
         "then": [{"send_message": {"channel": "push", "template": "beauty"}}]},
    ]},
    "caps": [{"channel": "*", "max": 1, "per": "7d"}],
    "channels": ["push", "inapp"],
    "templates": {"beauty": TEMPLATES["beauty"]},
}  # fmt: skip
strategy = Strategy.from_dict(STRATEGY)
print(strategy.key, strategy.fingerprint())

# %% [markdown]
# ## 2 · Simulate in the sandbox (event time, in memory)

# %%
ctx = LiveContext(tz="Europe/Paris")
sim_s = simulate_strategies(strategy, events, ctx).decisions_frame()
sim_j = simulate_journeys([journey], events, ctx, until=float(events["ts"].max()))
counts = sim_j.node_counts(journey.name)
fig = draw(journey, counts=counts)
fig.suptitle("cart-abandon: users per node (simulation)")
plt.show()
predicted = {
    "journey coupons": int((sim_j.effects["kind"] == "coupon").sum()),
    "journey messages": int((sim_j.effects["kind"] == "message").sum()),
    "rule messages": int(((sim_s["action"] == "message") & (sim_s["status"] == "ok")).sum()),
    "held out users": int(sim_j.decisions.loc[sim_j.decisions["holdout"], "user_id"].nunique()),
}
predicted["coupon spend"] = 5.0 * predicted["journey coupons"]
pd.Series(predicted, name="predicted")

# %% [markdown]
# ## 3 · Launch: the real bus, two worker processes, the Redis issuer, the gateway
#
# Every definition is validated again before a worker starts. Events are replayed from the
# world in time order and end with a watermark tick, so timers that fall after the last
# event resolve as in the simulation.

# %%
tag = uuid.uuid4().hex[:6]
live_dir = settings().live_dir / f"nb-{tag}"
spec = load_spec({
    "strategies": [STRATEGY], "journeys": [journey.to_dict()], "templates": TEMPLATES,
    "backend": BACKEND, "namespace": f"nb{tag}", "partitions": PARTITIONS, "tz": "Europe/Paris",
    "issuer_namespace": f"nb{tag}:cp", "ledger_url": f"sqlite:///{live_dir / 'ledger.db'}",
    "delivery_url": f"sqlite:///{live_dir / 'deliveries.db'}", "decisions_dir": str(live_dir / "decisions"),
    "idle_exit": 3.0,
})  # fmt: skip
live_dir.mkdir(parents=True, exist_ok=True)
definitions(spec)  # raises on anything invalid: nothing invalid can be launched
issuer = CouponIssuer(get_redis(), spec["ledger_url"], namespace=spec["issuer_namespace"])
issuer.create_campaign(Campaign("nb-cart", stock=1_000_000, face_value=5.0, per_user_limit=100))
with open_bus(BACKEND, partitions=PARTITIONS, namespace=spec["namespace"], groups=("live",)) as bus:
    pub = publish_frame(bus, events, tick=True, progress=True)
    summaries = run_workers(spec, WORKERS, wait=True)
    dead = bus.stats("live")["dead_letters"]
pd.DataFrame(summaries).drop(columns=["latencies"])

# %% [markdown]
# ## 4 · Look: deliveries, coupons, spend — and the live loop equals the simulation

# %%
log = DecisionLog(spec["decisions_dir"])
live = log.read()
deliveries = DeliveryLog(spec["delivery_url"]).deliveries()
status = issuer.status("nb-cart")
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
deliveries.groupby(["channel", "status"]).size().unstack(fill_value=0).plot.bar(ax=axes[0])
axes[0].set_title("deliveries by channel")
cp = live[(live["action"] == "coupon") & (live["status"] == "ok")].copy()
cp["day"] = pd.to_datetime(cp["ts"], unit="s").dt.floor("D")
(cp.groupby("day").size() * 5.0).cumsum().plot(ax=axes[1], drawstyle="steps-post")
axes[1].set_title("coupon spend (cumulative, face value)")
plt.tight_layout()
plt.show()


expected = simulated_decisions([strategy], [journey], events, ctx)  # the sandbox's decisions
live_equals_sim = same_decisions(live, expected)
print(
    f"published {pub['published']:,} events, {dead} dead letters; decisions live == simulation: {live_equals_sim}"
)
print(f"coupons issued {status['issued']:,} (ledger {issuer.ledger.count('nb-cart'):,}), "
      f"spend {status['budget_used']:,.0f}; deliveries {len(deliveries):,} "
      f"({deliveries['key'].nunique():,} distinct keys)")  # fmt: skip

# %% [markdown]
# ## 5 · Evaluate the journey from its own logs
#
# Every decision carries its arm and the propensity it was drawn with. Joined with the
# orders that followed (within 7 days), the log is sandbox logged data: the lift against
# the holdout, an off-policy replay of other policies, and an uplift model retrained on
# live decisions.
#
# One honest caveat: these events are a *recorded* history replayed through the loop, so
# the users cannot react to the coupons and messages we send now. The lift below is
# therefore noise around zero by construction; what this section shows is that the live
# logs are exactly what the estimators need. On real traffic the same three cells measure
# the real effect.

# %%
from mktlab.sandbox import TreatmentPolicy, compare, replay

profiles = world.profiles[
    ["user_id", "age", "tier_level", "recency_days", "frequency_90d", "monetary_90d"]
]
feats = ["age", "tier_level", "recency_days", "frequency_90d", "monetary_90d"]
ld = log.to_logged(events, source=journey.name, outcome_event="order", window="7d",
                   profiles=profiles, features=feats, actions=("split",), nodes=("holdout",))  # fmt: skip
frame = ld.frame  # one row per treated-or-held-out decision, with its propensity
rates = (
    frame.groupby("treatment")["converted"]
    .agg(["mean", "size"])
    .rename(index={0: "holdout", 1: "treated"})
)
lift = rates.loc["treated", "mean"] - rates.loc["holdout", "mean"]
print(rates, f"\nlift against the holdout: {lift:+.4f}")

# %%
res = [replay(Strategy(n, TreatmentPolicy(k)), ld, n_boot=200) for n, k in
       (("journey-as-run", "logged"), ("treat-everyone", "all"), ("treat-nobody", "none"))]  # fmt: skip
table = compare(res, baseline="journey-as-run")
table[["conversions", "conversions_lo", "conversions_hi", "estimator"]]

# %%
from mktlab.uplift import make_learner

X = ld.frame[feats].astype(float).fillna(0.0)
learner = make_learner("t").fit(
    X, ld.frame["treatment"].to_numpy(), ld.frame["converted"].to_numpy()
)
scores = learner.predict(X)
print(
    f"uplift retrained on {len(X):,} live decisions: mean predicted uplift {np.mean(scores):+.4f} "
    f"(observed lift {lift:+.4f})"
)

# %%
results = {
    "n_events": int(pub["published"]),
    "dead_letters": int(dead),
    "live_equals_sim": bool(live_equals_sim),
    "n_decisions": len(live),
    "n_coupons": int(status["issued"]),
    "ledger_coupons": int(issuer.ledger.count("nb-cart")),
    "sim_coupons": int(predicted["journey coupons"]),
    "n_deliveries": len(deliveries),
    "distinct_delivery_keys": int(deliveries["key"].nunique()),
    "holdout_share": float(rates.loc["holdout", "size"] / rates["size"].sum()),
    "lift": float(lift),
    "ope_finite": bool(np.isfinite(table["conversions"]).all()),
    "uplift_mean": float(np.mean(scores)),
}
results
