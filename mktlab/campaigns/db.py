"""The campaign registry's database: campaigns, their versions, approvals, API keys, the audit log.

SQLite under ``data/processed/campaigns.db`` by default, PostgreSQL (or any SQLAlchemy
database) at ``MKTLAB_DB_URL``; the same code runs on both. The schema is versioned:
:data:`MIGRATIONS` lists the steps in order, a ``schema_version`` table records which
ran, and :meth:`CampaignDB.migrate` applies the missing ones inside one transaction
(idempotent, safe when two processes start at once: PostgreSQL serialises them on an
advisory lock, SQLite on its write lock).

Money and state live in one row per campaign (``campaigns``) whose ``row_version`` is
bumped by every change: a transition updates ``WHERE row_version = <read>``, so two
concurrent transitions on one campaign can never both win.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from mktlab.config import settings
from mktlab.errors import ConflictError, MktlabError, ServiceUnavailableError, ValidationError

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
)
campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("campaign_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("rollout", sa.Float, nullable=False, default=0.0),
    sa.Column("row_version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("state_reason", sa.Text, nullable=False, default=""),
    sa.Column("paused_from", sa.String(16), nullable=True),
    sa.Column("launched_version", sa.Integer, nullable=True),
)
campaign_versions = sa.Table(
    "campaign_versions",
    metadata,
    sa.Column("campaign_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("diff", sa.Text, nullable=False),
    sa.Column("author", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("why", sa.Text, nullable=False, default=""),
    sa.Column("simulation", sa.Text, nullable=True),
)
approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("campaign_id", sa.String(64), nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("approver", sa.Text, nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("note", sa.Text, nullable=False, default=""),
    sa.UniqueConstraint("campaign_id", "version", "approver", name="uq_approval"),
)
audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=True),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("campaign_id", sa.String(64), nullable=True, index=True),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("from_state", sa.String(16), nullable=True),
    sa.Column("to_state", sa.String(16), nullable=True),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("detail", sa.Text, nullable=True),
)
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("secret_hash", sa.String(128), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("last_used_at", sa.Float, nullable=True),
)


def _create(*tables: sa.Table) -> Callable[[sa.Connection], None]:
    def step(conn: sa.Connection) -> None:
        for t in tables:
            t.create(conn, checkfirst=True)

    return step


# (version, description, step). Append only: a released step is never edited, a change
# to a table is a new step (ALTER TABLE ...) so existing databases follow.
MIGRATIONS: list[tuple[int, str, Callable[[sa.Connection], None]]] = [
    (
        1,
        "campaigns, versions, approvals, audit",
        _create(campaigns, campaign_versions, approvals, audit),
    ),
    (2, "api keys", _create(api_keys)),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


_AUDIT_DEFAULTS = dict(role=None, campaign_id=None, version=None, from_state=None, to_state=None,
                       reason="", detail=None)  # fmt: skip


class AuditBuffer:
    """Audit rows of the request path, written in batches by a background thread.

    A privileged request (``/issue``, ``/events``) should not wait for a database write of
    its own: rows are queued and committed every ``interval`` seconds in one transaction.
    A crash loses at most the last ``interval`` of audit rows (never the request's effect,
    which its own store holds).
    """

    def __init__(self, db: CampaignDB, interval: float = 0.5, max_rows: int = 100_000):
        self.db, self.interval, self.max_rows = db, float(interval), int(max_rows)
        self.dropped = 0  # rows refused while the buffer was full (the database away for long)
        self._pending_drop = 0
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mktlab-audit", daemon=True)
        self._thread.start()

    def add(self, *, actor: str, action: str, ok: bool, reason: str = "", role: str | None = None,
            detail: dict | None = None, campaign_id: str | None = None) -> None:  # fmt: skip
        row = dict(ts=time.time(), actor=actor, role=role, action=action, ok=bool(ok), reason=reason[:2000],
                   detail=dumps(detail) if detail is not None else None, campaign_id=campaign_id)  # fmt: skip
        with self._lock:
            if len(self._rows) >= self.max_rows:
                self.dropped += 1
                self._pending_drop += 1
                return
            self._rows.append(row)

    def flush(self) -> int:
        with self._lock:
            rows, self._rows = self._rows, []
            lost, self._pending_drop = self._pending_drop, 0
        if lost:  # say what the log is missing
            rows.append(dict(ts=time.time(), actor="system:audit", role=None, action="audit", ok=False,
                             reason=f"{lost} audit row(s) dropped: the buffer was full ({self.max_rows:,})",
                             detail=None, campaign_id=None))  # fmt: skip
        try:
            self.db.audit_many(rows)
        except ServiceUnavailableError:
            with self._lock:  # keep them for the next try
                self._rows[:0] = rows
            return 0
        except MktlabError:  # a row the database will never take: write the others one by one
            import logging

            kept = 0
            for r in rows:
                try:
                    self.db.audit_many([r])
                    kept += 1
                except MktlabError:
                    logging.getLogger("mktlab.campaigns").exception("audit row refused: %s", r)
            return kept
        return len(rows)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()


def normalise_url(url: str) -> str:
    """psycopg 3 is what we install; SQLAlchemy's bare ``postgresql://`` means psycopg2."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class CampaignDB:
    """A connection to the campaign registry's database.

    Parameters
    ----------
    url : str, optional
        SQLAlchemy URL; default ``settings().default_campaign_db_url``.
    """

    def __init__(self, url: str | None = None):
        self.url = normalise_url(url or settings().default_campaign_db_url)
        kwargs: dict[str, Any] = {}
        if self.url.startswith("sqlite"):
            path = self.url.split("///", 1)[-1]
            if path and path != ":memory:":
                from pathlib import Path

                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
            kwargs["connect_args"] = {"connect_timeout": 5}
        self.engine = sa.create_engine(self.url, **kwargs)
        if self.url.startswith("sqlite"):

            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _record):
                # BEGIN IMMEDIATE below takes the write lock at once; pysqlite's own
                # implicit BEGIN would take it only at the first write (lost updates)
                dbapi_conn.isolation_level = None
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

            @sa.event.listens_for(self.engine, "begin")
            def _begin(conn):
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        self._version: int | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CampaignDB({self.engine.url.render_as_string(hide_password=True)!r})"

    def _unavailable(self, exc: Exception) -> MktlabError:
        """The database's refusal as our error, without the SQL or its parameters.

        A constraint (two writers creating one campaign) is a conflict (409), a value the
        database cannot store is bad input (422); only a failure to talk to it is 503.
        """
        orig = getattr(exc, "orig", None) or exc
        first = (
            str(orig).strip().splitlines()[0][:300] if str(orig).strip() else type(orig).__name__
        )
        if isinstance(exc, IntegrityError):
            return ConflictError(f"campaign database: the write conflicts with another ({first})")
        if isinstance(exc, DataError):
            return ValidationError(f"campaign database: a value cannot be stored ({first})")
        return ServiceUnavailableError(f"campaign database {self!r} is unreachable: {first}")

    # -- schema -------------------------------------------------------------------------
    def migrate(self) -> int:
        """Apply the missing :data:`MIGRATIONS`; return the schema version (idempotent)."""
        if self._version == SCHEMA_VERSION:
            return SCHEMA_VERSION
        with self._lock:
            try:
                with self.engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7212016)"))
                    schema_version.create(conn, checkfirst=True)
                    done = set(conn.execute(sa.select(schema_version.c.version)).scalars())
                    for version, description, step in MIGRATIONS:
                        if version in done:
                            continue
                        step(conn)
                        conn.execute(
                            schema_version.insert().values(
                                version=version, applied_at=time.time(), description=description
                            )
                        )
            except (OperationalError, DBAPIError) as exc:
                raise self._unavailable(exc) from exc
            self._version = SCHEMA_VERSION
        return SCHEMA_VERSION

    def schema_version(self) -> int:
        """The highest migration applied to this database (0: none)."""
        self.migrate()
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0)

    # -- transactions -------------------------------------------------------------------
    @contextlib.contextmanager
    def begin(self) -> Iterator[sa.Connection]:
        """A connection in a transaction (committed on success, rolled back on error)."""
        self.migrate()
        try:
            with self.engine.begin() as conn:
                yield conn
        except (OperationalError, DBAPIError) as exc:
            raise self._unavailable(exc) from exc

    @contextlib.contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        """A connection for reads."""
        self.migrate()
        try:
            with self.engine.connect() as conn:
                yield conn
        except (OperationalError, DBAPIError) as exc:
            raise self._unavailable(exc) from exc

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except (OperationalError, DBAPIError, OSError):
            return False

    # -- the audit log ------------------------------------------------------------------
    def audit(
        self,
        *,
        actor: str,
        action: str,
        ok: bool,
        reason: str = "",
        role: str | None = None,
        campaign_id: str | None = None,
        version: int | None = None,
        from_state: str | None = None,
        to_state: str | None = None,
        detail: dict | None = None,
        conn: sa.Connection | None = None,
    ) -> None:
        """Append one row to the audit log (in ``conn``'s transaction when given).

        A refused attempt is audited in a transaction of its own, after the refused
        change was rolled back: the attempt stays on record, the change does not.
        """
        row = dict(
            ts=time.time(),
            actor=str(actor),
            role=role,
            action=action,
            campaign_id=campaign_id,
            version=version,
            from_state=from_state,
            to_state=to_state,
            ok=bool(ok),
            reason=str(reason)[:2000],
            detail=dumps(detail) if detail is not None else None,
        )
        if conn is not None:
            conn.execute(audit.insert().values(**row))
            return
        with self.begin() as c:
            c.execute(audit.insert().values(**row))

    def audit_many(self, rows: list[dict[str, Any]]) -> None:
        """Append prepared audit rows (``ts, actor, role, action, ok, reason, ...``) in one transaction."""
        if not rows:
            return
        with self.begin() as c:
            c.execute(audit.insert(), [{**_AUDIT_DEFAULTS, **r} for r in rows])

    def audit_log(
        self, campaign_id: str | None = None, *, action: str | None = None, limit: int = 10_000
    ):
        """The newest ``limit`` rows of the audit log, oldest first, as a DataFrame (``detail`` decoded)."""
        import pandas as pd

        q = sa.select(audit).order_by(audit.c.id.desc())
        if campaign_id is not None:
            q = q.where(audit.c.campaign_id == campaign_id)
        if action is not None:
            q = q.where(audit.c.action == action)
        with self.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q.limit(limit))][::-1]
        for r in rows:
            r["detail"] = json.loads(r["detail"]) if r["detail"] else None
        cols = [c.name for c in audit.columns]
        return pd.DataFrame(rows, columns=cols)

    def dispose(self) -> None:
        self.engine.dispose()
