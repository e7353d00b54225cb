"""A campaign's shards in Redis and their road to the ledger.

:class:`CampaignShards` owns what every coupon operation needs underneath the issuing
decisions: key names, the ``coupon.lua`` script (loaded once, reloaded when a server
forgets it), reading and rewriting shard state, the outbox and its drain into the ledger,
and the per-process pre-deduction leases. :class:`~mktlab.coupons.issuer.CouponIssuer`
builds its decisions on top; :mod:`mktlab.coupons.reconcile` uses only the public shard
API below (:meth:`~CampaignShards.state`, :meth:`~CampaignShards.read_shards`,
:meth:`~CampaignShards.set_shards_paused`, :meth:`~CampaignShards.close_fallbacks`,
:meth:`~CampaignShards.new_epoch`, :meth:`~CampaignShards.write_shards`,
:meth:`~CampaignShards.drain`).
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis
from redis.crc import key_slot

from mktlab.coupons.campaign import Campaign
from mktlab.coupons.connection import CLUSTER_SLOTS, get_redis, is_cluster
from mktlab.coupons.ledger import Ledger
from mktlab.errors import ServiceUnavailableError

SCRIPT = resources.files("mktlab.coupons").joinpath("coupon.lua").read_text()
_OPEN_STOP = 9.0e15  # "no end" as a number Lua can compare
# Redis cannot answer now; a retry with the same request ids is safe. On a cluster this
# includes a failover in progress (CLUSTERDOWN, TRYAGAIN, a slot briefly without a master,
# redirections that did not settle within redis-py's retries).
_REDIS_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
    redis.exceptions.ClusterError,  # ClusterDownError, MasterDownError
    redis.exceptions.TryAgainError,
    redis.exceptions.AskError,  # MovedError too
    redis.exceptions.RedisClusterException,  # SlotNotCoveredError, no node reachable
)


def home_shard(user_id: str, shards: int) -> int:
    """The shard holding ``user_id``'s claims: ``crc32(user_id) % shards``."""
    return zlib.crc32(user_id.encode()) % shards


def joined(reqs: Sequence[tuple[str, str]], idx: Sequence[int]) -> list[str]:
    """Users and request ids of ``reqs[idx]`` as the script's two batch arguments."""
    # batches travel as two newline-joined arguments (ids cannot contain newlines)
    return ["\n".join(reqs[i][0] for i in idx), "\n".join(reqs[i][1] for i in idx)]


def columns(rows: Sequence[tuple[Any, ...]]) -> list[str]:
    """``rows`` transposed into one newline-joined script argument per column."""
    return ["\n".join(str(x) for x in col) for col in zip(*rows)]


def _outbox_row(d: str) -> tuple[Any, ...]:
    # coupon.lua's entry(): user|seq|code|shard|home_shard|request_id|issued_at|lease_id,
    # which is ledger.ROW_FIELDS order
    user, seq, code, src, home, rid, t, lid = d.split("|")
    return (user, int(seq), code, int(src), int(home), rid, lid or None, float(t))


def _unreachable(exc: BaseException) -> ServiceUnavailableError:
    return ServiceUnavailableError(f"Redis is unreachable: {exc}")


@dataclass
class CampaignState:
    """What this process knows of a campaign: its definition, salt, epoch, empty hints."""

    campaign: Campaign
    salt: str
    epoch: int
    empty: dict[int, float] = field(default_factory=dict)  # shard -> time seen empty


@dataclass
class Lease:
    """Stock this process pre-deducted from one shard (valid while the epoch holds)."""

    shard: int
    epoch: str
    remaining: int
    lease_id: str


@dataclass(frozen=True)
class ShardSnapshot:
    """One shard's counters as Redis holds them (``remaining is None``: no state)."""

    shard: int
    remaining: int | None
    budget_left_cents: int | None
    issued: int | None
    paused: bool
    leased: int
    lissued: int
    epoch: str | None
    outbox_backlog: int
    pending: int
    claims: dict[str, int] | None = None  # user -> coupons held, when asked for

    @property
    def ready(self) -> bool:
        """Redis holds state for this shard."""
        return self.remaining is not None


class CampaignShards:
    """Redis shard state of coupon campaigns, the outbox, and the ledger behind them.

    Parameters
    ----------
    redis : redis client or str, optional
        A redis-py client (``Redis`` or ``RedisCluster``) or a URL; default
        :func:`mktlab.coupons.connection.get_redis` (``MKTLAB_REDIS_URL`` or embedded).
    ledger : Ledger or str, optional
        The durable ledger or its SQLAlchemy URL; default ``Ledger()``.
    namespace : str
        Prefix of every Redis key (tests use a unique one per test).
    request_ttl : float
        Seconds a ``request_id``'s answer is remembered (at least; up to twice that).
    ledger_check_interval : float
        Seconds between ledger health checks while healthy.
    replica_ack_timeout : float
        On Redis Cluster: seconds to wait (``WAIT``) for the replicas of every master a
        call wrote to before its decisions are returned or recorded, so that a master
        lost to a failover cannot take an answered decision with it. A replica that does
        not confirm in time makes the call fail as unavailable (retrying the same request
        ids replays the decisions). 0 turns the wait off.
    """

    def __init__(
        self,
        redis: Any = None,
        ledger: Ledger | str | None = None,
        *,
        namespace: str = "mktlab:cp",
        request_ttl: float = 3600.0,
        ledger_check_interval: float = 1.0,
        replica_ack_timeout: float = 1.0,
    ):
        self.redis = get_redis(redis) if redis is None or isinstance(redis, str) else redis
        self.ledger = ledger if isinstance(ledger, Ledger) else Ledger(ledger)
        self.namespace = namespace
        self.request_ttl = float(request_ttl)
        self.ledger_check_interval = float(ledger_check_interval)
        self.replica_ack_timeout = float(replica_ack_timeout)
        self._cluster = is_cluster(self.redis)
        self._sha = self.redis.script_load(SCRIPT) if self._ping() else None
        self._infos: dict[str, CampaignState] = {}
        self._tags: dict[tuple[str, int, int], str] = {}
        self._replicas: tuple[float, dict[str, int]] | None = None
        self._leases: dict[str, Lease] = {}
        self._lease_lock = threading.Lock()
        self._acked: list[tuple[str, list[str]]] = []  # (outbox key, ids) to XDEL
        self._acked_lock = threading.Lock()
        self._ledger_ok_at = 0.0
        self._ledger_down = False

    # ------------------------------------------------------------------ plumbing
    def _ping(self) -> bool:
        try:
            self.redis.ping()
            return True
        except _REDIS_DOWN as exc:
            raise _unreachable(exc) from exc

    def _tag(self, cid: str, k: int) -> str:
        # Every key of one shard carries the same {hash tag}, so each script call touches
        # one slot. On a cluster the tag is picked so that shard k's slot falls in the
        # middle of the k-th of `shards` equal slices of the slot space: masters own
        # contiguous slot ranges, so a campaign's shards spread over them instead of
        # wherever crc16 lands (shards <= 1024 keeps every middle half non-empty).
        if not self._cluster:
            return f"{self.namespace}:{{{cid}#{k}}}"
        n = self._info(cid).campaign.shards
        tag = self._tags.get((cid, k, n))
        if tag is None:
            # the middle half of the slice, clear of a master's range boundary near its edge
            w = CLUSTER_SLOTS / n
            lo, hi = int(k * w + w / 4), int((k + 1) * w - w / 4)
            tag, j = f"{cid}#{k}", 0
            while not lo <= key_slot(tag.encode()) < hi:
                j += 1
                tag = f"{cid}#{k}.{j}"
            self._tags[(cid, k, n)] = tag
        return f"{self.namespace}:{{{tag}}}"

    def _keys(self, cid: str, k: int) -> dict[str, str]:
        t = self._tag(cid, k)
        return {n: f"{t}:{n}" for n in ("meta", "claims", "outbox", "pend", "takes")}

    def _req_keys(self, cid: str, k: int) -> list[str]:
        # answers live in hashes per time bucket, so old request ids expire as a whole
        b = int(time.time() // self.request_ttl)
        t = self._tag(cid, k)
        return [f"{t}:reqs:{b}", f"{t}:reqs:{b - 1}"]

    def _run(self, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """EVALSHA every ``(keys, args)`` in one pipeline; return the replies in order."""
        if not calls:
            return []
        try:
            if self._sha is None:
                self._sha = self.redis.script_load(SCRIPT)
            for attempt in range(2):
                # on a cluster, redis-py splits the pipeline per master and follows
                # MOVED/ASK; every call's keys share one hash tag, so one slot
                pipe = self.redis.pipeline(transaction=False)
                acked = self._take_acked()
                for key, ids in acked:  # outbox entries recorded by the previous call
                    pipe.xdel(key, *ids)
                for keys, args in calls:
                    pipe.evalsha(self._sha, len(keys), *keys, *args)
                replies = pipe.execute(raise_on_error=False)[len(acked) :]
                if not any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
                    break
                if attempt == 1:
                    raise ServiceUnavailableError("Redis keeps forgetting the issuer script")
                # the server restarted or failed over: load the script and run the calls
                # it refused (NOSCRIPT means the call had no effect)
                self._sha = self.redis.script_load(SCRIPT)
                redo = [
                    i
                    for i, r in enumerate(replies)
                    if isinstance(r, redis.exceptions.NoScriptError)
                ]
                again = self._run([calls[i] for i in redo])
                for i, r in zip(redo, again):
                    replies[i] = r
                break
            for r in replies:
                if isinstance(r, _REDIS_DOWN):
                    raise r
            self.await_replicas([keys[0] for keys, _ in calls])
        except _REDIS_DOWN as exc:
            raise ServiceUnavailableError(
                f"Redis is unreachable: {exc}. Retrying with the same request_ids is safe."
            ) from exc
        for r in replies:
            if isinstance(r, Exception):
                raise r
        return replies

    def await_replicas(self, keys: Sequence[str]) -> None:
        """On a cluster, ``WAIT`` until the replicas of the masters owning ``keys`` hold
        everything written so far (no-op on a single Redis or with a timeout of 0).

        Raises ``ServiceUnavailableError`` when a replica not marked failed (re-read once)
        did not confirm within ``replica_ack_timeout``.
        """
        if not self._cluster or self.replica_ack_timeout <= 0 or not keys:
            return
        short = self._wait(keys, fresh=False)
        if short:
            # a replica that has just been marked failed no longer counts: re-read it
            short = self._wait([k for k, _, _ in short], fresh=True)
        if short:
            _, node, (got, want) = short[0]
            raise ServiceUnavailableError(
                f"Redis Cluster master {node} got {got} of {want} replica confirmation(s) "
                f"within {self.replica_ack_timeout:g} s; the decisions are kept, retrying "
                "with the same request_ids returns them"
            )

    def _replica_counts(self, fresh: bool) -> dict[str, int]:
        # master host:port -> replicas not marked failed, from CLUSTER NODES (re-read at
        # most once a second): the slot map omits a replica until it replicated something,
        # and a master's connected-replica count drops exactly when a link breaks
        now = time.monotonic()
        if fresh or self._replicas is None or now - self._replicas[0] > 1.0:
            nodes = self.redis.cluster_nodes()
            by_id = {v["node_id"]: addr for addr, v in nodes.items()}
            counts: dict[str, int] = {}
            for v in nodes.values():
                flags = v["flags"].split(",")
                if v["master_id"] not in by_id or "fail" in flags or "master" in flags:
                    continue
                master = by_id[v["master_id"]]
                counts[master] = counts.get(master, 0) + 1
            self._replicas = (now, counts)
        return self._replicas[1]

    def _wait(self, keys: Sequence[str], fresh: bool) -> list[tuple[str, str, tuple[int, int]]]:
        counts = self._replica_counts(fresh)
        targets: dict[str, tuple[str, Any, int]] = {}
        for key in keys:
            node = self.redis.get_node_from_key(key)
            want = counts.get(node.name, 0)
            if want:
                targets.setdefault(node.name, (key, node, want))
        short = []
        ms = max(1, int(self.replica_ack_timeout * 1000))
        for key, node, want in targets.values():
            got = int(self.redis.execute_command("WAIT", want, ms, target_nodes=node))
            if got < want:
                short.append((key, node.name, (got, want)))
        return short

    def _info(self, cid: str) -> CampaignState:
        info = self._infos.get(cid)
        if info is None:
            got = self.ledger.get_campaign(cid)
            info = CampaignState(got["campaign"], got["salt"], got["epoch"])
            self._infos[cid] = info
        return info

    def _check_ledger(self) -> None:
        now = time.monotonic()
        if not self._ledger_down and now - self._ledger_ok_at < self.ledger_check_interval:
            return
        if self.ledger.ping():
            self._ledger_down = False
            self._ledger_ok_at = now
            return
        self._ledger_down = True
        raise ServiceUnavailableError(
            f"ledger {self.ledger!r} is unreachable: issuance refused so that no coupon is "
            "issued without a durable record"
        )

    def _meta_present(self, cid: str, shards: int) -> bool:
        try:
            pipe = self.redis.pipeline(transaction=False)
            for k in range(shards):
                pipe.hexists(self._keys(cid, k)["meta"], "stock")
            return all(pipe.execute())
        except _REDIS_DOWN as exc:
            raise _unreachable(exc) from exc

    def _load_shard(
        self,
        info: CampaignState,
        k: int,
        *,
        paused: bool,
        spent: int = 0,
        issued: int = 0,
        claims: Mapping[str, int] | None = None,
    ) -> None:
        """(Re)write shard ``k``: state from the definition minus ``spent`` coupons."""
        c = info.campaign
        keys = self._keys(c.campaign_id, k)
        stock = c.shard_stock()[k] - spent
        budget = c.shard_budget()[k] - spent * c.cost_cents
        meta = {
            "stock": stock,
            "budget": budget,
            "cost": c.cost_cents,
            "start": c.start if c.start is not None else 0,
            "stop": c.end if c.end is not None else _OPEN_STOP,
            "limit": c.per_user_limit,
            "paused": 1 if paused else 0,
            "epoch": info.epoch,
            "max_backlog": c.max_backlog,
            "salt": info.salt,
            "issued": issued,
            "leased": 0,
            "lissued": 0,
            "shard": k,
            "shards": c.shards,
        }
        try:
            pipe = self.redis.pipeline(transaction=False)
            # paused while claims are rewritten; the final HSET below sets the wanted state
            pipe.hset(keys["meta"], "paused", 1)
            for name in ("claims", "pend", "takes"):  # one key per DEL: cluster pipelines
                pipe.delete(keys[name])
            items = list((claims or {}).items())
            for i in range(0, len(items), 5000):
                pipe.hset(keys["claims"], mapping=dict(items[i : i + 5000]))
            pipe.hset(keys["meta"], mapping=meta)
            pipe.execute()
            self.await_replicas([keys["meta"]])
        except _REDIS_DOWN as exc:
            raise _unreachable(exc) from exc

    # ------------------------------------------------------------------ shard API
    def campaign(self, campaign_id: str) -> Campaign:
        """The stored definition of a campaign (:class:`NotFoundError` if unknown)."""
        return self._info(campaign_id).campaign

    def state(self, campaign_id: str, *, reload: bool = False) -> CampaignState:
        """This process's view of a campaign; ``reload`` re-reads epoch and definition."""
        if reload:
            self._infos.pop(campaign_id, None)
        return self._info(campaign_id)

    def set_shards_paused(self, campaign_id: str, paused: bool) -> None:
        """Flip every shard's pause flag in Redis (the ledger's operator flag is untouched)."""
        info = self._info(campaign_id)
        try:
            pipe = self.redis.pipeline(transaction=False)
            for k in range(info.campaign.shards):
                pipe.hset(self._keys(campaign_id, k)["meta"], "paused", 1 if paused else 0)
            pipe.execute()
        except _REDIS_DOWN as exc:
            raise _unreachable(exc) from exc

    def read_shards(self, campaign_id: str, *, claims: bool = False) -> list[ShardSnapshot]:
        """Every shard's counters in one pipeline; with ``claims``, its claims hash too.

        Raises
        ------
        ServiceUnavailableError
            Redis is unreachable.
        """
        n = self._info(campaign_id).campaign.shards
        fields = ("stock", "budget", "issued", "paused", "leased", "lissued", "epoch")
        per = 4 if claims else 3
        try:
            pipe = self.redis.pipeline(transaction=False)
            for k in range(n):
                keys = self._keys(campaign_id, k)
                pipe.hmget(keys["meta"], *fields)
                pipe.xlen(keys["outbox"])
                pipe.hlen(keys["pend"])
                if claims:
                    pipe.hgetall(keys["claims"])
            replies = pipe.execute()
        except _REDIS_DOWN as exc:
            raise _unreachable(exc) from exc
        out = []
        for k in range(n):
            m, backlog, pend, *rest = replies[per * k : per * k + per]
            out.append(
                ShardSnapshot(
                    shard=k,
                    remaining=None if m[0] is None else int(m[0]),
                    budget_left_cents=None if m[1] is None else int(m[1]),
                    issued=None if m[2] is None else int(m[2]),
                    paused=m[3] == "1",
                    leased=int(m[4] or 0),
                    lissued=int(m[5] or 0),
                    epoch=m[6],
                    outbox_backlog=int(backlog),
                    pending=int(pend),
                    claims={u: int(v) for u, v in rest[0].items()} if claims else None,
                )
            )
        return out

    def close_fallbacks(self, campaign_id: str) -> tuple[int, int]:
        """Fence every donor of every open fallback attempt, then close the attempt.

        After the fence no donor can issue for the attempt any more, so the decision read
        back is final: the attempt keeps the claim if exactly one donor issued, else it
        releases it. Returns ``(confirmed, released)`` attempt counts.
        """
        shards = self._info(campaign_id).campaign.shards
        confirmed = released = 0
        for h in range(shards):
            keys = self._keys(campaign_id, h)
            try:
                pend = self.redis.hgetall(keys["pend"])
            except _REDIS_DOWN as exc:
                raise _unreachable(exc) from exc
            for fld, value in pend.items():
                user, seq = fld.rsplit("|", 1)
                rid, reason = value.split("|", 1)
                calls = []
                for j in range(1, shards):
                    d = (h + j) % shards
                    dk = self._keys(campaign_id, d)
                    args = ["fence", "0", d, user, seq, rid, h]
                    calls.append(([dk["meta"], dk["outbox"], dk["takes"]], args))
                won = [a for a in self._run(calls) if a.startswith("I|")]
                answer = "|".join(won[0].split("|")[:4]) if won else f"D|{reason}"
                home_keys = [keys["meta"], keys["claims"], keys["pend"]]
                self._run(
                    [
                        (
                            [*home_keys, *self._req_keys(campaign_id, h)],
                            ["confirm", int(self.request_ttl), user, seq, rid, answer],
                        )
                    ]
                )
                if won:
                    confirmed += 1
                else:
                    released += 1
        return confirmed, released

    def new_epoch(self, campaign_id: str) -> int:
        """Move the campaign to a new epoch, which revokes every outstanding lease.

        The epoch is recorded in the ledger; shards take it on at the next
        :meth:`write_shards`, which also gives the leases' unused stock back.
        """
        info = self._info(campaign_id)
        info.epoch += 1
        self.ledger.update_campaign(campaign_id, epoch=info.epoch)
        with self._lease_lock:
            self._leases.pop(campaign_id, None)
        return info.epoch

    def write_shards(
        self,
        campaign_id: str,
        *,
        spent: Mapping[int, int],
        claims: Mapping[int, Mapping[str, int]],
        paused: bool = True,
    ) -> None:
        """Rewrite every shard from the definition: stock and budget minus ``spent[k]``,
        claims ``claims[k]`` (user -> coupons), issued their sum, under the current epoch.

        Forgets this process's "shard seen empty" hints, which described the old state.
        """
        info = self._info(campaign_id)
        for k in range(info.campaign.shards):
            mine = claims.get(k, {})
            self._load_shard(
                info, k, paused=paused, spent=spent.get(k, 0), issued=sum(mine.values()),
                claims=mine,
            )  # fmt: skip
        info.empty.clear()

    # ------------------------------------------------------------------ ledger side
    def _commit(self, cid: str, rows: list[tuple], xdel: dict[int, list[str]]) -> None:
        try:
            self.ledger.record_tuples(cid, rows)
        except ServiceUnavailableError as exc:
            self._ledger_down = True
            raise ServiceUnavailableError(
                f"{exc}. {len(rows)} decided coupon(s) stay in the Redis outbox until the "
                "ledger is back; retry the same request_ids then"
            ) from exc
        self._ledger_ok_at = time.monotonic()
        self._xdel(cid, xdel)

    def _xdel(self, cid: str, xdel: dict[int, list[str]], *, now: bool = False) -> None:
        """Delete recorded entries from the outbox.

        The deletions ride along with the next call's pipeline (one round trip per
        batch instead of two); until then they sit in the outbox as
        entries the ledger already holds, which a drain would re-insert harmlessly.
        """
        if not xdel:
            return
        with self._acked_lock:
            for k, ids in xdel.items():
                key = self._keys(cid, k)["outbox"]
                for s in range(0, len(ids), 1000):
                    self._acked.append((key, ids[s : s + 1000]))
        if now:
            self._flush_acked()

    def _take_acked(self) -> list[tuple[str, list[str]]]:
        with self._acked_lock:
            acked, self._acked = self._acked, []
        return acked

    def _flush_acked(self) -> None:
        acked = self._take_acked()
        if not acked:
            return
        try:
            pipe = self.redis.pipeline(transaction=False)
            for key, ids in acked:
                pipe.xdel(key, *ids)
            pipe.execute()
        except _REDIS_DOWN:
            pass  # recorded already; the drainer or reconcile removes them later

    def drain(self, campaign_id: str | None = None, batch: int = 5000) -> int:
        """Move outbox entries into the ledger (idempotent); return how many were moved."""
        self._flush_acked()
        cids = [campaign_id] if campaign_id else self.ledger.campaign_ids()
        moved = 0
        for cid in cids:
            info = self._info(cid)
            for k in range(info.campaign.shards):
                key = self._keys(cid, k)["outbox"]
                while True:
                    try:
                        entries = self.redis.xrange(key, "-", "+", count=batch)
                    except _REDIS_DOWN as exc:
                        raise _unreachable(exc) from exc
                    if not entries:
                        break
                    rows = [_outbox_row(f["d"]) for _, f in entries]
                    # only replicated entries: one the replica lacks could be re-decided
                    try:
                        self.await_replicas([key])
                    except _REDIS_DOWN as exc:
                        raise _unreachable(exc) from exc
                    self._commit(cid, rows, {})
                    self._xdel(cid, {k: [eid for eid, _ in entries]}, now=True)
                    moved += len(rows)
        return moved
