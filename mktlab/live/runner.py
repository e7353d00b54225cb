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
    issuer_namespace: mktlab:cp                   # the issuer's (and the campaign lifecycle's) prefix
    outcome_event: purchase                       # a conversion, for the campaign watcher's counters
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
    "outcome_event",
    "strategies",
    "journeys",
    "templates",
    "backend",
    "namespace",
    "partitions",
    "group",
    "audiences",
    "uplift",
    "tz",
    "issue",
    "deliver",
    "delivery_url",
    "decisions_dir",
    "clock",
    "idle_exit",
    "batch",
    "stop_file",
    "worker_prefix",
    "base_dir",
    "quiet_hours",
    "caps",
    "issuer_namespace",
    "ledger_url",
    "checkpoint_every",
}


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
            raise ValidationError(
                f"live spec: item {i}: expected a file name or a mapping, got {it!r}"
            )
    return out


def definitions(spec: Mapping[str, Any]) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """Strategies, journeys and templates of a spec, each validated (launch refuses bad ones)."""
    from mktlab.strategy import Strategy

    base = Path(spec.get("base_dir") or ".")

    def strat(x):
        return (
            Strategy.from_yaml(x) if isinstance(x, Path) else Strategy.from_dict(x, base_dir=base)
        )

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
    return LiveContext(
        audiences=aud,
        uplift=spec.get("uplift"),
        tz=spec.get("tz") or "UTC",
        redis=redis,
        namespace=spec.get("namespace") or "mktlab:live",
    )


def open_bus_for(spec: Mapping[str, Any]) -> Any:
    from mktlab.live.bus import open_bus

    return open_bus(
        spec.get("backend"),
        partitions=spec.get("partitions"),
        namespace=spec.get("namespace") or "mktlab:live",
        groups=(spec.get("group") or "live",),
    )


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

        issuer = CouponIssuer(
            redis, spec.get("ledger_url"), namespace=spec.get("issuer_namespace") or "mktlab:cp"
        )
    if spec.get("deliver", True) and templates:
        from mktlab.messaging import DeliveryLog, Gateway, TemplateCatalog

        caps = []
        if spec.get("caps"):
            from mktlab.rules.model import cap_from_dict

            caps = [cap_from_dict(c, where=f"caps[{i}]") for i, c in enumerate(spec["caps"])]
        gateway = Gateway(
            DeliveryLog(spec.get("delivery_url")),
            TemplateCatalog.from_dict(templates),
            caps=caps,
            default_tz=spec.get("tz") or "UTC",
        )
    ctx = build_context(spec, redis)
    executor = EffectExecutor(issuer, gateway, redis, namespace=ns, tz=ctx.user_tz)
    decisions = DecisionLog(spec.get("decisions_dir"))
    from mktlab.campaigns.rollout import CampaignStates

    gate = CampaignStates(redis, spec.get("issuer_namespace") or "mktlab:cp")
    engine = LiveEngine(
        strategies,
        journeys,
        context=ctx,
        redis=redis,
        executor=executor,
        decisions=decisions,
        namespace=ns,
        gate=gate,
        outcome_event=str(spec.get("outcome_event") or "purchase"),
    )
    return engine, open_bus_for(spec)
