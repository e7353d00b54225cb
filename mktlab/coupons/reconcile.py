"""Reconciliation: rebuild a campaign's Redis state from the ledger, its source of truth.

Run it after a Redis restart or failover (Redis lost acknowledged writes, or all of its
state), after an issuing process crashed holding leased stock, or any time to audit.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import redis

from mktlab.coupons.campaign import Campaign
from mktlab.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from mktlab.coupons.issuer import CouponIssuer, ReconcileReport


def _redis_state(
    issuer: CouponIssuer, cid: str, shards: int
) -> tuple[list[list[Any]], list[dict[str, str]]]:
    try:
        pipe = issuer.redis.pipeline(transaction=False)
        for k in range(shards):
            pipe.hmget(issuer._keys(cid, k)["meta"], "stock", "issued", "leased", "lissued")
        metas = pipe.execute()
        pipe = issuer.redis.pipeline(transaction=False)
        for k in range(shards):
            pipe.hgetall(issuer._keys(cid, k)["claims"])
        claims = pipe.execute()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise ServiceUnavailableError(f"Redis is unreachable: {exc}") from exc
    return metas, claims


def _close_pending(issuer: CouponIssuer, cid: str, shards: int) -> tuple[int, int]:
    """Fence every donor of every open fallback attempt, then close the attempt.

    After the fence no donor can issue for the attempt any more, so the decision read
    back is final: the attempt keeps the claim if exactly one donor issued, else it
    releases it.
    """
    confirmed = released = 0
    for h in range(shards):
        keys = issuer._keys(cid, h)
        try:
            pend = issuer.redis.hgetall(keys["pend"])
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            raise ServiceUnavailableError(f"Redis is unreachable: {exc}") from exc
        for field, value in pend.items():
            user, seq = field.rsplit("|", 1)
            rid, reason = value.split("|", 1)
            calls = []
            for j in range(1, shards):
                d = (h + j) % shards
                dk = issuer._keys(cid, d)
                calls.append(
                    ([dk["meta"], dk["outbox"], dk["takes"]], ["fence", "0", d, user, seq, rid, h])
                )
            answers = issuer._run(calls)
            won = [a for a in answers if a.startswith("I|")]
            answer = "|".join(won[0].split("|")[:4]) if won else f"D|{reason}"
            issuer._run(
                [
                    (
                        [keys["meta"], keys["claims"], keys["pend"], *issuer._req_keys(cid, h)],
                        ["confirm", int(issuer.request_ttl), user, seq, rid, answer],
                    )
                ]
            )
            if won:
                confirmed += 1
            else:
                released += 1
    return confirmed, released


def reconcile_campaign(issuer: CouponIssuer, campaign_id: str) -> ReconcileReport:
    """See :func:`reconcile`."""
    from mktlab.coupons.issuer import ReconcileReport, home_shard

    issuer._infos.pop(campaign_id, None)  # re-read epoch and definition
    info = issuer._info(campaign_id)
    c = info.campaign
    operator_paused = issuer.ledger.get_campaign(campaign_id)["paused"]
    metas_before, _ = _redis_state(issuer, campaign_id, c.shards)
    redis_was_empty = all(m[0] is None for m in metas_before)
    # Quiesce: scripts check the flag atomically, so after this no shard changes state
    # except through the steps below.
    issuer._set_paused(campaign_id, True)
    drained = issuer.drain(campaign_id)
    confirmed, released = _close_pending(issuer, campaign_id, c.shards)
    drained += issuer.drain(campaign_id)
    metas, redis_claims = _redis_state(issuer, campaign_id, c.shards)

    ledger = issuer.ledger
    spent_by_shard = ledger.counts_by(campaign_id, "shard")
    ledger_claims = ledger.claims(campaign_id)
    per_home: dict[int, dict[str, int]] = defaultdict(dict)
    for user, n in ledger_claims.items():
        per_home[home_shard(user, c.shards)][user] = n
    missing = extra = 0
    sample: list[str] = []
    for k in range(c.shards):
        have = {u: int(v) for u, v in redis_claims[k].items()}
        want = per_home.get(k, {})
        missing += sum(1 for u, n in want.items() if have.get(u, 0) < n)
        for u, n in have.items():
            if want.get(u, 0) < n:
                extra += 1
                if len(sample) < 5:
                    sample.append(u)

    def num(v):
        return int(v) if v is not None else 0

    remaining_before = sum(num(m[0]) for m in metas_before)
    redis_issued_before = sum(num(m[1]) for m in metas_before)
    stranded = sum(num(m[2]) for m in metas) - sum(num(m[3]) for m in metas)

    # A new epoch revokes every outstanding lease: their unused stock comes back below
    # (stock is rebuilt as allocation - coupons the ledger has charged to the shard).
    info.epoch += 1
    ledger.update_campaign(campaign_id, epoch=info.epoch)
    issuer._leases.pop(campaign_id, None)
    for k in range(c.shards):
        issuer._load_shard(
            info,
            k,
            paused=True,
            spent=spent_by_shard.get(k, 0),
            issued=sum(per_home.get(k, {}).values()),
            claims=per_home.get(k, {}),
        )
    remaining_after = sum(s - spent_by_shard.get(k, 0) for k, s in enumerate(c.shard_stock()))
    if not operator_paused:
        issuer._set_paused(campaign_id, False)
    info.empty.clear()
    return ReconcileReport(
        campaign_id=campaign_id,
        redis_was_empty=redis_was_empty,
        drained=drained,
        pending_confirmed=confirmed,
        pending_released=released,
        ledger_issued=sum(ledger_claims.values()),
        redis_issued_before=redis_issued_before,
        remaining_before=remaining_before,
        remaining_after=remaining_after,
        stranded_recovered=max(stranded, 0),
        claims_missing_in_redis=missing,
        claims_extra_in_redis=extra,
        sample_extra_users=sample,
        epoch=info.epoch,
        resumed=not operator_paused,
    )


def reconcile(
    campaign: str | Campaign,
    *,
    issuer: CouponIssuer | None = None,
    redis: Any = None,
    ledger: Any = None,
    namespace: str = "mktlab:cp",
) -> ReconcileReport:
    """Rebuild a campaign's Redis state from the ledger and report discrepancies.

    Steps: pause every shard; drain the outbox into the ledger; close open fallback
    attempts (fence the donors, then keep or release the claim); drain again; rewrite
    each shard as *allocation − coupons the ledger charged to it*, its claims as the
    ledger's, under a new epoch (which revokes pre-deducted leases, returning stranded
    stock); resume unless an operator had paused the campaign.

    Parameters
    ----------
    campaign : str or Campaign
    issuer : CouponIssuer, optional
        Reuse an issuer; otherwise one is built from ``redis``, ``ledger``, ``namespace``.

    Returns
    -------
    ReconcileReport
    """
    from mktlab.coupons.issuer import CouponIssuer

    cid = campaign.campaign_id if isinstance(campaign, Campaign) else campaign
    if issuer is None:
        issuer = CouponIssuer(redis=redis, ledger=ledger, namespace=namespace)
    return reconcile_campaign(issuer, cid)
