"""Watching running campaigns and stopping them by themselves: breakers, reconciliation, metrics.

:class:`Watcher` passes over every launched campaign (gray or full) each ``interval``
seconds. For each it reads the issuer's Redis state next to the ledger (its source of
truth) and the campaign's counters, exports them to Prometheus, and runs the breakers;
a breaker that trips pauses the campaign through the lifecycle as
:data:`~mktlab.campaigns.roles.SYSTEM` with the reason ``breaker:<name>`` and the
evidence in the audit log. The breakers:

- :class:`Reconciliation` — Redis and the ledger must agree: the coupons Redis says
  exist (issued + remaining + leased) may not exceed the stock, and Redis may not have
  issued coupons the ledger does not hold. Money beyond what the ledger allows is the
  loss; its rate over spend is reported. It reads, it never repairs
  (:func:`mktlab.coupons.reconcile` repairs, on an operator's decision).
- :class:`BudgetBurn` — spend so far against the plan to date (``plan.daily_spend`` pro
  rata, else the budget spread over the window) times ``factor``.
- :class:`HarmfulEffect` — conversion of treated-eligible users against the holdout by
  an anytime-valid confidence sequence (:class:`mktlab.experiments.sequential.ConfidenceSequence`),
  so looking at every tick keeps its error rate: it trips when the whole interval is
  below ``-margin``.
- :class:`ErrorSpike` — errors over decisions above ``rate`` once ``min_decisions`` are in.

Counters live in one Redis hash per campaign, ``<namespace>:metrics:{<id>}``
(:class:`CampaignCounters`: decisions, treated, holdout, conv_treated, conv_holdout,
redeemed, errors). The issued count and spend come from the issuer and the ledger.
Reconciliation runs on every tick, so its delay is the interval plus one tick's time
(``Watcher.last_tick`` records both).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from mktlab.campaigns.roles import SYSTEM
from mktlab.campaigns.spec import CampaignSpec

COUNTERS = ("decisions", "treated", "holdout", "conv_treated", "conv_holdout", "redeemed", "errors")


@dataclass(frozen=True)
class Trip:
    """A breaker's finding: which ``breaker``, the ``reason`` in words, the evidence."""

    breaker: str
    reason: str
    detail: dict = field(default_factory=dict)


class CampaignCounters:
    """The per-campaign counters in Redis (``<namespace>:metrics:{<campaign id>}``)."""

    def __init__(self, redis: Any, namespace: str):
        self.redis, self.namespace = redis, namespace

    def key(self, campaign_id: str) -> str:
        return f"{self.namespace}:metrics:{{{campaign_id}}}"

    def add(self, campaign_id: str, **counts: int) -> None:
        bad = sorted(set(counts) - set(COUNTERS))
        if bad:
            from mktlab.errors import ValidationError

            raise ValidationError(f"counters {bad}: expected some of {COUNTERS}")
        pipe = self.redis.pipeline(transaction=False)
        for k, v in counts.items():
            pipe.hincrby(self.key(campaign_id), k, int(v))
        pipe.execute()

    def read(self, campaign_id: str) -> dict[str, int]:
        raw = self.redis.hgetall(self.key(campaign_id))
        got = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        return {k: got.get(k, 0) for k in COUNTERS}


@dataclass
class Observation:
    """What the watcher read of one campaign in one tick."""

    campaign_id: str
    spec: CampaignSpec
    launched_at: float
    now: float
    status: dict[str, Any]
    counters: dict[str, int]

    @property
    def spend(self) -> float:
        return float(self.status.get("budget_used", 0.0))


class Reconciliation:
    name = "reconciliation"

    def check(self, o: Observation) -> Trip | None:
        st = o.status
        claimed = (
            int(st["issued"]) + int(st["remaining"]) + max(int(st.get("leased_outstanding", 0)), 0)
        )
        known = (
            int(st["ledger_issued"]) + int(st.get("outbox_backlog", 0)) + int(st.get("pending", 0))
        )
        excess_stock = claimed - int(st["stock"])
        unrecorded = int(st["issued"]) - known
        if excess_stock <= 0 and unrecorded <= 0:
            return None
        cost = o.spec.face_value
        loss = max(unrecorded, 0) * cost
        detail = {"stock": st["stock"], "redis_issued": st["issued"], "redis_remaining": st["remaining"],
                  "ledger_issued": st["ledger_issued"], "excess_stock": excess_stock, "unrecorded": unrecorded,
                  "loss": loss, "loss_rate": loss / o.spend if o.spend else (math.inf if loss else 0.0)}  # fmt: skip
        return Trip(self.name, f"Redis and the ledger disagree: {excess_stock} coupon(s) more in Redis than the "
                    f"stock, {unrecorded} issued in Redis but not in the ledger", detail)  # fmt: skip


class BudgetBurn:
    name = "budget_burn"

    def __init__(self, factor: float = 1.5, min_spend: float = 50.0, grace: float = 3600.0):
        self.factor, self.min_spend, self.grace = float(factor), float(min_spend), float(grace)

    def check(self, o: Observation) -> Trip | None:
        # the plan of at least the first `grace` seconds: a launch spends in bursts
        plan = o.spec.planned_spend(max(o.now - o.launched_at, self.grace))
        if o.spend < self.min_spend or o.spend <= self.factor * plan:
            return None
        return Trip(self.name, f"spend {o.spend:,.2f} is above {self.factor:g}x the plan to date ({plan:,.2f})",
                    {"spend": o.spend, "plan_to_date": plan, "factor": self.factor})  # fmt: skip


class HarmfulEffect:
    name = "harmful_effect"

    def __init__(
        self,
        alpha: float = 0.05,
        n_opt: float = 10_000,
        margin: float = 0.0,
        min_per_arm: int = 100,
    ):
        from mktlab.experiments.sequential import ConfidenceSequence

        self.cs, self.margin, self.min_per_arm = (
            ConfidenceSequence(alpha, n_opt),
            float(margin),
            int(min_per_arm),
        )

    def check(self, o: Observation) -> Trip | None:
        c = o.counters
        nt, nc = c["treated"], c["holdout"]
        if nt < self.min_per_arm or nc < self.min_per_arm:
            return None
        pt, pc = c["conv_treated"] / nt, c["conv_holdout"] / nc
        se = math.sqrt(max(pt * (1 - pt), 1e-12) / nt + max(pc * (1 - pc), 1e-12) / nc)
        lo, hi = (float(x) for x in self.cs.interval(pt - pc, se, nc, nt))
        if hi >= -self.margin:
            return None
        return Trip(self.name, f"treated convert at {pt:.2%} against {pc:.2%} in the holdout; the anytime-valid "
                    f"interval of the difference [{lo:+.2%}, {hi:+.2%}] is below 0",
                    {"treated": nt, "holdout": nc, "rate_treated": pt, "rate_holdout": pc, "lo": lo, "hi": hi})  # fmt: skip


class ErrorSpike:
    name = "error_spike"

    def __init__(self, rate: float = 0.05, min_decisions: int = 200):
        self.rate, self.min_decisions = float(rate), int(min_decisions)

    def check(self, o: Observation) -> Trip | None:
        d, e = o.counters["decisions"], o.counters["errors"]
        if d < self.min_decisions or e / d <= self.rate:
            return None
        return Trip(self.name, f"{e} errors in {d} decisions ({e / d:.1%} > {self.rate:.1%})",
                    {"errors": e, "decisions": d, "rate": e / d})  # fmt: skip


def default_breakers() -> list[Any]:
    return [Reconciliation(), BudgetBurn(), HarmfulEffect(), ErrorSpike()]


class Watcher:
    """Run the breakers over every launched campaign (see the module docstring).

    Parameters
    ----------
    lifecycle : Lifecycle
        Its issuer and namespace are the ones watched; it pauses tripped campaigns.
    breakers : list, optional
        Default :func:`default_breakers`.
    interval : float
        Seconds between ticks of :meth:`start`.
    registry : prometheus_client.CollectorRegistry, optional
        Where the metrics go (default: the process's global registry).
    """

    def __init__(
        self,
        lifecycle: Any,
        *,
        breakers: list | None = None,
        interval: float = 5.0,
        registry: Any = None,
    ):
        self.lifecycle = lifecycle
        self.breakers = default_breakers() if breakers is None else list(breakers)
        self.interval = float(interval)
        self.counters = CampaignCounters(lifecycle.issuer.redis, lifecycle.namespace)
        from prometheus_client import REGISTRY

        self.registry = REGISTRY if registry is None else registry
        self.metrics = campaign_metrics(self.registry)
        self.last_tick: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def observe(self, rec: dict[str, Any], now: float) -> Observation:
        cid = rec["campaign_id"]
        launched = self.lifecycle.launched_at(cid) or rec["updated_at"]
        return Observation(cid, CampaignSpec.from_dict(rec["spec"]), launched, now,
                           self.lifecycle.issuer.status(cid), self.counters.read(cid))  # fmt: skip

    def tick(self, now: float | None = None) -> list[Trip]:
        """One pass: advance scheduled campaigns, observe, export, trip, pause. Returns the trips."""
        t0 = time.time()
        now = t0 if now is None else now
        self.lifecycle.advance(SYSTEM, now=now)
        trips: list[Trip] = []
        for rec in self.lifecycle.running():
            o = self.observe(rec, now)
            self._export(rec, o)
            if rec["state"] not in ("gray", "full"):
                continue
            for b in self.breakers:
                trip = b.check(o)
                if trip is None:
                    continue
                self.metrics["trips"].labels(campaign=o.campaign_id, breaker=trip.breaker).inc()
                self.lifecycle.pause(o.campaign_id, SYSTEM, reason=f"breaker:{trip.breaker}",
                                     detail={"why": trip.reason, **trip.detail})  # fmt: skip
                self.metrics["state"].labels(campaign=o.campaign_id).set(STATE_CODES["paused"])
                trips.append(trip)
                break
        self.last_tick = {
            "started": t0,
            "seconds": time.time() - t0,
            "campaigns": len(self.lifecycle.running()),
        }
        self.metrics["reconciled"].set(time.time())
        return trips

    def _export(self, rec: dict[str, Any], o: Observation) -> None:
        m, cid, c, st = self.metrics, o.campaign_id, o.counters, o.status
        for k in ("decisions", "redeemed", "errors"):
            m[k].labels(campaign=cid).set(c[k])
        m["issued"].labels(campaign=cid).set(st["issued"])
        m["conversions"].labels(campaign=cid, arm="treated").set(c["conv_treated"])
        m["conversions"].labels(campaign=cid, arm="holdout").set(c["conv_holdout"])
        m["exposed"].labels(campaign=cid, arm="treated").set(c["treated"])
        m["exposed"].labels(campaign=cid, arm="holdout").set(c["holdout"])
        m["spend"].labels(campaign=cid).set(o.spend)
        m["plan"].labels(campaign=cid).set(o.spec.planned_spend(o.now - o.launched_at))
        m["state"].labels(campaign=cid).set(STATE_CODES.get(rec["state"], -1))
        r = Reconciliation().check(o)
        m["mismatch"].labels(campaign=cid).set(0 if r is None else 1)
        m["loss_rate"].labels(campaign=cid).set(
            0.0 if r is None else min(r.detail["loss_rate"], 1e9)
        )

    def start(self) -> None:
        """Tick every ``interval`` seconds in a background thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.tick()
                except Exception:  # a database or Redis hiccup: log it, keep watching
                    import logging

                    logging.getLogger("mktlab.campaigns.watch").exception("watch tick failed")
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, name="mktlab-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None


STATE_CODES = {"scheduled": 0, "gray": 1, "full": 2, "paused": 3, "ended": 4}
_METRICS: dict[int, dict[str, Any]] = {}
METRIC_NAMES = {
    "decisions": "mktlab_campaign_decisions", "issued": "mktlab_campaign_issued",
    "redeemed": "mktlab_campaign_redeemed", "errors": "mktlab_campaign_errors",
    "conversions": "mktlab_campaign_conversions", "exposed": "mktlab_campaign_exposed",
    "spend": "mktlab_campaign_spend", "plan": "mktlab_campaign_planned_spend",
    "state": "mktlab_campaign_state", "mismatch": "mktlab_campaign_reconcile_mismatch",
    "loss_rate": "mktlab_campaign_loss_rate", "trips": "mktlab_campaign_breaker_trips_total",
    "reconciled": "mktlab_campaign_last_reconciled_timestamp_seconds",
}  # fmt: skip


def campaign_metrics(registry: Any = None) -> dict[str, Any]:
    """The Prometheus metrics of the watched campaigns (one set per registry)."""
    from prometheus_client import REGISTRY, Counter, Gauge

    reg = REGISTRY if registry is None else registry
    if id(reg) in _METRICS:
        return _METRICS[id(reg)]
    n = METRIC_NAMES
    g = {k: Gauge(n[k], f"campaign {k}", ["campaign"], registry=reg)
         for k in ("decisions", "issued", "redeemed", "errors", "spend", "plan", "state", "mismatch", "loss_rate")}  # fmt: skip
    g["conversions"] = Gauge(
        n["conversions"], "conversions by arm", ["campaign", "arm"], registry=reg
    )
    g["exposed"] = Gauge(n["exposed"], "users decided by arm", ["campaign", "arm"], registry=reg)
    g["trips"] = Counter(
        n["trips"].removesuffix("_total"), "breaker trips", ["campaign", "breaker"], registry=reg
    )
    g["reconciled"] = Gauge(
        n["reconciled"], "when the watcher last compared Redis with the ledger", registry=reg
    )
    _METRICS[id(reg)] = g
    return g
