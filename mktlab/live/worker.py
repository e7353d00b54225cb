"""Live workers: poll the bus, run the engine, checkpoint, ack; N of them in processes.

:func:`run_worker` is one worker's loop; :func:`run_workers` starts ``n`` in processes
(``mktlab live run --workers N``). A worker handles the partitions its bus consumer holds
(one owner per partition at a time, so one user's events are handled in order); when it
loses a partition it drops that partition's memory, and whoever takes it over starts
from the last checkpoint. SIGTERM / SIGINT stop a worker after a last checkpoint.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mktlab.live.engine import LiveEngine

METRICS_KEY = "metrics"
log = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    events: int = 0
    decisions: int = 0
    batches: int = 0
    checkpoints: int = 0
    recoveries: int = 0
    effects: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


def publish_metrics(
    redis: Any, namespace: str, totals: dict[str, int], *, pipe: Any = None
) -> None:
    """Add a worker's counters to the shared ``<namespace>:metrics`` hash (read by /metrics).

    With ``pipe``, the commands are queued there (the checkpoint's transaction) instead.
    """
    if not any(totals.values()):
        return
    own = pipe is None
    if own:
        pipe = redis.pipeline(transaction=False)
    for k, v in totals.items():
        if v:
            pipe.hincrby(f"{namespace}:{METRICS_KEY}", k, int(v))
    if own:
        pipe.execute()


def run_worker(
    engine: LiveEngine,
    consumer: Any,
    *,
    stop: threading.Event | None = None,
    max_events: int = 1000,
    block_ms: int = 100,
    checkpoint_every: float = 0.25,
    clock: str = "event",
    idle_exit: float | None = None,
    max_events_total: int | None = None,
    on_batch: Callable[[Any], None] | None = None,
) -> WorkerStats:
    """Run one worker until ``stop`` is set (or the bus stays empty for ``idle_exit`` s).

    Parameters
    ----------
    engine : LiveEngine
    consumer : bus consumer (``poll``, ``ack``, ``partitions_held``, ``close``)
    clock : {"event", "wall"}
        ``event``: timers fire on event time only (replays, simulations); ``wall``: also
        fire timers due by the wall clock between batches (production).
    idle_exit : float, optional
        Stop after this many seconds without a delivery (a replay that has drained).
    """
    stop = stop or threading.Event()
    stats = WorkerStats()
    unacked: list[Any] = []
    last_ck = time.monotonic()
    last_seen = time.monotonic()
    held: set[int] = set()
    pushed: dict[str, int] = {}

    def flush() -> None:
        nonlocal unacked, last_ck
        # the counters go in the checkpoint's transaction: counted once, with the state
        delta = {k: v - pushed.get(k, 0) for k, v in engine.totals.items()}
        engine.checkpoint(extra=lambda pipe: publish_metrics(
            engine.redis, engine.namespace, delta, pipe=pipe))  # fmt: skip
        pushed.update(engine.totals)
        if unacked:
            consumer.ack(unacked)
        unacked = []
        last_ck = time.monotonic()
        stats.checkpoints += 1

    def recover(exc: BaseException) -> None:
        """A broker or Redis outage mid-batch: start again from the last checkpoint.

        The in-memory state may hold half a batch, so it is dropped; once the servers
        answer, the unacked deliveries are decided again from the checkpoint (effects are
        idempotent by key) and checkpointed, and the state is reloaded so redeliveries of
        those events are recognised and skipped.
        """
        nonlocal unacked
        stats.recoveries += 1
        log.warning("live worker: %s; resuming from the last checkpoint", exc)
        delay = 0.2
        while not stop.is_set():
            engine.parts.clear()
            try:
                if unacked:
                    engine.process(unacked)
                flush()
                engine.parts.clear()
                return
            except _transient() as again:
                log.warning("live worker: still failing (%s); retrying in %.1fs", again, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    while not stop.is_set():
        try:
            deliveries = consumer.poll(max_events=max_events, block_ms=block_ms)
            now_held = set(consumer.partitions_held())
            for p in held - now_held:  # lost: its checkpoint is the truth for the next owner
                engine.release(p)
            held = now_held
            if deliveries:
                last_seen = time.monotonic()
                unacked.extend(deliveries)
                rep = engine.process(deliveries)
                stats.events += rep.events
                stats.decisions += rep.decisions
                stats.batches += 1
                for k, v in rep.effects.items():
                    stats.effects[k] = stats.effects.get(k, 0) + v
                if on_batch is not None:
                    on_batch(rep)
            if clock == "wall":
                engine.flush_timers(time.time())
            if unacked and (
                time.monotonic() - last_ck >= checkpoint_every or len(unacked) >= 20 * max_events
            ):
                flush()
        except _transient() as exc:
            recover(exc)
            continue
        if max_events_total is not None and stats.events >= max_events_total:
            break
        if idle_exit is not None and not deliveries and time.monotonic() - last_seen > idle_exit:
            break
    try:
        flush()
    except _transient() as exc:
        recover(exc)
    stats.latencies = list(engine.latencies)
    return stats


def _transient() -> tuple[type[BaseException], ...]:
    """Errors of a server that went away (and comes back): retried, never fatal."""
    import redis

    from mktlab.errors import ServiceUnavailableError

    out: list[type[BaseException]] = [
        ServiceUnavailableError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        ConnectionError,
        OSError,
    ]
    try:
        import pika.exceptions as px

        out += [px.AMQPError]
    except ImportError:  # pragma: no cover
        pass
    try:
        import sqlalchemy.exc as se

        out += [se.OperationalError]
    except ImportError:  # pragma: no cover
        pass
    return tuple(out)


# ---------------------------------------------------------------------- processes
def tune_gc(gen0: int = 50_000) -> None:
    """Keep the garbage collector's full passes off the hot loop of a worker process.

    Called once the engine is built: what exists then (compiled definitions, imported
    modules) is collected once and frozen, so full collections no longer scan it; a
    higher generation-0 threshold makes young collections rarer (a batch allocates
    many short-lived objects). Only the collector's timing changes, never what it frees.
    """
    gc.collect()
    gc.freeze()
    _, g1, g2 = gc.get_threshold()
    gc.set_threshold(gen0, g1, g2)


def _child(spec: dict[str, Any], index: int, stop_file: str | None, result_q: Any) -> None:
    from mktlab.live.runner import build_engine, open_consumer

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    engine, bus = build_engine(spec)
    consumer = open_consumer(
        bus, spec, name=f"{spec.get('worker_prefix', 'w')}{index}-{os.getpid()}"
    )
    tune_gc()  # a worker process of its own: the collector's settings are its alone

    def watch() -> None:
        while stop_file and not stop.is_set():
            if os.path.exists(stop_file):
                stop.set()
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()
    stats = run_worker(
        engine,
        consumer,
        stop=stop,
        clock=spec.get("clock", "event"),
        idle_exit=spec.get("idle_exit"),
        max_events=spec.get("batch", 1000),
        checkpoint_every=spec.get("checkpoint_every", 0.25),
    )
    consumer.close()
    if result_q is not None:
        result_q.put(
            {
                "index": index,
                "events": stats.events,
                "decisions": stats.decisions,
                "effects": stats.effects,
                "latencies": stats.latencies[-200_000:],
            }
        )


def run_workers(spec: dict[str, Any], n: int = 2, *, wait: bool = True) -> list[Any]:
    """Start ``n`` worker processes for ``spec`` (see :func:`mktlab.live.runner.build_engine`).

    With ``wait=True`` (and ``spec["idle_exit"]`` set), return each worker's summary when
    all have drained the bus; else return the started processes.
    """
    ctx = mp.get_context("spawn")
    q = ctx.Queue() if wait else None
    procs = [
        ctx.Process(target=_child, args=(spec, i, spec.get("stop_file"), q), daemon=False)
        for i in range(n)
    ]
    for p in procs:
        p.start()
    if not wait:
        return procs
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return sorted(results, key=lambda r: r["index"])


def stop_workers(procs: Sequence[Any], timeout: float = 10.0) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout)


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

    from mktlab.coupons import Campaign, CouponIssuer
    from mktlab.coupons.connection import get_redis
    from mktlab.live.decisions import DecisionLog
    from mktlab.live.producer import publish_frame

    spec = dict(spec)
    spec.setdefault("idle_exit", 3.0)
    from mktlab.live.runner import definitions, open_bus_for

    strategies, journeys, _ = definitions(spec)
    issuer = CouponIssuer(
        get_redis(), spec.get("ledger_url"), namespace=spec.get("issuer_namespace") or "mktlab:cp"
    )
    for cid, value in (campaigns or {}).items():
        try:
            issuer.campaign(cid)
        except KeyError:
            issuer.create_campaign(
                Campaign(cid, stock=10_000_000, face_value=float(value), per_user_limit=1000)
            )
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
        from mktlab.live.decisions import same_decisions, simulated_decisions

        ctx = LiveContext(tz=spec.get("tz") or "UTC")
        expected = simulated_decisions(strategies, journeys, events, ctx)
        out["equal_to_simulation"] = same_decisions(live, expected)
    return out
