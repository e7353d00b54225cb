"""The durable ledger of issued coupons: the issuer's source of truth.

SQLite by default (``settings().default_ledger_url``), PostgreSQL when
``MKTLAB_LEDGER_URL`` is set. ``UNIQUE(campaign_id, user_id, seq)`` is the last guard
against issuing one user's ``seq``-th coupon twice; inserts ignore rows already present,
so draining the outbox is idempotent.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, OperationalError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: SQLite's own locking only
    fcntl = None  # type: ignore[assignment]

from mktlab.config import settings
from mktlab.coupons.campaign import Campaign
from mktlab.errors import NotFoundError, ServiceUnavailableError, ValidationError

metadata = sa.MetaData()

campaigns = sa.Table(
    "coupon_campaigns",
    metadata,
    sa.Column("campaign_id", sa.String(64), primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("epoch", sa.Integer, nullable=False, default=1),
    sa.Column("paused", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

issuances = sa.Table(
    "coupon_issuances",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("campaign_id", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(128), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("coupon_code", sa.String(32), nullable=False),
    sa.Column("shard", sa.Integer, nullable=False),  # whose stock paid for it
    sa.Column("home_shard", sa.Integer, nullable=False),  # where the user's claim lives
    sa.Column("request_id", sa.String(128), nullable=False),
    sa.Column("lease_id", sa.String(64), nullable=True),
    sa.Column("issued_at", sa.Float, nullable=False),
    sa.Column("recorded_at", sa.Float, nullable=False),
    sa.UniqueConstraint("campaign_id", "user_id", "seq", name="uq_coupon_campaign_user_seq"),
)

ROW_FIELDS = (
    "user_id",
    "seq",
    "coupon_code",
    "shard",
    "home_shard",
    "request_id",
    "lease_id",
    "issued_at",
)


def _normalise(url: str) -> str:
    # psycopg 3 is what we install; SQLAlchemy's bare "postgresql://" means psycopg2
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class Ledger:
    """Issued coupons and campaign definitions in a SQL database.

    Parameters
    ----------
    url : str, optional
        SQLAlchemy URL; defaults to ``settings().default_ledger_url`` (SQLite under
        ``data/processed/`` unless ``MKTLAB_LEDGER_URL`` is set).
    """

    def __init__(self, url: str | None = None):
        self.url = _normalise(url or settings().default_ledger_url)
        kwargs: dict[str, Any] = {}
        self._lock_path: str | None = None
        if self.url.startswith("sqlite"):
            path = self.url.split("///", 1)[-1]
            if path and path != ":memory:":
                from pathlib import Path

                Path(path).parent.mkdir(parents=True, exist_ok=True)
                self._lock_path = path + ".lock"
            # several issuing processes share the file: wait for the lock, don't fail
            kwargs["connect_args"] = {"timeout": 60}
        else:
            kwargs["pool_pre_ping"] = True
            kwargs["connect_args"] = {"connect_timeout": 5}
        self.engine = sa.create_engine(self.url, **kwargs)
        if self.url.startswith("sqlite"):

            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _record):
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

        self._ready = False
        self._insert_sql: str | None = None
        self._thread_lock = threading.Lock()
        self._lock_fd: int | None = None

    @contextlib.contextmanager
    def _writer(self):
        """Serialise writers of a SQLite file across threads and processes.

        SQLite lets one writer in at a time and makes the others poll with growing sleeps
        (1, 2, 5 ms ...), which is where the issuing path's tail latency came from; a
        blocking ``flock`` on ``<db>.lock`` hands the file to the next writer as soon as
        the previous one commits. No-op for other databases and where ``fcntl`` is absent.
        """
        if self._lock_path is None or fcntl is None:
            yield
            return
        with self._thread_lock:
            if self._lock_fd is None:
                self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def __repr__(self) -> str:
        return f"Ledger({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- plumbing ---------------------------------------------------------------------
    def _unavailable(self, exc: Exception) -> ServiceUnavailableError:
        return ServiceUnavailableError(f"ledger database {self!r} is unreachable: {exc}")

    def _begin(self):
        self.ensure_schema()
        return self.engine.begin()

    def ensure_schema(self) -> None:
        """Create the tables if they do not exist."""
        if self._ready:
            return
        for attempt in range(5):
            try:
                metadata.create_all(self.engine)
                break
            except (OperationalError, DBAPIError) as exc:
                # another process created the tables between our check and CREATE
                if "already exists" in str(exc) or "duplicate key" in str(exc):
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise self._unavailable(exc) from exc
        self._ready = True

    def ping(self) -> bool:
        """True when the database answers; False when it does not."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except (OperationalError, DBAPIError, OSError):
            return False

    # -- campaigns --------------------------------------------------------------------
    def add_campaign(self, campaign: Campaign, salt: str) -> bool:
        """Store ``campaign``; return False if the same definition already exists.

        Raises
        ------
        ValidationError
            A different campaign with this id exists.
        """
        try:
            with self._begin() as conn:
                row = conn.execute(
                    sa.select(campaigns.c.spec).where(
                        campaigns.c.campaign_id == campaign.campaign_id
                    )
                ).first()
                if row is not None:
                    if json.loads(row.spec) != campaign.to_dict():
                        raise ValidationError(
                            f"campaign_id={campaign.campaign_id!r} already exists with a different "
                            "definition; campaigns are immutable, use a new id"
                        )
                    return False
                conn.execute(
                    campaigns.insert().values(
                        campaign_id=campaign.campaign_id,
                        spec=campaign.to_json(),
                        salt=salt,
                        epoch=1,
                        paused=False,
                        created_at=time.time(),
                    )
                )
                return True
        except (OperationalError, DBAPIError) as exc:
            raise self._unavailable(exc) from exc

    def get_campaign(self, campaign_id: str) -> dict[str, Any]:
        """Return ``{"campaign", "salt", "epoch", "paused"}`` of a stored campaign."""
        try:
            with self._begin() as conn:
                row = conn.execute(
                    sa.select(campaigns).where(campaigns.c.campaign_id == campaign_id)
                ).first()
        except (OperationalError, DBAPIError) as exc:
            raise self._unavailable(exc) from exc
        if row is None:
            raise NotFoundError(f"campaign_id={campaign_id!r}: no such campaign in {self!r}")
        return {
            "campaign": Campaign.from_dict(json.loads(row.spec)),
            "salt": row.salt,
            "epoch": int(row.epoch),
            "paused": bool(row.paused),
        }

    def campaign_ids(self) -> list[str]:
        try:
            with self._begin() as conn:
                return list(conn.execute(sa.select(campaigns.c.campaign_id)).scalars())
        except (OperationalError, DBAPIError) as exc:
            raise self._unavailable(exc) from exc

    def update_campaign(self, campaign_id: str, **values: Any) -> None:
        """Set ``epoch`` and/or ``paused`` of a campaign."""
        try:
            with self._begin() as conn:
                conn.execute(
                    campaigns.update()
                    .where(campaigns.c.campaign_id == campaign_id)
                    .values(**values)
                )
        except (OperationalError, DBAPIError) as exc:
            raise self._unavailable(exc) from exc

    def delete_campaign(self, campaign_id: str) -> None:
        """Remove a campaign and its issuances (tests and demos only)."""
        try:
            with self._begin() as conn:
                conn.execute(issuances.delete().where(issuances.c.campaign_id == campaign_id))
                conn.execute(campaigns.delete().where(campaigns.c.campaign_id == campaign_id))
        except (OperationalError, DBAPIError) as exc:
            raise self._unavailable(exc) from exc

    # -- issuances --------------------------------------------------------------------
    def record(self, campaign_id: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert issued coupons, ignoring ones already recorded; return rows offered.

        Each row has the keys of :data:`ROW_FIELDS`.
        """
        return self.record_tuples(campaign_id, [tuple(r[k] for k in ROW_FIELDS) for r in rows])

    def record_tuples(self, campaign_id: str, rows: Sequence[tuple[Any, ...]]) -> int:
        """:meth:`record` for rows given as tuples in :data:`ROW_FIELDS` order (the issuer's form)."""
        now = time.time()
        payload = [(campaign_id, *r, now) for r in rows]
        if not payload:
            return 0
        try:
            with self._writer(), self._begin() as conn:
                # one prepared INSERT .. ON CONFLICT DO NOTHING run by the driver's
                # executemany: this is on the issuing path, so no per-row SQL compilation
                conn.exec_driver_sql(self._record_sql(), payload)
        except (OperationalError, DBAPIError) as exc:
            raise self._unavailable(exc) from exc
        return len(payload)

    def _record_sql(self) -> str:
        if self._insert_sql is None:
            cols = ("campaign_id", *ROW_FIELDS, "recorded_at")
            mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
            self._insert_sql = (
                f"INSERT INTO {issuances.name} ({', '.join(cols)}) "
                f"VALUES ({', '.join([mark] * len(cols))}) "
                "ON CONFLICT (campaign_id, user_id, seq) DO NOTHING"
            )
        return self._insert_sql

    def count(self, campaign_id: str) -> int:
        """Coupons recorded for a campaign."""
        return int(
            self._scalar(sa.select(sa.func.count()).where(issuances.c.campaign_id == campaign_id))
        )

    def _scalar(self, stmt):
        try:
            with self._begin() as conn:
                return conn.execute(stmt).scalar()
        except (OperationalError, DBAPIError) as exc:
            raise self._unavailable(exc) from exc

    def counts_by(self, campaign_id: str, column: str) -> dict[int, int]:
        """Recorded coupons per ``shard`` or ``home_shard``."""
        col = issuances.c[column]
        try:
            with self._begin() as conn:
                rows = conn.execute(
                    sa.select(col, sa.func.count())
                    .where(issuances.c.campaign_id == campaign_id)
                    .group_by(col)
                ).all()
        except (OperationalError, DBAPIError) as exc:
            raise self._unavailable(exc) from exc
        return {int(k): int(v) for k, v in rows}

    def claims(self, campaign_id: str) -> dict[str, int]:
        """Coupons held per user (``max(seq)``: seqs are dense from 1)."""
        try:
            with self._begin() as conn:
                rows = conn.execute(
                    sa.select(issuances.c.user_id, sa.func.count())
                    .where(issuances.c.campaign_id == campaign_id)
                    .group_by(issuances.c.user_id)
                ).all()
        except (OperationalError, DBAPIError) as exc:
            raise self._unavailable(exc) from exc
        return {u: int(n) for u, n in rows}

    def rows(self, campaign_id: str):
        """All recorded coupons of a campaign as a pandas DataFrame."""
        import pandas as pd

        try:
            with self._begin() as conn:
                res = conn.execute(
                    sa.select(issuances)
                    .where(issuances.c.campaign_id == campaign_id)
                    .order_by(issuances.c.id)
                )
                return pd.DataFrame(res.all(), columns=list(res.keys()))
        except (OperationalError, DBAPIError) as exc:
            raise self._unavailable(exc) from exc

    def dispose(self) -> None:
        self.engine.dispose()
        with self._thread_lock:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
