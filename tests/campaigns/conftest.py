"""Fixtures of the campaign tests: a real registry database (SQLite, and PostgreSQL when it
answers), a real Redis with a namespace per test, a real SQLite coupon ledger, principals."""

from __future__ import annotations

import copy
import time
import uuid

import pytest

from mktlab.campaigns.checks import CampaignSettings
from mktlab.campaigns.db import CampaignDB
from mktlab.campaigns.lifecycle import Lifecycle
from mktlab.campaigns.roles import Principal
from mktlab.config import settings
from mktlab.coupons import CouponIssuer
from mktlab.coupons.connection import get_redis
from mktlab.coupons.ledger import Ledger
from mktlab.strategy import StrategyCatalog

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

ALICE = Principal("alice", "operator")
BOB = Principal("bob", "approver")
CAROL = Principal("carol", "approver")
DAN = Principal("dan", "analyst")
APP = Principal("shop-app", "app")


def pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=2
        ):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def redis_client():
    """MKTLAB_REDIS_URL's server (CI: the real Redis 7), else the embedded redis-server."""
    return get_redis(settings().redis_url)


@pytest.fixture
def ns(redis_client):
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
    for i in range(0, len(keys), 500):
        redis_client.delete(*keys[i : i + 500])


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """The registry on SQLite, then on the local PostgreSQL (skipped, saying so, when absent)."""
    schema = None
    if request.param == "postgresql":
        if not pg_available():
            pytest.skip("PostgreSQL at 127.0.0.1:5432 (user postgres, db test) does not answer")
        import psycopg

        schema = f"t_{uuid.uuid4().hex[:12]}"  # a schema of this test's own, dropped after it
        with psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True
        ) as c:
            c.execute(f"CREATE SCHEMA {schema}")
        d = CampaignDB(f"{PG_URL}?options=-csearch_path%3D{schema}")
    else:
        d = CampaignDB(f"sqlite:///{tmp_path / 'campaigns.db'}")
    yield d
    d.dispose()
    if schema is not None:
        import psycopg

        with psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True
        ) as c:
            c.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def issuer(redis_client, tmp_path, ns):
    led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    iss = CouponIssuer(redis=redis_client, ledger=led, namespace=ns)
    yield iss
    iss.close()
    led.dispose()


@pytest.fixture
def audiences():
    """Saved audiences as uid sets (the registry counts overlaps exactly)."""
    from pyroaring import BitMap

    return {
        "young": BitMap(range(0, 600)),
        "vip": BitMap(range(500, 700)),
        "seniors": BitMap(range(800, 900)),
    }


@pytest.fixture
def lifecycle(db, issuer, tmp_path, audiences, ns):
    return Lifecycle(
        db,
        issuer=issuer,
        catalog=StrategyCatalog(tmp_path / "strategies"),
        audiences=audiences,
        settings=CampaignSettings(budget_ceiling=50_000, two_approvals_above=10_000),
        namespace=ns,
    )


def make_spec(cid: str | None = None, *, audience="young", max_spend=5_000.0, start=None, end=None,
              stackable=False, holdout=0.1, template="Hi {name}, 5 off your cart", **extra):  # fmt: skip
    """A campaign spec dict: a random-50% strategy with a 10% holdout on ``audience``."""
    now = time.time()
    cid = cid or f"c-{uuid.uuid4().hex[:8]}"
    d = {
        "campaign_id": cid,
        "name": f"Campaign {cid}",
        "window": {
            "start": start if start is not None else now - 60,
            "end": end if end is not None else now + 7 * 86400,
        },
        "coupon": {"stock": 1000, "per_user_limit": 1, "stackable": stackable},
        "plan": {"daily_spend": 500.0},
        "strategy": {
            "name": cid,
            "policy": {"kind": "random", "rate": 0.5},
            "audience": audience,
            "holdout": holdout,
            "coupon": {"face_value": 5.0, "send_cost": 0.01},
            "budget": {"max_spend": max_spend, "max_coupons": 1000},
            "templates": {"cart": {"body": template, "channels": ["push"]}},
        },
    }
    for k, v in extra.items():
        d[k] = v
    return copy.deepcopy(d)
