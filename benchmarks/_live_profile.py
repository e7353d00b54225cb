"""One in-process live worker, measured in CPU time per event (``live.py --profile``).

Wall-clock throughput on a shared 2-core machine moves with whatever else runs; the CPU
a worker and its Redis spend per event does much less. Three modes:

- ``cpu``: a plain run; the worker process's CPU (``time.process_time``) and the private
  Redis server's CPU (``INFO cpu``) per event, and the wall-clock rate for reference;
- ``phases``: the same, plus the worker's CPU split by phase (exclusive thread CPU time
  of the functions below; the timers add about 1 us per call, so the total is a bit
  higher than ``cpu``'s);
- ``cprofile``: under cProfile, the cumulative hot spots.

Two workers share the 2 cores with Redis and the publisher, so 20,000 events/s needs
each worker at roughly 75 us/event of its own CPU with Redis' share on top.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from typing import Any

# (phase, module, class or None, attribute): timed exclusive of the phases nested inside
PHASES = (
    ("bus read", "mktlab.live.bus_redis", "RedisConsumer", "poll"),
    ("rules", "mktlab.strategy.runtime", "StrategySet", "match_all"),
    ("entry windows", "mktlab.live.journey_runtime", "EntryWindows", "observe"),
    ("journeys", "mktlab.live.engine", "LiveEngine", "_step_journeys"),
    ("timers", "mktlab.live.engine", "LiveEngine", "_fire_timers"),
    ("decide", "mktlab.strategy.runtime", "StrategySet", "decide"),
    ("caps", "mktlab.strategy.eligibility", "BatchCapLedger", "prefetch"),
    ("caps", "mktlab.strategy.eligibility", "BatchCapLedger", "flush"),
    ("coupons", "mktlab.live.effects", "EffectExecutor", "_coupons"),
    ("messages", "mktlab.live.effects", "EffectExecutor", "_messages"),
    ("tally", "mktlab.campaigns.counters", "LiveTally", "on_event"),
    ("checkpoint", "mktlab.live.engine", "LiveEngine", "checkpoint"),
    ("checkpoint", "mktlab.live.bus_redis", "RedisConsumer", "ack"),
    ("checkpoint", "mktlab.live.worker", None, "publish_metrics"),
)


class PhaseTimer:
    """Exclusive CPU (thread time) and wall time per phase, over wrapped functions."""

    def __init__(self) -> None:
        self.cpu: dict[str, int] = defaultdict(int)
        self.wall: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list] = []  # [phase, cpu0, wall0, child cpu, child wall]
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, phase: str, fn):
        clock, wall = time.thread_time_ns, time.perf_counter_ns
        stack = self._stack

        @functools.wraps(fn)
        def timed(*a, **kw):
            frame = [phase, clock(), wall(), 0, 0]
            stack.append(frame)
            try:
                return fn(*a, **kw)
            finally:
                c, w = clock() - frame[1], wall() - frame[2]
                stack.pop()
                self.cpu[phase] += c - frame[3]
                self.wall[phase] += w - frame[4]
                self.calls[phase] += 1
                if stack:
                    stack[-1][3] += c
                    stack[-1][4] += w

        return timed

    def install(self) -> None:
        import importlib

        for phase, mod, cls, attr in PHASES:
            m = importlib.import_module(mod)
            owner = getattr(m, cls) if cls else m
            fn = owner.__dict__.get(attr) if cls else getattr(m, attr)
            if fn is None:
                continue
            self._undo.append((owner, attr, fn))
            setattr(owner, attr, self.wrap(phase, fn))

    def uninstall(self) -> None:
        for owner, attr, fn in reversed(self._undo):
            setattr(owner, attr, fn)
        self._undo.clear()


def _redis_cpu(redis) -> float:
    info = redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def profile_worker(spec: dict, df, bus, redis, mode: str = "cpu", top: int = 40) -> dict:
    """Drain ``df`` (published first) with one worker in this process; print CPU per event."""
    from mktlab.live.producer import publish_frame
    from mktlab.live.runner import build_engine, open_consumer
    from mktlab.live.worker import run_worker, tune_gc

    publish_frame(bus, df, tick=True)
    timer = PhaseTimer() if mode == "phases" else None
    if timer is not None:
        timer.install()
    engine, bus2 = build_engine(spec)
    consumer = open_consumer(bus2, spec, name="profile")
    tune_gc()  # as a worker process does once its engine is built
    kw = {"idle_exit": spec["idle_exit"], "max_events": spec["batch"]}
    r0, c0, t0 = _redis_cpu(redis), time.process_time(), time.perf_counter()
    if mode == "cprofile":
        import cProfile
        import pstats

        prof = cProfile.Profile()
        stats = prof.runcall(run_worker, engine, consumer, **kw)
    else:
        stats = run_worker(engine, consumer, **kw)
    c1, t1, r1 = time.process_time(), time.perf_counter(), _redis_cpu(redis)
    if timer is not None:
        timer.uninstall()
    consumer.close()
    n = max(stats.events, 1)
    wall = t1 - t0 - spec["idle_exit"]
    out = {"mode": mode, "events": stats.events, "worker_cpu_us": (c1 - c0) / n * 1e6,
           "redis_cpu_us": (r1 - r0) / n * 1e6, "wall_eps": stats.events / max(wall, 1e-9),
           "effects": dict(stats.effects)}  # fmt: skip
    print(f"one in-process worker ({mode}): {stats.events} events; CPU per event: worker "
          f"{out['worker_cpu_us']:.1f} us, Redis {out['redis_cpu_us']:.1f} us, sum "
          f"{out['worker_cpu_us'] + out['redis_cpu_us']:.1f} us; wall {out['wall_eps']:,.0f} "
          f"events/s (idle exit excluded); effects {stats.effects}", flush=True)  # fmt: skip
    if timer is not None:
        total = sum(timer.cpu.values())
        out["phases_us"] = {k: v / n / 1e3 for k, v in timer.cpu.items()}
        print(f"  phase CPU per event (exclusive; timed total {total / n / 1e3:.1f} us):")
        for k in sorted(timer.cpu, key=lambda k: -timer.cpu[k]):
            print(f"    {k:<14} {timer.cpu[k] / n / 1e3:6.1f} us cpu  {timer.wall[k] / n / 1e3:6.1f} us wall"
                  f"  {timer.calls[k]:>8} calls")  # fmt: skip
        print(f"    {'(rest)':<14} {(c1 - c0) / n * 1e6 - total / n / 1e3:6.1f} us cpu")
    if mode == "cprofile":
        pstats.Stats(prof).sort_stats("cumulative").print_stats(top)
    return out
