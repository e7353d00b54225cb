"""API keys: who is calling, in which role. Stored hashed, revocable, compared in constant time.

A key reads ``mk_<key id>_<secret>``; it is shown once, when created. The registry
database keeps only its key id, name, role and the SHA-256 of the whole key. A salted,
slow hash (bcrypt, scrypt) protects low-entropy passwords against guessing; these keys
carry 192 random bits, which no guessing reaches, so a plain SHA-256 is as safe and lets
every request be checked in microseconds.

:meth:`KeyStore.authenticate` answers the same :class:`~mktlab.errors.AuthError`
("not recognised or revoked") for a key that never existed, a revoked one and a
malformed one, and compares hashes with :func:`hmac.compare_digest`, also against a
dummy hash when the id is unknown, so neither the message nor the timing tells which
keys exist. Successful lookups are cached for ``ttl`` seconds (default 1): a revocation
takes effect within that time in every process. Creating and revoking keys is audited,
and so is every refused authentication.

:func:`ensure_local_admin` gives the embedded default its one admin key, written with
mode 0600 to ``settings().admin_key_path`` (``make demo`` prints where).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mktlab.campaigns import db as tables
from mktlab.campaigns.db import CampaignDB
from mktlab.campaigns.roles import ROLES, Principal, require
from mktlab.errors import AuthError, MktlabError, NotFoundError, ValidationError

KEY_RE = re.compile(r"mk_([0-9a-f]{12})_([A-Za-z0-9_\-]{20,64})")
_DUMMY = hashlib.sha256(b"mktlab-no-such-key").hexdigest()
NOT_RECOGNISED = "API key not recognised or revoked"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    """API keys in the registry database.

    Parameters
    ----------
    db : CampaignDB
    ttl : float
        Seconds a successful lookup is cached (a revocation takes effect within it).
    audit : AuditBuffer, optional
        Where refused attempts are audited (the service's batched buffer, so a refusal
        costs no database write of its own); default: written at once.
    refusals_per_window : int
        Refusals audited one by one per actor (an existing key's id; ``key:unknown`` for
        ids that exist nowhere, whatever they are; ``anonymous``) per
        ``refusal_window`` seconds; past that they are counted, and the count is audited
        with the next refusal the window allows (a flood of bad keys cannot flood the log).
    touch_every : float
        ``last_used_at`` is written at most once per key per ``touch_every`` seconds in
        this process (a busy key costs no database write per cache miss).
    """

    def __init__(self, db: CampaignDB | None = None, *, ttl: float = 1.0, audit: Any = None,
                 refusals_per_window: int = 20, refusal_window: float = 10.0,
                 touch_every: float = 60.0):  # fmt: skip
        self.db = db if db is not None else CampaignDB()
        self.ttl = float(ttl)
        self.audit = audit
        self.refusals_per_window, self.refusal_window = (
            int(refusals_per_window),
            float(refusal_window),
        )
        self._refusals: dict[str, list[float]] = {}  # actor -> [window start, audited, suppressed]
        self._cache: dict[str, tuple[float, Principal]] = {}
        self.touch_every = float(touch_every)
        self._touched: dict[str, float] = {}  # key_id -> monotonic time of the last write
        self._lock = threading.Lock()

    def create(self, name: str, role: str, by: Principal) -> tuple[str, str]:
        """A new key for ``name`` in ``role``: returns ``(key_id, key)``; the key is not kept."""
        try:
            require(by, "keys.manage")
            if role not in ROLES:
                raise ValidationError(f"role={role!r}: expected one of {ROLES}")
            if not isinstance(name, str) or not name.strip() or len(name) > 128:
                raise ValidationError(f"name={name!r}: expected 1-128 characters naming the holder")
            key_id = secrets.token_hex(6)
            key = f"mk_{key_id}_{secrets.token_urlsafe(24)}"
            with self.db.begin() as conn:
                conn.execute(tables.api_keys.insert().values(
                    key_id=key_id, name=name, role=role, secret_hash=_hash(key), created_at=time.time(),
                    created_by=by.actor))  # fmt: skip
                self.db.audit(actor=by.actor, role=by.role, action="keys.manage", ok=True, reason=f"created key {key_id}",
                              detail={"key_id": key_id, "name": name, "role": role}, conn=conn)  # fmt: skip
        except MktlabError as exc:
            self.db.audit(actor=getattr(by, "actor", "anonymous"), role=getattr(by, "role", None),
                          action="keys.manage", ok=False, reason=f"create {role} key: {exc}")  # fmt: skip
            raise
        return key_id, key

    def revoke(self, key_id: str, by: Principal) -> None:
        """Revoke ``key_id`` (effective within ``ttl`` everywhere)."""
        try:
            require(by, "keys.manage")
            with self.db.begin() as conn:
                t = tables.api_keys
                res = conn.execute(
                    t.update()
                    .where(t.c.key_id == key_id, t.c.revoked_at.is_(None))
                    .values(revoked_at=time.time())
                )
                if res.rowcount != 1:
                    raise NotFoundError(f"key {key_id!r}: no such active key")
                self.db.audit(actor=by.actor, role=by.role, action="keys.manage", ok=True,
                              reason=f"revoked key {key_id}", detail={"key_id": key_id}, conn=conn)  # fmt: skip
        except MktlabError as exc:
            self.db.audit(actor=getattr(by, "actor", "anonymous"), role=getattr(by, "role", None),
                          action="keys.manage", ok=False, reason=f"revoke {key_id}: {exc}")  # fmt: skip
            raise
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if v[1].key_id != key_id}

    def list(self) -> list[dict[str, Any]]:
        """Every key without its hash: id, name, role, created, revoked, last used."""
        t = tables.api_keys
        cols = [c for c in t.c if c.name != "secret_hash"]
        with self.db.connect() as conn:
            return [
                dict(r._mapping) for r in conn.execute(sa.select(*cols).order_by(t.c.created_at))
            ]

    def cached(self, key: str | None) -> Principal | None:
        """The principal of ``key`` if it was authenticated less than ``ttl`` ago (no I/O)."""
        hit = self._cache.get(key) if key else None
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        return None

    def authenticate(self, key: str | None, *, where: str = "") -> Principal:
        """The principal holding ``key``; :class:`AuthError` (audited) when missing or not recognised."""
        if not key:
            self._refused("anonymous", "API key missing", where)
            raise AuthError(
                "API key missing: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            )
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        m = KEY_RE.fullmatch(key)
        row = None
        if m is not None:
            t = tables.api_keys
            with self.db.connect() as conn:
                row = conn.execute(sa.select(t).where(t.c.key_id == m.group(1))).first()
        stored = row.secret_hash if row is not None else _DUMMY
        same = hmac.compare_digest(stored, _hash(key))  # timed alike whether or not the id exists
        if row is None or not same or row.revoked_at is not None:
            # a real key id is its own actor; ids the caller made up share one budget
            who = (
                "anonymous"
                if m is None
                else (f"key:{m.group(1)}" if row is not None else "key:unknown")
            )
            self._refused(who, NOT_RECOGNISED, where, m.group(1) if m is not None else None)
            raise AuthError(NOT_RECOGNISED)
        p = Principal(row.name, row.role, row.key_id)
        self._touch(row.key_id)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now, p)
        return p

    def _touch(self, key_id: str) -> None:
        """Record when a key was last used: at most once per ``touch_every`` seconds per key."""
        now = time.monotonic()
        with self._lock:
            last = self._touched.get(key_id)
            if last is not None and now - last < self.touch_every:
                return
            if len(self._touched) > 10_000:
                self._touched.clear()
            self._touched[key_id] = now
        t = tables.api_keys
        try:
            with self.db.begin() as conn:
                conn.execute(
                    sa.update(t).where(t.c.key_id == key_id).values(last_used_at=time.time())
                )
        except MktlabError:  # bookkeeping: never refuse a good key for it
            pass

    def _refused(self, actor: str, reason: str, where: str, key_id: str | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            w = self._refusals.get(actor)
            if w is None or now - w[0] >= self.refusal_window:
                if len(self._refusals) > 10_000:
                    self._refusals.clear()
                suppressed = int(w[2]) if w is not None else 0
                w = self._refusals[actor] = [now, 0, 0]
            else:
                suppressed = 0
            if w[1] >= self.refusals_per_window:
                w[2] += 1
                return
            w[1] += 1
        detail: dict[str, Any] = {"where": where} if where else {}
        if key_id is not None:
            detail["key_id"] = key_id  # the id presented (its secret never)
        if suppressed:
            detail["suppressed_before"] = (
                suppressed  # refusals of the previous window not audited singly
            )
        row = dict(actor=actor, action="auth", ok=False, reason=reason, detail=detail or None)
        if self.audit is not None:
            self.audit.add(**row)
        else:
            self.db.audit(**row)


def write_secret(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` with mode 0600 (temp file in the folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_local_admin(db: CampaignDB | None = None, path: Path | None = None) -> tuple[Path, bool]:
    """The embedded default's admin key: create it (file mode 0600) unless a working one exists.

    Returns ``(path, created)``.
    """
    from mktlab.config import settings

    path = Path(path) if path is not None else settings().admin_key_path
    store = KeyStore(db)
    if path.exists():
        try:
            if store.authenticate(path.read_text().strip(), where="local-admin").role == "admin":
                return path, False
        except AuthError:
            pass  # revoked or from another database: make a new one
    bootstrap = Principal("local-setup", "admin")
    _, key = store.create("local-admin", "admin", bootstrap)
    write_secret(path, key)
    return path, True
