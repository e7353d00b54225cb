"""The coupon issuer: atomic decisions in Redis, recorded in a durable ledger.

See ``coupon.lua`` for the per-shard state and the README section "Coupon issuer" for the
protocol. In short: one EVALSHA per shard decides a batch of requests atomically (claim,
stock, budget, window, pause, outbox entry); a user whose home shard is empty opens a
fallback attempt that holds their claim, asks the other shards one by one in a fixed
order (each donor decides once per attempt), and closes the attempt on the home shard.
The shards' Redis state, the outbox and the ledger side live in
:class:`~mktlab.coupons.shards.CampaignShards`, which the issuer extends.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mktlab.coupons.campaign import Campaign, check_request_id, check_user_id
from mktlab.coupons.ledger import Ledger
from mktlab.coupons.reconcile import ReconcileReport, reconcile_campaign
from mktlab.coupons.shards import (
    CampaignShards,
    CampaignState,
    Lease,
    columns,
    home_shard,
    joined,
)
from mktlab.errors import ServiceUnavailableError, ValidationError

#: reasons a request can be denied
REASONS = (
    "out_of_stock",  # every shard's stock is spent
    "budget_exhausted",  # the cost budget is spent
    "duplicate",  # the user already holds per_user_limit coupons
    "paused",  # the campaign is paused (transient)
    "expired",  # now >= end
    "not_started",  # now < start (transient)
    "ledger_backlog",  # too many issued coupons wait for the ledger (transient)
    "not_ready",  # Redis has no state for the campaign: run reconcile (transient)
    "ineligible",  # the campaign's eligibility hook said no
    "request_conflict",  # the request_id was already used for another user
)
TRANSIENT = frozenset({"paused", "not_started", "ledger_backlog", "not_ready"})


@dataclass(frozen=True)
class IssueResult:
    """The answer to one issuance request.

    ``status`` is ``"issued"`` or ``"denied"``; ``reason`` is one of :data:`REASONS` when
    denied; ``coupon_code`` and ``seq`` (the user's n-th coupon of the campaign) when issued.
    """

    campaign_id: str
    user_id: str
    request_id: str
    status: str
    reason: str | None = None
    coupon_code: str | None = None
    seq: int | None = None
    shard: int | None = None

    @property
    def issued(self) -> bool:
        return self.status == "issued"

    @property
    def transient(self) -> bool:
        """True when a retry with the same ``request_id`` may succeed later."""
        return self.reason in TRANSIENT


class CouponIssuer(CampaignShards):
    """Issue coupons from Redis and record them in the ledger.

    The shard API it inherits (:meth:`state`, :meth:`read_shards`, :meth:`drain`, ...)
    is what :func:`~mktlab.coupons.reconcile.reconcile` works through.

    Parameters
    ----------
    redis : redis client or str, optional
        A redis-py client (``Redis`` or ``RedisCluster``) or a URL; default
        :func:`mktlab.coupons.connection.get_redis` (``MKTLAB_REDIS_URL`` or embedded).
    ledger : Ledger or str, optional
        The durable ledger or its SQLAlchemy URL; default ``Ledger()``.
    namespace : str
        Prefix of every Redis key (tests use a unique one per test).
    durability : {"ledger", "outbox"}
        ``"ledger"`` (default): a call returns only after its issued coupons are committed
        to the ledger. ``"outbox"``: it returns once Redis has decided; the outbox stream
        is drained by :meth:`drain` or the background worker (:meth:`start_worker`).
    request_ttl : float
        Seconds a ``request_id``'s answer is remembered (at least; up to twice that).
    batch_size : int
        Requests per EVALSHA in :meth:`issue_many`.
    ledger_check_interval : float
        Seconds between ledger health checks while healthy.
    replica_ack_timeout : float
        Redis Cluster only: seconds to wait for the replicas of the masters a call wrote
        to before answering (see :class:`~mktlab.coupons.shards.CampaignShards`).
    """

    def __init__(
        self,
        redis: Any = None,
        ledger: Ledger | str | None = None,
        *,
        namespace: str = "mktlab:cp",
        durability: str = "ledger",
        request_ttl: float = 3600.0,
        batch_size: int = 256,
        ledger_check_interval: float = 1.0,
        empty_hint_ttl: float = 1.0,
        replica_ack_timeout: float = 1.0,
    ):
        if durability not in ("ledger", "outbox"):
            raise ValidationError(f"durability={durability!r}: expected 'ledger' or 'outbox'")
        if batch_size < 1:
            raise ValidationError(f"batch_size={batch_size}: must be >= 1")
        super().__init__(
            redis,
            ledger,
            namespace=namespace,
            request_ttl=request_ttl,
            ledger_check_interval=ledger_check_interval,
            replica_ack_timeout=replica_ack_timeout,
        )
        self.durability = durability
        self.batch_size = int(batch_size)
        self.empty_hint_ttl = float(empty_hint_ttl)
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ campaigns
    def create_campaign(self, campaign: Campaign) -> Campaign:
        """Register ``campaign`` in the ledger and load its shards into Redis.

        Idempotent for an identical definition; a different definition under the same id
        raises :class:`ValidationError`. Redis is checked first, and a failure while
        loading it removes the new ledger row again, so nothing is left half-created.
        """
        if not isinstance(campaign, Campaign):
            raise ValidationError(f"campaign: expected a Campaign, got {type(campaign).__name__}")
        self._ping()
        salt = secrets.token_hex(8)
        created = self.ledger.add_campaign(campaign, salt)
        self._infos.pop(campaign.campaign_id, None)
        info = self._info(campaign.campaign_id)
        if campaign.eligibility is not None:
            info.campaign.eligibility = campaign.eligibility
        try:
            if created:
                for k in range(campaign.shards):
                    self._load_shard(info, k, paused=False)
            elif not self._meta_present(campaign.campaign_id, campaign.shards):
                self.reconcile(campaign.campaign_id)
        except ServiceUnavailableError:
            if created:
                self.ledger.delete_campaign(campaign.campaign_id)
                self._infos.pop(campaign.campaign_id, None)
            raise
        return info.campaign

    def pause(self, campaign_id: str) -> None:
        """Stop issuance of a campaign (every shard) until :meth:`resume`."""
        self._info(campaign_id)
        self.ledger.update_campaign(campaign_id, paused=True)
        self.set_shards_paused(campaign_id, True)

    def resume(self, campaign_id: str) -> None:
        """Resume a paused campaign."""
        self._info(campaign_id)
        self.ledger.update_campaign(campaign_id, paused=False)
        self.set_shards_paused(campaign_id, False)

    # ------------------------------------------------------------------ issuance
    def issue(
        self, campaign_id: str, user_id: str, request_id: str, now: float | None = None
    ) -> IssueResult:
        """Decide one request; see :meth:`issue_many`."""
        return self.issue_many(campaign_id, [(user_id, request_id)], now=now)[0]

    def issue_many(
        self,
        campaign_id: str,
        requests: Iterable[tuple[str, str]],
        now: float | None = None,
    ) -> list[IssueResult]:
        """Decide a batch of ``(user_id, request_id)`` requests, pipelined.

        Every decision is atomic in Redis; a ``request_id`` seen before returns its first
        answer. With ``durability="ledger"`` the issued coupons are committed to the
        ledger before this returns.

        Parameters
        ----------
        campaign_id : str
        requests : iterable of (user_id, request_id)
        now : float, optional
            Epoch seconds used for the validity window (default: the clock).

        Returns
        -------
        list of IssueResult, in the order of ``requests``.

        Raises
        ------
        NotFoundError
            Unknown campaign.
        ValidationError
            A malformed user or request id (nothing is sent to Redis).
        ServiceUnavailableError
            Redis or the ledger is unreachable. Retrying with the same request ids is safe.
        """
        info = self._info(campaign_id)
        reqs = list(requests)
        bad = []
        for i, item in enumerate(reqs):
            try:
                user, rid = item
                check_user_id(user)
                check_request_id(rid)
            except (ValidationError, TypeError, ValueError) as exc:
                bad.append((i, exc))
        if bad:
            i, exc = bad[0]
            raise ValidationError(
                f"requests[{i}]: {exc} ({len(bad)} malformed request(s) of {len(reqs)})"
            )
        if self.durability == "ledger":
            self._check_ledger()
        now = time.time() if now is None else float(now)
        c = info.campaign
        out: list[IssueResult | None] = [None] * len(reqs)
        todo = []
        for i, (user, rid) in enumerate(reqs):
            if c.eligibility is not None and not c.eligibility(user):
                out[i] = IssueResult(campaign_id, user, rid, "denied", "ineligible")
            else:
                todo.append(i)
        rows: list[tuple[Any, ...]] = []  # issued coupons in ledger.ROW_FIELDS order
        xdel: dict[int, list[str]] = defaultdict(list)
        if c.prededuct_chunk > 0:
            todo = self._issue_leased(info, reqs, todo, now, out, rows, xdel)
        if todo:
            self._issue_plain(info, reqs, todo, now, out, rows, xdel)
        if self.durability == "ledger" and rows:
            self._commit(campaign_id, rows, xdel)
        return out  # type: ignore[return-value]

    def _parse(
        self,
        info: CampaignState,
        user: str,
        rid: str,
        reply: str,
        home: int,
        now: float,
        rows,
        xdel,
    ):
        """Turn one script answer into an IssueResult (or a fallback marker)."""
        cid = info.campaign.campaign_id
        parts = reply.split("|")
        if parts[0] == "I":
            seq, code, src = int(parts[1]), parts[2], int(parts[3])
            rows.append((user, seq, code, src, home, rid, None, now))  # ledger.ROW_FIELDS
            if len(parts) > 4 and parts[4]:  # the entry sits in the deciding shard's outbox
                xdel[home].append(parts[4])
            return IssueResult(cid, user, rid, "issued", None, code, seq, src)
        if parts[0] == "F":
            return ("F", int(parts[1]), parts[2])
        return IssueResult(cid, user, rid, "denied", parts[1])

    def _fallback_allowed(self, info: CampaignState, home: int) -> bool:
        n = info.campaign.shards
        if n == 1:
            return False
        t = time.monotonic()
        return any(t - info.empty.get(k, -1e9) > self.empty_hint_ttl for k in range(n) if k != home)

    def _issue_calls(self, cid, reqs, todo, shards, head) -> tuple[list, list]:
        """Script calls for requests ``todo``: grouped by home shard, in batches.

        ``head(h)`` gives the arguments before the batch for home shard ``h``. Returns
        the ``(keys, args)`` calls and, per call, ``(h, request indices)``.
        """
        groups: dict[int, list[int]] = defaultdict(list)
        for i in todo:
            groups[home_shard(reqs[i][0], shards)].append(i)
        calls, spans = [], []
        for h, idx in groups.items():
            k = self._keys(cid, h)
            keys = [k["meta"], k["claims"], k["outbox"], k["pend"], *self._req_keys(cid, h)]
            args = head(h)
            for s in range(0, len(idx), self.batch_size):
                part = idx[s : s + self.batch_size]
                calls.append((keys, [*args, *joined(reqs, part)]))
                spans.append((h, part))
        return calls, spans

    def _issue_plain(self, info, reqs, todo, now, out, rows, xdel) -> None:
        c = info.campaign
        ttl = int(self.request_ttl)
        calls, spans = self._issue_calls(
            c.campaign_id, reqs, todo, c.shards,
            lambda h: ["issue", repr(now), ttl, h, "1" if self._fallback_allowed(info, h) else "0",
                       "", "", ""],
        )  # fmt: skip
        replies = self._run(calls)
        attempts = []
        for (h, part), reply in zip(spans, replies):
            for i, r in zip(part, reply.split("\n")):
                res = self._parse(info, reqs[i][0], reqs[i][1], r, h, now, rows, xdel)
                if isinstance(res, tuple):
                    attempts.append((i, h, res[1], res[2]))
                else:
                    out[i] = res
                    if res.reason in ("out_of_stock", "budget_exhausted") and c.shards > 1:
                        info.empty[h] = time.monotonic()
        if attempts:
            self._fallback(info, reqs, attempts, now, out, rows, xdel)

    def _fallback(self, info, reqs, attempts, now, out, rows, xdel) -> None:
        """Run open fallback attempts: ask donors in a fixed order, then close on home.

        Each donor stores its decision per attempt (``take``), so a resumed attempt
        replays it; asking donors strictly in the order h+1, h+2, ... and stopping at the
        first that issues means at most one donor can ever issue for one attempt.
        """
        c = info.campaign
        cid = c.campaign_id
        n = c.shards
        # attempt -> [i, home, seq, reason, step, answer]
        live = [[i, h, seq, reason, 1, None] for i, h, seq, reason in attempts]
        while True:
            asking = [a for a in live if a[5] is None and a[4] < n]
            for a in live:
                if a[5] is None and a[4] >= n:
                    a[5] = f"D|{a[3]}"
            if not asking:
                break
            by_donor: dict[int, list[list]] = defaultdict(list)
            for a in asking:
                by_donor[(a[1] + a[4]) % n].append(a)
            calls, spans = [], []
            for d, group in by_donor.items():
                keys = self._keys(cid, d)
                for s in range(0, len(group), self.batch_size):
                    part = group[s : s + self.batch_size]
                    args: list[Any] = ["take", repr(now), d]
                    args += columns([(reqs[a[0]][0], a[2], reqs[a[0]][1], a[1]) for a in part])
                    calls.append(([keys["meta"], keys["outbox"], keys["takes"]], args))
                    spans.append((d, part))
            for (d, part), reply in zip(spans, self._run(calls)):
                for a, r in zip(part, reply.split("\n")):
                    if r.startswith("I|"):
                        p = r.split("|")
                        a[5] = "|".join(p[:4])
                        if len(p) > 4 and p[4]:
                            xdel[d].append(p[4])
                    else:
                        if r in ("X|out_of_stock", "X|budget_exhausted"):
                            info.empty[d] = time.monotonic()
                        a[4] += 1
        # close every attempt on its home shard
        by_home: dict[int, list[list]] = defaultdict(list)
        for a in live:
            by_home[a[1]].append(a)
        calls, spans = [], []
        for h, group in by_home.items():
            keys = self._keys(cid, h)
            for s in range(0, len(group), self.batch_size):
                part = group[s : s + self.batch_size]
                args = ["confirm", int(self.request_ttl)]
                args += columns([(reqs[a[0]][0], a[2], reqs[a[0]][1], a[5]) for a in part])
                calls.append(
                    ([keys["meta"], keys["claims"], keys["pend"], *self._req_keys(cid, h)], args)
                )
                spans.append((h, part))
        for (h, part), reply in zip(spans, self._run(calls)):
            for a, r in zip(part, reply.split("\n")):
                i = a[0]
                res = self._parse(info, reqs[i][0], reqs[i][1], r, h, now, rows, xdel)
                if isinstance(res, tuple):  # another closer has not finished; report as transient
                    res = IssueResult(cid, reqs[i][0], reqs[i][1], "denied", "not_ready")
                out[i] = res

    # ------------------------------------------------------------------ pre-deduction
    def _acquire_lease(self, info: CampaignState, now: float) -> Lease | None:
        c = info.campaign
        cid = c.campaign_id
        first = (os.getpid() + threading.get_ident()) % c.shards
        for j in range(c.shards):
            k = (first + j) % c.shards
            got, epoch, _reason = self._run(
                [([self._keys(cid, k)["meta"]], ["lease", repr(now), c.prededuct_chunk])]
            )[0]
            if int(got) > 0:
                return Lease(k, str(epoch), int(got), uuid.uuid4().hex[:16])
        return None

    def _issue_leased(self, info, reqs, todo, now, out, rows, xdel) -> list[int]:
        """Issue from this process's leased chunk; return the requests left for Redis stock."""
        c = info.campaign
        cid = c.campaign_id
        with self._lease_lock:
            while todo:
                lease = self._leases.get(cid)
                if lease is None or lease.remaining <= 0:
                    lease = self._acquire_lease(info, now)
                    if lease is None:
                        self._leases.pop(cid, None)
                        return todo
                    self._leases[cid] = lease
                chunk, todo = todo[: lease.remaining], todo[lease.remaining :]
                calls, spans = self._issue_calls(
                    cid, reqs, chunk, c.shards,
                    lambda h, lease=lease: ["issue_leased", repr(now), int(self.request_ttl), h,
                                            "0", lease.epoch, lease.shard, lease.lease_id],
                )  # fmt: skip
                revoked = []
                for (h, part), reply in zip(spans, self._run(calls)):
                    for i, r in zip(part, reply.split("\n")):
                        res = self._parse(info, reqs[i][0], reqs[i][1], r, h, now, rows, xdel)
                        if res.reason == "lease_revoked":
                            revoked.append(i)
                            continue
                        if res.issued and r.count("|") >= 4:  # first issuance, not a replay
                            lease.remaining -= 1
                            rows[-1] = (*rows[-1][:6], lease.lease_id, rows[-1][7])
                        out[i] = res
                if revoked:
                    # reconciliation moved the epoch on: the stock of this lease was
                    # already given back to the shard; drop it and lease again
                    self._leases.pop(cid, None)
                    todo = revoked + todo
        return todo

    def release_leases(self) -> int:
        """Return the unused stock of this process's leases to Redis; return how many."""
        back = 0
        with self._lease_lock:
            for cid, lease in list(self._leases.items()):
                if lease.remaining > 0:
                    with contextlib.suppress(ServiceUnavailableError):
                        back += int(
                            self._run(
                                [
                                    (
                                        [self._keys(cid, lease.shard)["meta"]],
                                        ["unlease", lease.remaining, lease.epoch],
                                    )
                                ]
                            )[0]
                        )
                del self._leases[cid]
        return back

    def start_worker(self, interval: float = 0.2, campaign_id: str | None = None) -> None:
        """Drain the outbox in a background thread every ``interval`` seconds.

        ``campaign_id`` limits it to one campaign's shards (default: every campaign in
        the ledger, looked up on each pass).
        """
        if self._worker is not None:
            return
        self._stop.clear()

        def loop():
            while not self._stop.wait(interval):
                with contextlib.suppress(ServiceUnavailableError):
                    self.drain(campaign_id)

        self._worker = threading.Thread(target=loop, name="coupon-outbox", daemon=True)
        self._worker.start()

    def stop_worker(self) -> None:
        """Stop the background drain worker, if one runs (its current pass finishes)."""
        if self._worker is not None:
            self._stop.set()
            self._worker.join()
            self._worker = None

    def close(self) -> None:
        """Stop the worker, drain once more and return leased stock."""
        self.stop_worker()
        with contextlib.suppress(ServiceUnavailableError):
            self.release_leases()
            self.drain()

    def __enter__(self) -> CouponIssuer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ status
    def status(self, campaign_id: str) -> dict[str, Any]:
        """Counters of a campaign from Redis and the ledger.

        Returns
        -------
        dict
            ``stock`` (total), ``issued`` (Redis), ``remaining`` (in Redis shards),
            ``leased_outstanding`` (pre-deducted, not yet issued), ``budget``,
            ``budget_used``, ``paused``, ``ready`` (Redis holds state), ``pending``
            (fallback attempts open), ``outbox_backlog``, ``ledger_issued``, ``shards``
            (per-shard dicts).
        """
        info = self._info(campaign_id)
        c = info.campaign
        self._flush_acked()
        shards = [
            {
                "shard": s.shard,
                "ready": s.ready,
                "stock": c.shard_stock()[s.shard],
                "remaining": s.remaining,
                "budget_left_cents": s.budget_left_cents if s.ready else None,
                "issued": (s.issued or 0) if s.ready else 0,
                "paused": s.paused,
                "leased": s.leased,
                "lissued": s.lissued,
                "epoch": s.epoch,
                "outbox_backlog": s.outbox_backlog,
                "pending": s.pending,
            }
            for s in self.read_shards(campaign_id)
        ]
        issued = sum(s["issued"] for s in shards)
        ledger_issued = self.ledger.count(campaign_id)
        return {
            "campaign_id": campaign_id,
            "stock": c.stock,
            "issued": issued,
            "remaining": sum(s["remaining"] or 0 for s in shards),
            "leased_outstanding": sum(s["leased"] for s in shards)
            - sum(s["lissued"] for s in shards),
            "budget": c.budget_cents / 100,
            "budget_used": ledger_issued * c.cost_cents / 100,
            "paused": any(s["paused"] for s in shards),
            "ready": all(s["ready"] for s in shards),
            "pending": sum(s["pending"] for s in shards),
            "outbox_backlog": sum(s["outbox_backlog"] for s in shards),
            "ledger_issued": ledger_issued,
            "epoch": info.epoch,
            "shards": shards,
        }

    # ------------------------------------------------------------------ reconcile
    def reconcile(self, campaign_id: str) -> ReconcileReport:
        """Rebuild a campaign's Redis state from the ledger; see :func:`reconcile`."""
        return reconcile_campaign(self, campaign_id)
