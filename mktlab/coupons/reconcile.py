"""Reconciliation: rebuild a campaign's Redis state from the ledger, its source of truth.

Run it after a Redis restart or failover (Redis lost acknowledged writes, or all of its
state), after an issuing process crashed holding leased stock, or any time to audit.
It works through the public shard API of :class:`~mktlab.coupons.shards.CampaignShards`
(which :class:`~mktlab.coupons.issuer.CouponIssuer` extends), so it needs no issuer of
its own: without one it opens the shards directly.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from mktlab.coupons.campaign import Campaign
from mktlab.coupons.shards import CampaignShards, home_shard


@dataclass
class ReconcileReport:
    """What :func:`reconcile` found and repaired."""

    campaign_id: str
    redis_was_empty: bool
    drained: int
    pending_confirmed: int
    pending_released: int
    ledger_issued: int
    redis_issued_before: int
    remaining_before: int
    remaining_after: int
    stranded_recovered: int
    claims_missing_in_redis: int
    claims_extra_in_redis: int
    sample_extra_users: list[str]
    epoch: int
    resumed: bool

    @property
    def consistent(self) -> bool:
        """True when Redis already agreed with the ledger (nothing had to be repaired)."""
        return (
            not self.redis_was_empty
            and self.claims_missing_in_redis == 0
            and self.claims_extra_in_redis == 0
            and self.remaining_before == self.remaining_after
            and self.redis_issued_before == self.ledger_issued
        )

    def to_dict(self) -> dict[str, Any]:
        """The report's fields plus ``consistent``, as plain values (for JSON)."""
        d = asdict(self)
        d["consistent"] = self.consistent
        return d


def reconcile_campaign(shards: CampaignShards, campaign_id: str) -> ReconcileReport:
    """Reconcile ``campaign_id`` through ``shards`` (an issuer or bare shards); see :func:`reconcile`."""
    info = shards.state(campaign_id, reload=True)  # re-read epoch and definition
    c = info.campaign
    ledger = shards.ledger
    operator_paused = ledger.get_campaign(campaign_id)["paused"]
    before = shards.read_shards(campaign_id)
    redis_was_empty = all(not s.ready for s in before)
    # Quiesce: scripts check the flag atomically, so after this no shard changes state
    # except through the steps below.
    shards.set_shards_paused(campaign_id, True)
    drained = shards.drain(campaign_id)
    confirmed, released = shards.close_fallbacks(campaign_id)
    drained += shards.drain(campaign_id)
    after = shards.read_shards(campaign_id, claims=True)

    spent_by_shard = ledger.counts_by(campaign_id, "shard")
    ledger_claims = ledger.claims(campaign_id)
    per_home: dict[int, dict[str, int]] = defaultdict(dict)
    for user, n in ledger_claims.items():
        per_home[home_shard(user, c.shards)][user] = n
    missing = extra = 0
    sample: list[str] = []
    for s in after:
        have = s.claims or {}
        want = per_home.get(s.shard, {})
        missing += sum(1 for u, n in want.items() if have.get(u, 0) < n)
        for u, n in have.items():
            if want.get(u, 0) < n:
                extra += 1
                if len(sample) < 5:
                    sample.append(u)

    remaining_before = sum(s.remaining or 0 for s in before)
    redis_issued_before = sum(s.issued or 0 for s in before)
    stranded = sum(s.leased for s in after) - sum(s.lissued for s in after)

    # A new epoch revokes every outstanding lease: their unused stock comes back below
    # (stock is rebuilt as allocation - coupons the ledger has charged to the shard).
    epoch = shards.new_epoch(campaign_id)
    shards.write_shards(campaign_id, spent=spent_by_shard, claims=per_home, paused=True)
    remaining_after = sum(s - spent_by_shard.get(k, 0) for k, s in enumerate(c.shard_stock()))
    if not operator_paused:
        shards.set_shards_paused(campaign_id, False)
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
        epoch=epoch,
        resumed=not operator_paused,
    )


def reconcile(
    campaign: str | Campaign,
    *,
    issuer: CampaignShards | None = None,
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
        Reuse an issuer (any :class:`~mktlab.coupons.shards.CampaignShards`); otherwise
        the shards are opened from ``redis``, ``ledger``, ``namespace``.

    Returns
    -------
    ReconcileReport
    """
    cid = campaign.campaign_id if isinstance(campaign, Campaign) else campaign
    if issuer is None:
        issuer = CampaignShards(redis=redis, ledger=ledger, namespace=namespace)
    return reconcile_campaign(issuer, cid)
