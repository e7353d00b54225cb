"""API keys on the real registry database (SQLite and PostgreSQL)."""

from __future__ import annotations

import stat
import time

import pytest
import sqlalchemy as sa

from mktlab.campaigns import db as tables
from mktlab.campaigns.access import NOT_RECOGNISED, KeyStore, ensure_local_admin
from mktlab.campaigns.roles import Principal
from mktlab.errors import AuthError, NotFoundError, PermissionDeniedError, ValidationError

ADMIN = Principal("root", "admin")


def test_keys_are_stored_hashed_and_authenticate_to_their_role(db):
    ks = KeyStore(db)
    key_id, key = ks.create("shop-app", "app", ADMIN)
    assert key.startswith(f"mk_{key_id}_")
    p = ks.authenticate(key)
    assert (p.actor, p.role, p.key_id) == ("shop-app", "app", key_id)
    with db.connect() as c:
        rows = [dict(r._mapping) for r in c.execute(sa.select(tables.api_keys))]
    flat = repr(rows)
    assert key not in flat
    assert key.split("_", 2)[2] not in flat
    assert [r["role"] for r in ks.list()] == ["app"]
    assert "secret_hash" not in ks.list()[0]


def test_unknown_revoked_and_malformed_keys_get_the_same_answer(db):
    ks = KeyStore(db, ttl=0)
    key_id, key = ks.create("ops", "operator", ADMIN)
    other_id, _ = ks.create("ops2", "operator", ADMIN)
    forged = f"mk_{other_id}_" + "x" * 32  # a real id, a wrong secret
    unknown = "mk_000000000000_" + "y" * 32
    ks.revoke(key_id, ADMIN)
    for bad in (key, forged, unknown, "garbage", "mk_" + "z" * 80):
        with pytest.raises(AuthError) as exc:
            ks.authenticate(bad)
        assert str(exc.value) == NOT_RECOGNISED
    with pytest.raises(AuthError, match="API key missing"):
        ks.authenticate(None)
    log = db.audit_log(action="auth")
    assert len(log) == 6
    assert not log["ok"].any()
    with pytest.raises(NotFoundError, match="no such active key"):
        ks.revoke(key_id, ADMIN)


def test_a_revocation_takes_effect_within_the_cache_ttl(db):
    ks = KeyStore(db, ttl=0.3)
    key_id, key = ks.create("app", "app", ADMIN)
    other = KeyStore(db, ttl=0.3)  # another process's store
    assert other.authenticate(key).role == "app"
    ks.revoke(key_id, ADMIN)
    time.sleep(0.35)
    with pytest.raises(AuthError):
        other.authenticate(key)


def test_only_admins_manage_keys_and_refusals_are_audited(db):
    ks = KeyStore(db)
    with pytest.raises(PermissionDeniedError, match=r"role .operator. may not keys\.manage"):
        ks.create("x", "admin", Principal("mallory", "operator"))
    with pytest.raises(ValidationError, match="role='root': expected one of"):
        ks.create("x", "root", ADMIN)
    log = db.audit_log(action="keys.manage")
    assert list(log["ok"]) == [False, False]
    assert list(log["actor"]) == ["mallory", "root"]
    assert ks.list() == []


def test_the_local_admin_key_is_private_and_reused(db, tmp_path):
    path = tmp_path / "processed" / "admin.key"
    _p1, created = ensure_local_admin(db, path)
    assert created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_text().strip()
    assert KeyStore(db).authenticate(key).role == "admin"
    assert ensure_local_admin(db, path) == (path, False)
    assert path.read_text().strip() == key
    KeyStore(db).revoke(KeyStore(db).authenticate(key).key_id, ADMIN)
    _, created = ensure_local_admin(db, path)  # a revoked one is replaced
    assert created
    assert path.read_text().strip() != key


def test_a_flood_of_bad_keys_is_audited_in_batches_and_summarised(db):
    """Refusals go through the batched buffer; past the per-actor limit they are counted, not written."""
    from mktlab.campaigns.db import AuditBuffer

    buf = AuditBuffer(db, interval=60)  # flushed by hand below
    ks = KeyStore(db, ttl=0, audit=buf, refusals_per_window=5, refusal_window=0.5)
    for _ in range(30):
        with pytest.raises(AuthError):
            ks.authenticate("garbage")
    assert len(db.audit_log(action="auth")) == 0  # nothing written on the request path
    buf.flush()
    assert len(db.audit_log(action="auth")) == 5
    time.sleep(0.6)  # the next window: its first refusal carries the count of the skipped ones
    with pytest.raises(AuthError):
        ks.authenticate("garbage")
    buf.flush()
    log = db.audit_log(action="auth")
    assert len(log) == 6
    assert log.iloc[-1]["detail"] == {"suppressed_before": 25}
    buf.close()
