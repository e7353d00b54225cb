"""Watching running campaigns and stopping them by themselves: breakers, reconciliation, metrics.

:class:`Watcher` passes over every launched campaign (gray or full) each ``interval``
seconds. For each it reads the issuer's Redis state next to the ledger (its source of
truth) and the campaign's counters, exports them to Prometheus, and runs the breakers;
a breaker that trips pauses the campaign through the lifecycle as
:data:`~mktlab.campaigns.roles.SYSTEM` with the reason ``breaker:<name>`` and the
evidence in the audit log. The breakers:

- :class:`Reconciliation` — Redis and the ledger must agree: the coupons Redis says
  exist (``max(issued, ledger) + remaining + leased``) may not exceed the stock, the
  budget Redis can still spend plus what it spent may not exceed the campaign's, and
  Redis may not have issued coupons the ledger does not hold. Money beyond what the
  ledger and the budget allow is the loss; its rate over spend is reported (target
  < 0.001 %). It reads, it never repairs (:func:`mktlab.coupons.reconcile` repairs, on an
  operator's decision); pausing is what stops the loss.
- :class:`BudgetBurn` — spend so far against the plan to date (``plan.daily_spend`` pro
  rata, else the budget spread over the window) times ``factor``, after ``min_spend``.
- :class:`HarmfulEffect` — conversion of treated-eligible users against the holdout by
  an anytime-valid confidence sequence (:class:`mktlab.experiments.sequential.ConfidenceSequence`),
  so looking at every tick keeps its error rate: it trips when the whole interval is
  below ``-margin``.
- :class:`ErrorSpike` — errors over decisions in the last ``window`` seconds above
  ``rate`` once ``min_events`` decisions are in the window.

A breaker is any object with a ``name`` and ``check(observation) -> Trip | None``.

Counters live in one Redis hash per campaign, ``<namespace>:metrics:{<id>}``
(:class:`CampaignCounters`: decisions, treated, holdout, conv_treated, conv_holdout,
redeemed, errors). The issued count and spend come from the issuer and the ledger, so
they are always real. The live engine increments the hash exactly once per checkpoint
(:class:`mktlab.campaigns.counters.LiveTally`: decisions, users per arm, their first
conversion, failed effects); :meth:`CampaignCounters.add` is there for tests and counts
kept elsewhere.

Reconciliation runs on every tick, so its delay is at most the interval plus one
pass's time; :attr:`Watcher.last_reconciled_at` and :attr:`Watcher.reconcile_delay`
(``mktlab_campaign_reconcile_delay_seconds``) record it per campaign.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from mktlab.campaigns.counters import COUNTERS, CampaignCounters  # noqa: F401 (re-exported)
from mktlab.campaigns.roles import SYSTEM
from mktlab.campaigns.spec import CampaignSpec


@dataclass(frozen=True)
class Trip:
    """A breaker's finding: which ``breaker``, the ``reason`` in words, the evidence."""

    breaker: str
    reason: str
    detail: dict = field(default_factory=dict)


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

    @property
    def cost_cents(self) -> int:
        """One coupon's cost to the issuer (its definition in Redis, else the spec's face value)."""
        return int(self.status.get("cost_cents", round(self.spec.face_value * 100)))

    @property
    def budget_cents(self) -> int:
        if "budget_cents" in self.status:
            return int(self.status["budget_cents"])
        return round(float(self.status.get("budget", self.spec.max_spend)) * 100)


class Reconciliation:
    """Redis against the ledger, read-only; trips on any disagreement above ``tolerance`` coupons.

    Redis may promise no more than the stock (``remaining + max(issued, ledger) + leased``),
    no more budget than the campaign's (shards' ``budget`` left plus what Redis spent),
    and may not have issued coupons the ledger does not hold (``issued`` beyond
    ``ledger + outbox + pending``). The loss is money out beyond what the ledger and the
    budget allow: unrecorded coupons plus ledger rows over the stock or the budget.
    """

    name = "reconciliation"

    def __init__(self, tolerance: int = 0):
        self.tolerance = int(tolerance)

    def measure(self, o: Observation) -> dict[str, Any]:
        st, cost, budget = o.status, o.cost_cents, o.budget_cents
        leased = max(int(st.get("leased_outstanding", 0)), 0)
        issued, ledger, stock = int(st["issued"]), int(st["ledger_issued"]), int(st["stock"])
        in_flight = int(st.get("outbox_backlog", 0)) + int(st.get("pending", 0))
        excess_stock = int(st["remaining"]) + max(issued, ledger) + leased - stock
        unrecorded = issued - ledger - in_flight
        shards = [s for s in st.get("shards", ()) if s.get("ready")]
        excess_budget = (  # cents Redis could still spend beyond the budget
            sum(int(s["budget_left_cents"] or 0) for s in shards)
            + (issued + leased) * cost
            - budget
            if shards
            else 0
        )
        loss = max(unrecorded, 0) * cost + max(
            max(ledger - stock, 0) * cost, ledger * cost - budget, 0
        )
        spend = ledger * cost
        return {"stock": stock, "redis_issued": issued, "redis_remaining": int(st["remaining"]),
                "ledger_issued": ledger, "in_flight": in_flight, "excess_stock": excess_stock,
                "unrecorded": unrecorded, "excess_budget": excess_budget / 100,
                "redis_spend": issued * cost / 100, "ledger_spend": spend / 100, "loss": loss / 100,
                "loss_rate": loss / spend if spend else (math.inf if loss else 0.0)}  # fmt: skip

    def check(self, o: Observation) -> Trip | None:
        d, tol = self.measure(o), self.tolerance
        over = (d["excess_stock"] > tol or d["unrecorded"] > tol or d["loss"] > 0
                or d["excess_budget"] * 100 > tol * o.cost_cents)  # fmt: skip
        if not over:
            return None
        return Trip(self.name, f"Redis and the ledger disagree: {d['excess_stock']} coupon(s) more in Redis than the "
                    f"stock, {d['unrecorded']} issued in Redis but not in the ledger, {d['excess_budget']:,.2f} of "
                    f"budget beyond the campaign's; loss {d['loss']:,.2f}", d)  # fmt: skip


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
    """Errors over decisions in the last ``window`` seconds above ``rate``, once ``min_events`` are in.

    The counters are cumulative; the breaker keeps a snapshot per tick and compares with
    the newest one at least ``window`` old (the first look of a campaign counts from zero,
    so a watcher started late sees the whole run once).
    """

    name = "error_spike"

    def __init__(self, rate: float = 0.05, min_events: int = 200, window: float = 300.0,
                 min_decisions: int | None = None):  # fmt: skip
        self.rate, self.window = float(rate), float(window)
        self.min_events = int(min_events if min_decisions is None else min_decisions)
        self._seen: dict[str, deque[tuple[float, int, int]]] = {}

    def check(self, o: Observation) -> Trip | None:
        d, e = o.counters["decisions"], o.counters["errors"]
        hist = self._seen.setdefault(o.campaign_id, deque())
        old = None
        while hist and hist[0][0] <= o.now - self.window:
            old = hist.popleft()
        if old is not None:  # the newest snapshot at least a window old is the baseline
            hist.appendleft(old)
        t0, d0, e0 = hist[0] if hist else (o.now, 0, 0)
        hist.append((o.now, d, e))
        dd, de = d - d0, e - e0
        if dd < self.min_events or de / dd <= self.rate:
            return None
        return Trip(self.name, f"{de} errors in {dd} decisions over the last {o.now - t0:.0f} s "
                    f"({de / dd:.1%} > {self.rate:.1%})",
                    {"errors": de, "decisions": dd, "rate": de / dd, "window_s": o.now - t0})  # fmt: skip


def default_breakers() -> list[Any]:
    return [Reconciliation(), BudgetBurn(), HarmfulEffect(), ErrorSpike()]


class Watcher:
    """Run the breakers over every launched campaign (see the module docstring).

    Parameters
    ----------
    lifecycle : Lifecycle
        Its issuer and namespace are the ones watched; it pauses tripped campaigns.
    redis : redis client, optional
        Where the campaign counters are (default: the lifecycle's issuer's Redis).
    ledger : Ledger, optional
        The ledger counted against Redis (default: the issuer's own).
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
        redis: Any = None,
        ledger: Any = None,
        breakers: list | None = None,
        interval: float = 5.0,
        registry: Any = None,
    ):
        self.lifecycle = lifecycle
        self.ledger = lifecycle.issuer.ledger if ledger is None else ledger
        self.breakers = default_breakers() if breakers is None else list(breakers)
        self.interval = float(interval)
        redis = lifecycle.issuer.redis if redis is None else redis
        self.counters = CampaignCounters(redis, lifecycle.namespace)
        from prometheus_client import REGISTRY

        self.registry = REGISTRY if registry is None else registry
        self.metrics = campaign_metrics(self.registry)
        self.last_tick: dict[str, float] = {}
        self.last_reconciled_at: dict[str, float] = {}  # campaign -> when Redis met the ledger
        self.reconcile_delay: dict[str, float] = {}  # campaign -> worst age of what was compared
        self.observed: dict[str, Observation] = {}  # campaign -> what the last pass read of it
        self._recon = next((b for b in self.breakers if isinstance(b, Reconciliation)),
                           Reconciliation())  # fmt: skip
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def observe(self, rec: dict[str, Any], now: float) -> Observation:
        cid, issuer = rec["campaign_id"], self.lifecycle.issuer
        launched = self.lifecycle.launched_at(cid) or rec["updated_at"]
        st = issuer.status(cid)
        if self.ledger is not issuer.ledger:
            st["ledger_issued"] = self.ledger.count(cid)
        c = issuer.campaign(cid)
        st["cost_cents"], st["budget_cents"] = c.cost_cents, c.budget_cents
        return Observation(cid, CampaignSpec.from_dict(rec["spec"]), launched, now, st,
                           self.counters.read(cid))  # fmt: skip

    def tick(self, now: float | None = None) -> list[Trip]:
        """One pass: advance scheduled campaigns, observe, export, trip, pause. Returns the trips.

        A campaign that cannot be read or paused is logged and counted
        (``mktlab_campaign_watch_errors_total``); the others are still watched.
        """
        t0 = time.time()
        now = t0 if now is None else now
        try:  # scheduled campaigns start, expired ones end; a failure there must not stop the breakers
            self.lifecycle.advance(SYSTEM, now=now)
        except Exception:
            logging.getLogger("mktlab.campaigns.watch").exception("advancing campaigns failed")
            self.metrics["watch_errors"].labels(campaign="*").inc()
        trips: list[Trip] = []
        running = self.lifecycle.running()
        for rec in running:
            cid = rec["campaign_id"]
            try:
                trip = self._watch_one(rec, now)
            except Exception:  # one campaign's trouble must not blind the watcher to the rest
                logging.getLogger("mktlab.campaigns.watch").exception("watching %s failed", cid)
                self.metrics["watch_errors"].labels(campaign=cid).inc()
                continue
            if trip is not None:
                trips.append(trip)
        done = time.time()
        self.last_tick = {"started": t0, "seconds": done - t0, "campaigns": len(running)}
        self.metrics["reconciled"].set(done)
        return trips

    def _watch_one(self, rec: dict[str, Any], now: float) -> Trip | None:
        cid = rec["campaign_id"]
        if self.lifecycle.heal(
            rec
        ):  # the published state or the issuer had drifted from the registry
            logging.getLogger("mktlab.campaigns.watch").warning(
                "campaign %s: state re-published", cid
            )
        compared_from = time.time()  # a ledger write before this moment is in the comparison
        o = self.observed[cid] = self.observe(rec, now)
        prev = self.last_reconciled_at.get(cid)
        self.last_reconciled_at[cid] = compared_from
        # worst case: a write just after the previous comparison began waited until this one ended
        self.reconcile_delay[cid] = (time.time() - prev) if prev is not None else 0.0
        self._export(rec, o)
        if rec["state"] not in ("gray", "full"):
            return None
        for b in self.breakers:
            trip = b.check(o)
            if trip is None:
                continue
            self.lifecycle.pause(cid, SYSTEM, reason=f"breaker:{trip.breaker}",
                                 detail={"why": trip.reason, **_finite(trip.detail)})  # fmt: skip
            self.metrics["trips"].labels(campaign=cid, breaker=trip.breaker).inc()
            self._set_state(cid, "paused")
            return trip
        return None

    def _set_state(self, cid: str, state: str) -> None:
        for s in STATES:
            self.metrics["state"].labels(campaign=cid, state=s).set(1 if s == state else 0)

    def _export(self, rec: dict[str, Any], o: Observation) -> None:
        m, cid, c, st = self.metrics, o.campaign_id, o.counters, o.status
        for k in ("decisions", "redeemed", "errors"):
            m[k].labels(campaign=cid).set(c[k])
        m["issued"].labels(campaign=cid).set(st["issued"])
        m["ledger_issued"].labels(campaign=cid).set(st["ledger_issued"])
        for arm in ("treated", "holdout"):
            m["conversions"].labels(campaign=cid, arm=arm).set(c[f"conv_{arm}"])
            m["exposed"].labels(campaign=cid, arm=arm).set(c[arm])
        m["spend"].labels(campaign=cid).set(o.spend)
        m["plan"].labels(campaign=cid).set(o.spec.planned_spend(o.now - o.launched_at))
        self._set_state(cid, rec["state"])
        r = self._recon.measure(o)
        mismatch = self._recon.check(o) is not None
        m["mismatch"].labels(campaign=cid).set(1 if mismatch else 0)
        m["loss"].labels(campaign=cid).set(r["loss"])
        m["loss_rate"].labels(campaign=cid).set(min(r["loss_rate"], 1e9))
        m["delay"].labels(campaign=cid).set(self.reconcile_delay.get(cid, 0.0))
        m["reconciled_at"].labels(campaign=cid).set(self.last_reconciled_at[cid])

    def run(self, stop: threading.Event) -> None:
        """Tick every ``interval`` seconds until ``stop`` is set (a failed tick is logged)."""
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # the registry database or Redis hiccuped: keep watching
                logging.getLogger("mktlab.campaigns.watch").exception("watch tick failed")
            stop.wait(self.interval)

    def start(self) -> None:
        """Tick every ``interval`` seconds in a background thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, args=(self._stop,), name="mktlab-watch",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    """The evidence as JSON can hold it (an infinite loss rate is written as null)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


STATES = ("scheduled", "gray", "full", "paused", "ended")
# one set of metrics per registry, held no longer than the registry (an id() key could be
# reused by a new registry after the old one was collected, which then got no metrics)
_METRICS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
METRIC_NAMES = {
    "decisions": "mktlab_campaign_decisions", "issued": "mktlab_campaign_issued",
    "ledger_issued": "mktlab_campaign_ledger_issued",
    "redeemed": "mktlab_campaign_redeemed", "errors": "mktlab_campaign_errors",
    "conversions": "mktlab_campaign_conversions", "exposed": "mktlab_campaign_exposed",
    "spend": "mktlab_campaign_spend", "plan": "mktlab_campaign_planned_spend",
    "state": "mktlab_campaign_state", "mismatch": "mktlab_campaign_reconcile_mismatch",
    "loss": "mktlab_campaign_loss", "loss_rate": "mktlab_campaign_loss_rate",
    "delay": "mktlab_campaign_reconcile_delay_seconds",
    "reconciled_at": "mktlab_campaign_reconciled_timestamp_seconds",
    "trips": "mktlab_campaign_breaker_trips_total",
    "watch_errors": "mktlab_campaign_watch_errors_total",
    "reconciled": "mktlab_campaign_last_reconciled_timestamp_seconds",
}  # fmt: skip
_HELP = {
    "decisions": "decisions made for the campaign (treated and holdout)",
    "issued": "coupons issued according to Redis", "ledger_issued": "coupons in the ledger",
    "redeemed": "coupons redeemed", "errors": "decisions that ended in an error",
    "spend": "money committed by issued coupons (ledger)", "plan": "spend the plan allows to date",
    "state": "1 for the campaign's lifecycle state", "mismatch": "1 while Redis and the ledger disagree",
    "loss": "money issued beyond what the ledger and budget allow", "loss_rate": "loss / spend",
    "delay": "worst age of a ledger write at the last comparison (interval + pass time)",
    "reconciled_at": "when the watcher last compared this campaign's Redis state with the ledger",
}  # fmt: skip


def campaign_metrics(registry: Any = None) -> dict[str, Any]:
    """The Prometheus metrics of the watched campaigns (one set per registry)."""
    from prometheus_client import REGISTRY, Counter, Gauge

    reg = REGISTRY if registry is None else registry
    hit = _METRICS.get(reg)
    if hit is not None:
        return hit
    n = METRIC_NAMES
    g = {k: Gauge(n[k], _HELP[k], ["campaign"], registry=reg) for k in _HELP if k != "state"}
    g["state"] = Gauge(n["state"], _HELP["state"], ["campaign", "state"], registry=reg)
    g["conversions"] = Gauge(
        n["conversions"], "conversions by arm", ["campaign", "arm"], registry=reg
    )
    g["exposed"] = Gauge(n["exposed"], "users decided by arm", ["campaign", "arm"], registry=reg)
    for k, labels in (("trips", ["campaign", "breaker"]), ("watch_errors", ["campaign"])):
        g[k] = Counter(n[k].removesuffix("_total"), k.replace("_", " "), labels, registry=reg)
    g["reconciled"] = Gauge(
        n["reconciled"], "when the watcher last finished a pass over all campaigns", registry=reg
    )
    _METRICS[reg] = g
    return g
