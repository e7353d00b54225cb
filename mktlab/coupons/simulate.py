"""Flash-sale simulator: drive the issuer with realistic traffic from several processes.

A workload is a table of requests (arrival time, user, request id). Arrival processes:
``steady`` (uniform random arrivals over the sale), ``burst`` (a steady base plus three
short bursts), ``herd`` (a thundering herd: most requests in the first 5% of the sale).
Some requests come from users seen before with a new request id (``duplicate_rate``),
some re-send an earlier request unchanged (``retry_rate``, as a client timing out does).

Worker processes replay their share open-loop (a request is sent once its arrival time
has come; whatever has arrived is batched) or, with ``rate=None``, as fast as they can.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mktlab.errors import ServiceUnavailableError, ValidationError

ARRIVALS = ("steady", "burst", "herd")


@dataclass
class SimulationConfig:
    """Knobs of one simulated sale.

    Parameters
    ----------
    stock : int
        Coupons in the campaign.
    n_requests : int
        Requests in total (all workers).
    duplicate_rate : float
        Share of requests from an already-seen user with a new request id.
    retry_rate : float
        Share of requests that re-send an earlier request (same request id).
    arrival : {"steady", "burst", "herd"}
    rate : float, optional
        Mean arrivals per second; ``None`` sends as fast as the workers can (closed loop).
    workers : int
        Worker processes; 0 runs in this process.
    batch_size : int
        Largest batch a worker sends in one ``issue_many``.
    shards, prededuct_chunk, per_user_limit : int
        Campaign settings (see :class:`~mktlab.coupons.Campaign`).
    durability : {"ledger", "outbox"}
        Issuer mode (see :class:`~mktlab.coupons.CouponIssuer`). With ``"outbox"`` the
        calling process runs the drain worker while the sale runs, as a deployment would.
    retry_transient : bool
        Re-send requests that failed transiently (Redis down, ``not_ready``, ``paused``,
        ``ledger_backlog``) with the same request id until ``give_up_after`` seconds.
    seed : int
    """

    stock: int = 10_000
    n_requests: int = 50_000
    duplicate_rate: float = 0.1
    retry_rate: float = 0.02
    arrival: str = "herd"
    rate: float | None = None
    workers: int = 4
    batch_size: int = 256
    shards: int = 4
    prededuct_chunk: int = 0
    per_user_limit: int = 1
    durability: str = "ledger"
    retry_transient: bool = True
    give_up_after: float = 60.0
    seed: int = 0
    campaign_id: str | None = None
    namespace: str = "mktlab:cp"

    def __post_init__(self) -> None:
        if self.arrival not in ARRIVALS:
            raise ValidationError(
                f"SimulationConfig.arrival={self.arrival!r}: expected one of {ARRIVALS}"
            )
        for name in ("stock", "n_requests", "batch_size"):
            if getattr(self, name) < 1:
                raise ValidationError(
                    f"SimulationConfig.{name}={getattr(self, name)}: must be >= 1"
                )
        if self.workers < 0:
            raise ValidationError(f"SimulationConfig.workers={self.workers}: must be >= 0")
        for name in ("duplicate_rate", "retry_rate"):
            if not 0 <= getattr(self, name) < 1:
                raise ValidationError(
                    f"SimulationConfig.{name}={getattr(self, name)}: must be in [0, 1)"
                )
        if self.duplicate_rate + self.retry_rate >= 1:
            raise ValidationError("SimulationConfig: duplicate_rate + retry_rate must be < 1")
        if self.rate is not None and self.rate <= 0:
            raise ValidationError(f"SimulationConfig.rate={self.rate}: must be > 0 or None")


def make_requests(cfg: SimulationConfig) -> pd.DataFrame:
    """The workload: one row per request with ``t`` (seconds from the start), ``user_id``,
    ``request_id``, ``kind`` (``new``, ``duplicate``, ``retry``), sorted by ``t``."""
    rng = np.random.default_rng(cfg.seed)
    n = cfg.n_requests
    span = n / cfg.rate if cfg.rate else 1.0
    if cfg.arrival == "steady":
        t = rng.uniform(0, span, n)
    elif cfg.arrival == "burst":
        base = rng.uniform(0, span, n)
        centers = np.array([0.2, 0.5, 0.8]) * span
        in_burst = rng.random(n) < 0.4
        t = np.where(in_burst, rng.choice(centers, n) + rng.uniform(0, 0.02 * span, n), base)
    else:  # herd: the sale opens and 80% arrive within the first 5% of the window
        t = np.where(rng.random(n) < 0.8, rng.uniform(0, 0.05 * span, n), rng.uniform(0, span, n))
    t = np.sort(t)
    kind = rng.choice(
        3, size=n, p=[1 - cfg.duplicate_rate - cfg.retry_rate, cfg.duplicate_rate, cfg.retry_rate]
    )
    kind[0] = 0
    user = np.empty(n, dtype=np.int64)
    rid = np.empty(n, dtype=np.int64)
    n_users = 0
    for i in range(n):  # sequential: a duplicate or retry refers to an earlier request
        if kind[i] == 0 or i == 0:
            user[i], rid[i] = n_users, i
            n_users += 1
        elif kind[i] == 1:
            user[i], rid[i] = user[rng.integers(0, i)], i
        else:
            j = rng.integers(0, i)
            user[i], rid[i] = user[j], rid[j]
    tag = f"s{cfg.seed}"
    return pd.DataFrame(
        {
            "t": t,
            "user_id": pd.Series([f"u{tag}-{u}" for u in user], dtype=object),
            "request_id": pd.Series([f"r{tag}-{r}" for r in rid], dtype=object),
            "kind": pd.Series(np.array(["new", "duplicate", "retry"])[kind], dtype=object),
        }
    )


def _run_share(payload: dict[str, Any], ready=None, go=None, t0_box=None) -> dict[str, Any]:
    """Replay one worker's share of the requests; return per-request outcomes."""
    from mktlab.coupons.issuer import TRANSIENT, CouponIssuer

    issuer = CouponIssuer(
        redis=payload["redis_url"],
        ledger=payload["ledger_url"],
        namespace=payload["namespace"],
        durability=payload["durability"],
        batch_size=payload["batch_size"],
    )
    cid = payload["campaign_id"]
    t, users, rids = payload["t"], payload["users"], payload["rids"]
    n = len(users)
    status = np.zeros(n, dtype=np.int8)  # 1 issued, 2 denied, 0 gave up
    reason = np.empty(n, dtype=object)
    code = np.empty(n, dtype=object)
    service = np.zeros(n)
    response = np.zeros(n)
    done_at = np.zeros(n)
    errors = 0
    if ready is not None:
        ready.put(os.getpid())
        go.wait()
        t0 = t0_box.value
    else:
        t0 = time.time()
    open_loop = payload["open_loop"]
    bs = payload["batch_size"]
    retry_transient = payload["retry_transient"]
    deadline = payload["give_up_after"]
    queue = list(range(n))[::-1]  # stack of request indices, next at the end
    retry: list[int] = []
    while queue or retry:
        now = time.time() - t0
        batch: list[int] = []
        while retry and len(batch) < bs:
            batch.append(retry.pop())
        while queue and len(batch) < bs and (not open_loop or t[queue[-1]] <= now):
            batch.append(queue.pop())
        if not batch:
            time.sleep(min(0.002, max(0.0, t[queue[-1]] - now)))
            continue
        start = time.time()
        try:
            res = issuer.issue_many(cid, [(users[i], rids[i]) for i in batch])
        except ServiceUnavailableError:
            errors += 1
            if time.time() - t0 > deadline:
                break
            time.sleep(0.05)
            retry.extend(batch)
            continue
        end = time.time()
        again = []
        for i, r in zip(batch, res):
            if retry_transient and r.reason in TRANSIENT and end - t0 < deadline:
                again.append(i)
                continue
            status[i] = 1 if r.issued else 2
            reason[i] = r.reason or ""
            code[i] = r.coupon_code or ""
            service[i] = end - start
            response[i] = end - (t0 + t[i]) if open_loop else end - start
            done_at[i] = end - t0
        if again:
            time.sleep(0.02)
            retry.extend(again)
    issuer.close()
    return {
        "index": payload["index"],
        "status": status,
        "reason": reason,
        "code": code,
        "service": service,
        "response": response,
        "done_at": done_at,
        "errors": errors,
    }


@dataclass
class SimulationReport:
    """Outcome of a simulated sale (latencies in milliseconds, throughput per second)."""

    config: dict[str, Any]
    campaign_id: str
    stock: int
    requests: int
    distinct_users: int
    issued: int
    ledger_issued: int
    redis_issued: int
    duplicates: int
    over_issued: int
    rejects: dict[str, int]
    gave_up: int
    errors: int
    wall_s: float
    throughput: float
    p50_ms: float
    p99_ms: float
    response_p50_ms: float
    response_p99_ms: float
    frame: pd.DataFrame = field(repr=False)

    @property
    def expected_issued(self) -> int:
        """min(stock, distinct users) for a per-user limit of 1."""
        return min(self.stock, self.distinct_users)

    def summary(self) -> dict[str, Any]:
        """The report without the per-request frame (JSON-able)."""
        d = asdict(self)
        d.pop("frame")
        d["expected_issued"] = self.expected_issued
        return d


def simulate(
    config: SimulationConfig | None = None,
    *,
    redis: Any = None,
    ledger: Any = None,
    **overrides: Any,
) -> SimulationReport:
    """Run a simulated flash sale against a fresh campaign and report what happened.

    Parameters
    ----------
    config : SimulationConfig, optional
        Defaults to ``SimulationConfig(**overrides)``.
    redis : str or client, optional
        Where the issuer runs (default ``MKTLAB_REDIS_URL`` or the embedded server).
    ledger : str or Ledger, optional
        The ledger (default ``settings().default_ledger_url``).

    Returns
    -------
    SimulationReport
    """
    from mktlab.coupons.campaign import Campaign
    from mktlab.coupons.connection import connection_url
    from mktlab.coupons.issuer import CouponIssuer
    from mktlab.coupons.ledger import Ledger

    cfg = config or SimulationConfig(**overrides)
    if config is not None and overrides:
        cfg = SimulationConfig(**{**asdict(config), **overrides})
    issuer = CouponIssuer(
        redis=redis, ledger=ledger, namespace=cfg.namespace, durability=cfg.durability
    )
    ledger_obj: Ledger = issuer.ledger
    cid = cfg.campaign_id or f"sim-{uuid.uuid4().hex[:10]}"
    issuer.create_campaign(
        Campaign(
            cid,
            stock=cfg.stock,
            shards=cfg.shards,
            prededuct_chunk=cfg.prededuct_chunk,
            per_user_limit=cfg.per_user_limit,
            max_backlog=max(50_000, 4 * cfg.batch_size),
        )
    )
    df = make_requests(cfg)
    n_workers = max(cfg.workers, 1)
    shares = [np.arange(w, len(df), n_workers) for w in range(n_workers)]
    base = {
        "redis_url": connection_url(issuer.redis),
        "ledger_url": ledger_obj.url,
        "namespace": cfg.namespace,
        "durability": cfg.durability,
        "batch_size": cfg.batch_size,
        "campaign_id": cid,
        "open_loop": cfg.rate is not None,
        "retry_transient": cfg.retry_transient,
        "give_up_after": cfg.give_up_after,
    }
    payloads = [
        {
            **base,
            "index": idx,
            "t": df["t"].to_numpy()[idx],
            "users": df["user_id"].to_numpy()[idx].tolist(),
            "rids": df["request_id"].to_numpy()[idx].tolist(),
        }
        for idx in shares
    ]
    if cfg.durability == "outbox":
        # the outbox design: a worker drains the stream into the ledger while the sale runs
        issuer.start_worker(interval=0.05, campaign_id=cid)
    start = time.time()
    if cfg.workers == 0:
        outs = [_run_share(payloads[0])]
    else:
        ctx = mp.get_context("spawn")
        ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        t0_box = ctx.Value("d", 0.0)
        procs = [
            ctx.Process(target=_worker_main, args=(p, ready, go, t0_box, results), daemon=True)
            for p in payloads
        ]
        for p in procs:
            p.start()
        _wait_ready(procs, ready)
        t0_box.value = time.time()
        start = t0_box.value
        go.set()
        outs = []
        for _ in procs:
            out = _get_result(procs, results)
            if isinstance(out, BaseException):
                for p in procs:
                    p.kill()
                raise out
            outs.append(out)
        for p in procs:
            p.join()
    wall = time.time() - start
    issuer.stop_worker()  # the drain below moves what it had not moved yet
    n = len(df)
    status = np.zeros(n, dtype=np.int8)
    reason = np.empty(n, dtype=object)
    code = np.empty(n, dtype=object)
    service = np.zeros(n)
    response = np.zeros(n)
    done_at = np.zeros(n)
    errors = 0
    for out in outs:
        idx = out["index"]
        status[idx], reason[idx], code[idx] = out["status"], out["reason"], out["code"]
        service[idx], response[idx], done_at[idx] = out["service"], out["response"], out["done_at"]
        errors += out["errors"]
    frame = df.assign(
        status=pd.Series(np.array(["gave_up", "issued", "denied"])[status], dtype=object),
        reason=pd.Series(reason, dtype=object),
        coupon_code=pd.Series(code, dtype=object),
        service_ms=service * 1000,
        response_ms=response * 1000,
        done_at=done_at,
    )
    issuer.drain(cid)
    st = issuer.status(cid)
    issued_rows = frame[frame["status"] == "issued"]
    codes_per_user = issued_rows.groupby("user_id")["coupon_code"].nunique()
    ledger_claims = ledger_obj.claims(cid)
    duplicates = int((codes_per_user > cfg.per_user_limit).sum()) + sum(
        1 for v in ledger_claims.values() if v > cfg.per_user_limit
    )
    answered = frame[frame["status"] != "gave_up"]
    issuer.close()
    return SimulationReport(
        config=asdict(cfg),
        campaign_id=cid,
        stock=cfg.stock,
        requests=n,
        distinct_users=int(df["user_id"].nunique()),
        issued=int(issued_rows["coupon_code"].nunique()),
        ledger_issued=int(st["ledger_issued"]),
        redis_issued=int(st["issued"]),
        duplicates=duplicates,
        over_issued=max(0, int(st["ledger_issued"]) - cfg.stock),
        rejects=dict(Counter(frame.loc[frame["status"] == "denied", "reason"])),
        gave_up=int((frame["status"] == "gave_up").sum()),
        errors=errors,
        wall_s=wall,
        throughput=n / wall if wall > 0 else float("nan"),
        p50_ms=float(np.percentile(answered["service_ms"], 50)) if len(answered) else float("nan"),
        p99_ms=float(np.percentile(answered["service_ms"], 99)) if len(answered) else float("nan"),
        response_p50_ms=float(np.percentile(answered["response_ms"], 50))
        if len(answered)
        else float("nan"),
        response_p99_ms=float(np.percentile(answered["response_ms"], 99))
        if len(answered)
        else float("nan"),
        frame=frame,
    )


def _wait_ready(procs, ready) -> None:
    import queue as _q

    pending = len(procs)
    limit = time.time() + 300
    while pending:
        try:
            ready.get(timeout=0.5)
            pending -= 1
        except _q.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.time() > limit:
                for p in procs:
                    p.kill()
                raise ServiceUnavailableError(
                    f"simulator workers did not start (exit codes {dead}); when running a "
                    "script, call simulate() under `if __name__ == '__main__':`"
                ) from None


def _get_result(procs, results):
    import queue as _q

    while True:
        try:
            return results.get(timeout=0.5)
        except _q.Empty:
            if all(p.exitcode is not None for p in procs) and results.empty():
                return ServiceUnavailableError(
                    f"a simulator worker died (exit codes {[p.exitcode for p in procs]})"
                )


def _worker_main(payload, ready, go, t0_box, results) -> None:
    try:
        results.put(_run_share(payload, ready, go, t0_box))
    except BaseException as exc:  # hand the failure to the parent instead of hanging it
        ready.put(-1)
        results.put(ServiceUnavailableError(f"simulator worker failed: {exc!r}"))
