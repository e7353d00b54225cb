"""Coupon issuer: atomic Redis issuance, hot-key sharding, a durable ledger, a simulator.

>>> from mktlab.coupons import Campaign, CouponIssuer
>>> issuer = CouponIssuer()                       # MKTLAB_REDIS_URL or embedded redis-server
>>> issuer.create_campaign(Campaign("spring", stock=1000, shards=4))
>>> issuer.issue("spring", "u42", request_id="r-1").status
'issued'
"""

from mktlab.coupons.campaign import Campaign
from mktlab.coupons.connection import get_redis
from mktlab.coupons.issuer import REASONS, CouponIssuer, IssueResult
from mktlab.coupons.ledger import Ledger
from mktlab.coupons.reconcile import ReconcileReport, reconcile
from mktlab.coupons.shards import home_shard

__all__ = [
    "REASONS",
    "Campaign",
    "CouponIssuer",
    "IssueResult",
    "Ledger",
    "ReconcileReport",
    "get_redis",
    "home_shard",
    "reconcile",
]
