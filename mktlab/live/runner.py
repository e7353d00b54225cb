"""Build a live engine from a plain spec, so N worker processes build the same one.

A spec is a dict (or a YAML file, ``mktlab live run --spec live.yaml``)::

    strategies: [strategies/cart-rescue.yaml]     # files or inline strategy mappings
    journeys: [journeys/winback.yaml]             # files or inline journey mappings
    templates: {welcome: {body: "Hi {name}"}}     # more templates for journeys
    backend: redis                                # or rabbitmq (default: MKTLAB_BUS)
    namespace: mktlab:live
    partitions: 8
    group: live
    audiences: saved                              # saved bitmaps, or {name: [user ids]}
    uplift: {u1: 0.04}                            # or null
    tz: UTC
    issue: true                                   # coupons through the Redis issuer
    issuer_namespace: mktlab:cp                   # the issuer's key prefix
    ledger_url: null                              # default MKTLAB_LEDGER_URL / SQLite
    deliver: true                                 # messages through the gateway
    delivery_url: null                            # default MKTLAB_DELIVERY_URL / SQLite
    decisions_dir: null                           # default <processed>/live/decisions
    clock: event                                  # or wall
    idle_exit: null                               # seconds without events before exiting

Every definition is validated before anything starts: a strategy or journey that fails
validation cannot be launched.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mktlab.errors import ValidationError

SPEC_KEYS = {
    "strategies", "journeys", "templates", "backend", "namespace", "partitions", "group",
    "audiences", "uplift", "tz", "issue", "deliver", "delivery_url", "decisions_dir", "clock",
    "idle_exit", "batch", "stop_file", "worker_prefix", "base_dir", "quiet_hours", "caps",
    "issuer_namespace", "ledger_url", "checkpoint_every",
}  # fmt: skip


def load_spec(path_or_spec: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A spec dict from a YAML file or a mapping, with file references made absolute."""
    import yaml

    if isinstance(path_or_spec, Mapping):
        spec, base = dict(path_or_spec), Path(path_or_spec.get("base_dir") or ".")
    else:
        p = Path(path_or_spec)
        if not p.exists():
            raise ValidationError(f"live spec {str(p)!r}: no such file")
        spec, base = yaml.safe_load(p.read_text()) or {}, p.parent
        if not isinstance(spec, dict):
            raise ValidationError(f"live spec {str(p)!r}: expected a mapping")
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise ValidationError(f"live spec: unknown key(s) {unknown}; known: {sorted(SPEC_KEYS)}")
    if spec.get("clock", "event") not in ("event", "wall"):
        raise ValidationError(f"live spec: clock={spec['clock']!r}: expected 'event' or 'wall'")
    spec["base_dir"] = str(base.resolve())
    return spec


def _load_many(items: Any, base: Path, loader) -> list[Any]:
    out = []
    for i, it in enumerate(items or []):
        if isinstance(it, str):
            p = Path(it) if Path(it).is_absolute() else base / it
            out.append(loader(p))
        elif isinstance(it, Mapping):
            out.append(loader(dict(it)))
        else:
            raise ValidationError(f"live spec: item {i}: expected a file name or a mapping, got {it!r}")
    return out


def definitions(spec: Mapping[str, Any]) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """Strategies, journeys and templates of a spec, each validated (launch refuses bad ones)."""
    from mktlab.strategy import Strategy

    base = Path(spec.get("base_dir") or ".")

    def strat(x):
        return Strategy.from_yaml(x) if isinstance(x, Path) else Strategy.from_dict(x, base_dir=base)

    strategies = _load_many(spec.get("strategies"), base, strat)
    templates: dict[str, Any] = {}
    for s in strategies:
        for name, t in s.templates.items():
            templates[name] = {"body": t.body, "channels": list(t.channels)}
    for name, t in dict(spec.get("templates") or {}).items():
        templates[name] = t if isinstance(t, Mapping) else {"body": str(t)}
    journeys: list[Any] = []
    if spec.get("journeys"):
        from mktlab.live.journey import Journey, validate

        def jload(x):
            return Journey.from_yaml(x) if isinstance(x, Path) else Journey.from_dict(x)

        audiences = spec.get("audiences")
        known_aud = set(audiences) if isinstance(audiences, Mapping) else None
        for j in _load_many(spec.get("journeys"), base, jload):
            journeys.append(validate(j, audiences=known_aud, templates=set(templates) or None))
    return strategies, journeys, templates


def build_context(spec: Mapping[str, Any], redis: Any) -> Any:
    from mktlab.live.context import LiveContext

    aud = spec.get("audiences")
    if aud == "saved":
        from mktlab.audience.membership import SavedAudiences

        aud = SavedAudiences()
    elif isinstance(aud, Mapping):
        aud = {k: set(map(str, v)) for k, v in aud.items()}
    return LiveContext(audiences=aud, uplift=spec.get("uplift"), tz=spec.get("tz") or "UTC",
                       redis=redis, namespace=spec.get("namespace") or "mktlab:live")  # fmt: skip


def open_bus_for(spec: Mapping[str, Any]) -> Any:
    from mktlab.live.bus import open_bus

    return open_bus(spec.get("backend"), partitions=spec.get("partitions"),
                    namespace=spec.get("namespace") or "mktlab:live",
                    groups=(spec.get("group") or "live",))  # fmt: skip


def open_consumer(bus: Any, spec: Mapping[str, Any], *, name: str) -> Any:
    return bus.consumer(spec.get("group") or "live", name)


def build_engine(spec: Mapping[str, Any]) -> tuple[Any, Any]:
    """The :class:`~mktlab.live.engine.LiveEngine` and event bus a spec describes."""
    from mktlab.coupons.connection import get_redis
    from mktlab.live.decisions import DecisionLog
    from mktlab.live.effects import EffectExecutor
    from mktlab.live.engine import LiveEngine

    strategies, journeys, templates = definitions(spec)
    redis = get_redis()
    ns = spec.get("namespace") or "mktlab:live"
    issuer = gateway = None
    if spec.get("issue", True):
        from mktlab.coupons import CouponIssuer

        issuer = CouponIssuer(redis, spec.get("ledger_url"),
                              namespace=spec.get("issuer_namespace") or "mktlab:cp")  # fmt: skip
    if spec.get("deliver", True) and templates:
        from mktlab.messaging import DeliveryLog, Gateway, TemplateCatalog

        caps = []
        if spec.get("caps"):
            from mktlab.rules.model import cap_from_dict

            caps = [cap_from_dict(c, where=f"caps[{i}]") for i, c in enumerate(spec["caps"])]
        gateway = Gateway(DeliveryLog(spec.get("delivery_url")), TemplateCatalog.from_dict(templates),
                          caps=caps, default_tz=spec.get("tz") or "UTC")  # fmt: skip
    ctx = build_context(spec, redis)
    executor = EffectExecutor(issuer, gateway, redis, namespace=ns, tz=ctx.user_tz)
    decisions = DecisionLog(spec.get("decisions_dir"))
    engine = LiveEngine(strategies, journeys, context=ctx, redis=redis, executor=executor,
                        decisions=decisions, namespace=ns)  # fmt: skip
    return engine, open_bus_for(spec)


def replay(
    spec: Mapping[str, Any],
    events: Any,
    *,
    workers: int = 2,
    campaigns: Mapping[str, float] | None = None,
    check: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Replay an event frame through the live loop and summarise what it did.

    Publishes ``events`` (with a closing watermark), runs ``workers`` processes until the
    bus is drained, and returns counts of decisions, coupons, deliveries and dead letters.
    ``campaigns`` (id -> face value) are created in the spec's issuer first. With
    ``check``, the decisions are compared with the in-memory simulation of the same
    definitions (``equal_to_simulation``).
    """
    import time

    import pandas as pd

    from mktlab.coupons import Campaign, CouponIssuer
    from mktlab.coupons.connection import get_redis
    from mktlab.live.decisions import DecisionLog
    from mktlab.live.producer import publish_frame
    from mktlab.live.worker import run_workers

    spec = dict(spec)
    spec.setdefault("idle_exit", 3.0)
    strategies, journeys, _ = definitions(spec)
    issuer = CouponIssuer(get_redis(), spec.get("ledger_url"),
                          namespace=spec.get("issuer_namespace") or "mktlab:cp")  # fmt: skip
    for cid, value in (campaigns or {}).items():
        try:
            issuer.campaign(cid)
        except KeyError:
            issuer.create_campaign(Campaign(cid, stock=10_000_000, face_value=float(value),
                                            per_user_limit=1000))  # fmt: skip
    with open_bus_for(spec) as bus:
        t0 = time.perf_counter()
        pub = publish_frame(bus, events, tick=True, progress=progress)
        t1 = time.perf_counter()
        summaries = run_workers(spec, workers, wait=True)
        t2 = time.perf_counter() - float(spec["idle_exit"])
        dead = bus.stats(spec.get("group") or "live")["dead_letters"]
    live = DecisionLog(spec.get("decisions_dir")).read()
    ok = live[live["status"] == "ok"]
    out: dict[str, Any] = {
        "events": pub["published"],
        "dead_letters": int(dead),
        "publish_per_s": pub["published"] / max(t1 - t0, 1e-9),
        "handle_per_s": pub["published"] / max(t2 - t1, 1e-9),
        "decisions": len(live),
        "coupons": int((ok["action"] == "coupon").sum()),
        "messages": int((ok["action"] == "message").sum()),
        "holdout": int(live["holdout"].sum()),
        "workers": [{k: v for k, v in s.items() if k != "latencies"} for s in summaries],
    }
    if spec.get("deliver", True):
        from mktlab.messaging import DeliveryLog

        d = DeliveryLog(spec.get("delivery_url")).deliveries()
        out["deliveries"] = len(d)
        out["deliveries_unique"] = bool(d["key"].is_unique) if len(d) else True
    if campaigns:
        out["ledger_coupons"] = sum(issuer.ledger.count(c) for c in campaigns)
    if check:
        from mktlab.live.context import LiveContext
        from mktlab.live.journey_runtime import DecisionRecord
        from mktlab.live.journey_sim import simulate as simulate_journeys
        from mktlab.strategy import simulate as simulate_strategies

        ctx = LiveContext(tz=spec.get("tz") or "UTC")
        ev = events.copy()
        frames = [simulate_strategies(strategies, ev, ctx).decisions_frame()] if strategies else []
        if journeys:
            sim = simulate_journeys(journeys, ev, ctx, until=float(pd.to_numeric(ev["ts"]).max()))
            fields = list(DecisionRecord.__dataclass_fields__)
            frames.append(pd.DataFrame([DecisionRecord(**{f: r[f] for f in fields}).to_row()
                                        for r in sim.decisions.to_dict("records")]))  # fmt: skip
        exp = pd.concat(frames, ignore_index=True) if frames else live.iloc[:0]
        keep = ["source", "node", "user_id", "ts", "action", "status", "arm"]

        def norm(df):
            return df[keep].astype(str).sort_values(keep).reset_index(drop=True)

        out["equal_to_simulation"] = bool(norm(live).equals(norm(exp)))
    return out
