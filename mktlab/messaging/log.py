"""The delivery log: every message's outcome, every channel attempt, the local inbox, receipts.

SQLAlchemy 2 Core; SQLite by default (``settings().default_delivery_url``: WAL, a 60 s
busy timeout, ``BEGIN IMMEDIATE`` for writers) and PostgreSQL by URL, same code. It is
the gateway's source of truth for three guarantees that must hold across processes and
restarts:

* dedupe: ``msg_deliveries.key`` is the primary key, read and written in one writer
  transaction;
* exactly-once local delivery: local providers write ``msg_inbox`` in that same
  transaction, so a delivery and its record commit together or not at all;
* frequency caps: counted from sent rows under the same writer lock (see
  :meth:`_Tx.lock_users`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.pool import StaticPool

from mktlab.config import settings
from mktlab.errors import NotFoundError, ServiceUnavailableError, ValidationError
from mktlab.messaging.model import RECEIPT_STATUSES, check_text, check_ts

metadata = sa.MetaData()

deliveries = sa.Table(
    "msg_deliveries",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("user_id", sa.String(128), nullable=False),
    sa.Column("campaign_id", sa.String(64), nullable=True),
    sa.Column("template", sa.String(128), nullable=False),
    sa.Column("channels", sa.Text, nullable=False),  # JSON list, priority order
    sa.Column("tz", sa.String(64), nullable=True),
    sa.Column("ts", sa.Float, nullable=False),  # event time of the message
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("channel", sa.String(16), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("attempts", sa.Text, nullable=False),  # JSON [[channel, outcome], ...]
    sa.Column("not_before", sa.Float, nullable=True),
    # event time it went out; caps count these (NULL unless sent)
    sa.Column("sent_ts", sa.Float, nullable=True),
    sa.Column("provider_id", sa.String(255), nullable=True),
    # rendered text kept while deferred, so flush_due sends what was decided
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("body", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_msg_deliveries_user_sent", "user_id", "sent_ts"),
    sa.Index("ix_msg_deliveries_due", "status", "not_before"),
    sa.Index("ix_msg_deliveries_campaign", "campaign_id"),
)

attempts = sa.Table(
    "msg_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("provider_id", sa.String(255), nullable=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("at", sa.Float, nullable=False),  # wall clock
    sa.Index("ix_msg_attempts_key", "key"),
)

inbox = sa.Table(  # what the local providers delivered: one row per key, ever
    "msg_inbox",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("user_id", sa.String(128), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("template", sa.String(128), nullable=False),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("campaign_id", sa.String(64), nullable=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("provider_id", sa.String(255), nullable=False),
    sa.Column("delivered_at", sa.Float, nullable=False),
    sa.Index("ix_msg_inbox_user", "user_id"),
)

receipts = sa.Table(
    "msg_receipts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("recorded_at", sa.Float, nullable=False),
    sa.Index("ix_msg_receipts_key", "key"),
)

DELIVERY_COLUMNS = ("key", "user_id", "campaign_id", "template", "status", "channel", "reason",
                    "ts", "sent_ts", "not_before", "provider_id", "attempts", "channels", "tz",
                    "created_at", "updated_at")  # fmt: skip
_FLOAT_COLUMNS = {"ts", "sent_ts", "not_before", "created_at", "updated_at", "at",
                  "delivered_at", "recorded_at"}  # fmt: skip
_CHUNK = 500  # bound parameters per IN (...) list
_LOCK_BUCKETS = 256  # PostgreSQL advisory locks per batch stay well under max_locks_per_transaction
_LOCK_BASE = int.from_bytes(hashlib.blake2b(b"mktlab:msg", digest_size=4).digest(), "big") << 16


def _normalise(url: str) -> str:
    # psycopg 3 is what we install; SQLAlchemy's bare "postgresql://" means psycopg2
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _chunks(seq: list, n: int = _CHUNK) -> Iterator[list]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def user_bucket(user_id: str) -> int:
    """The advisory-lock bucket of a user (stable across processes, unlike ``hash``)."""
    h = hashlib.blake2b(user_id.encode(), digest_size=4).digest()
    return int.from_bytes(h, "big") % _LOCK_BUCKETS


class _Tx:
    """One writer transaction of the gateway: reads under the lock, buffered writes.

    Rows are collected while the batch is decided and written by :meth:`flush` just
    before the commit, so the inbox rows of local providers, the delivery records and the
    attempts go in together (or, on any error, not at all).
    """

    def __init__(self, log: DeliveryLog, conn: sa.Connection):
        self.log = log
        self.conn = conn
        self.now = time.time()
        self.inbox_rows: list[dict] = []
        self.inserts: list[dict] = []
        self.updates: list[dict] = []
        self.attempt_rows: list[dict] = []

    # -- called by transactional providers ---------------------------------------------
    def add_inbox(self, delivery, provider_id: str) -> None:
        self.inbox_rows.append({
            "key": delivery.key, "user_id": delivery.user_id, "channel": delivery.channel,
            "template": delivery.template, "title": delivery.title, "body": delivery.body,
            "campaign_id": delivery.campaign_id, "ts": delivery.ts,
            "provider_id": provider_id, "delivered_at": self.now,
        })  # fmt: skip

    # -- reads under the writer lock ---------------------------------------------------
    def lock_users(self, users: Iterable[str]) -> None:
        """Serialise writers that touch the same users (caps and dedupe read-then-write).

        SQLite already holds the database's single write lock (``BEGIN IMMEDIATE``).
        PostgreSQL runs writers concurrently, so two workers could both count a cap as
        free; each batch takes transaction-scoped advisory locks on its users' buckets,
        in ascending order so that two batches never deadlock.
        """
        if self.log.dialect != "postgresql":
            return
        ks = sorted({_LOCK_BASE + user_bucket(u) for u in users})
        if ks:
            self.conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:ks AS bigint[])) AS k"),
                {"ks": ks},
            ).all()

    def _matching(self, column: str, values: list[str], select: str, where: str = "", **bind):
        """Rows of ``msg_deliveries`` whose ``column`` is in ``values``.

        PostgreSQL joins one array parameter: an ``IN (...)`` of 500 parameters becomes,
        under psycopg's prepared generic plan and the stale statistics of a table that
        just grew by a batch, a sequential scan comparing every row with every value,
        which made batches slower as the table grew (over 20 s per 10,000-message batch
        once the table held 30,000 rows).
        SQLite probes its index once per ``IN`` value, so it gets bounded chunks.
        """
        extra = f" AND {where}" if where else ""
        if self.log.dialect == "postgresql":
            sql = sa.text(
                f"SELECT {select} FROM msg_deliveries d "
                f"JOIN unnest(CAST(:vals AS text[])) AS v(val) ON d.{column} = v.val{extra}"
            )
            yield from self.conn.execute(sql, {"vals": values, **bind})
            return
        for part in _chunks(values):
            marks = ", ".join(f":v{i}" for i in range(len(part)))
            sql = sa.text(
                f"SELECT {select} FROM msg_deliveries d WHERE d.{column} IN ({marks}){extra}"
            )
            yield from self.conn.execute(sql, {**{f"v{i}": v for i, v in enumerate(part)}, **bind})

    def existing(self, keys: Iterable[str]) -> dict[str, Any]:
        """Stored rows (status, channel, reason, attempts, not_before) of ``keys`` that exist."""
        cols = "d.key, d.status, d.channel, d.reason, d.attempts, d.not_before"
        return {row.key: row for row in self._matching("key", sorted(set(keys)), cols)}

    def history(self, users: Iterable[str], lo: float, hi: float) -> dict[str, list]:
        """``{user: [(channel, sent_ts), ...]}`` of deliveries sent in ``(lo, hi]``."""
        out: dict[str, list] = {}
        rows = self._matching("user_id", sorted(set(users)), "d.user_id, d.channel, d.sent_ts",
                              "d.sent_ts > :lo AND d.sent_ts <= :hi", lo=lo, hi=hi)  # fmt: skip
        for u, ch, sent in rows:
            out.setdefault(u, []).append((ch, sent))
        return out

    def due(self, now: float, limit: int) -> list:
        """Deferred rows with ``not_before <= now``, oldest first, locked for this batch.

        ``SKIP LOCKED`` lets several workers flush at once on PostgreSQL without taking
        the same row twice (SQLite ignores it: its writers are serialised anyway).
        """
        c = deliveries.c
        stmt = (
            sa.select(deliveries)
            .where(c.status == "deferred", c.not_before <= now)
            .order_by(c.not_before, c.key)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(self.conn.execute(stmt))

    # -- buffered writes ---------------------------------------------------------------
    def flush(self) -> None:
        # prepared statements run by the driver's executemany over tuples: a 10,000-message
        # batch spent more time in SQLAlchemy's per-row parameter processing than in SQLite
        if self.inserts:
            self._many(deliveries, self.inserts)
        if self.updates:
            cols = [k for k in self.updates[0] if k != "b_key"]
            sql = self.log._sql(("update", *cols), lambda q, m: (
                f"UPDATE {q(deliveries.name)} SET {', '.join(f'{q(c)} = {m}' for c in cols)} "
                f"WHERE {q('key')} = {m}"))  # fmt: skip
            self.conn.exec_driver_sql(
                sql, [(*(r[c] for c in cols), r["b_key"]) for r in self.updates]
            )
        if self.inbox_rows:
            self._many(inbox, self.inbox_rows)
        if self.attempt_rows:
            self._many(attempts, self.attempt_rows)

    def _many(self, table: sa.Table, rows: list[dict]) -> None:
        cols = list(rows[0])
        sql = self.log._sql(("insert", table.name, *cols), lambda q, m: (
            f"INSERT INTO {q(table.name)} ({', '.join(map(q, cols))}) "
            f"VALUES ({', '.join([m] * len(cols))})"))  # fmt: skip
        self.conn.exec_driver_sql(sql, [tuple(r[c] for c in cols) for r in rows])


class DeliveryLog:
    """Deliveries, attempts, local inbox and receipts in a SQL database.

    Parameters
    ----------
    url : str, optional
        SQLAlchemy URL; defaults to ``settings().default_delivery_url`` (SQLite under
        ``data/processed/`` unless ``MKTLAB_DELIVERY_URL`` is set). ``postgresql://``
        URLs use psycopg 3.

    Examples
    --------
    >>> log = DeliveryLog("sqlite:///deliveries.db")
    >>> log.deliveries(campaign_id="spring")      # a pandas DataFrame, one row per key
    """

    def __init__(self, url: str | None = None):
        self.url = _normalise(url or settings().default_delivery_url)
        kwargs: dict[str, Any] = {}
        sqlite = self.url.startswith("sqlite")
        if sqlite:
            path = self.url.split("///", 1)[-1] if "///" in self.url else ""
            if path in ("", ":memory:"):
                # one shared connection, or each connection would see its own empty database
                kwargs["poolclass"] = StaticPool
                kwargs["connect_args"] = {"check_same_thread": False}
            else:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                kwargs["connect_args"] = {"timeout": 60}
        else:
            kwargs["pool_pre_ping"] = True
            kwargs["connect_args"] = {"connect_timeout": 5}
        self.engine = sa.create_engine(self.url, **kwargs)
        self.dialect = self.engine.dialect.name
        if sqlite:
            self._sqlite_events()
        self._ready = False
        self._sql_cache: dict[tuple, str] = {}

    def _sql(self, key: tuple, build) -> str:
        """Driver-level SQL built once per statement shape (quoted names, the driver's marks)."""
        sql = self._sql_cache.get(key)
        if sql is None:
            quote = self.engine.dialect.identifier_preparer.quote
            mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
            sql = self._sql_cache[key] = build(quote, mark)
        return sql

    def _sqlite_events(self) -> None:
        @sa.event.listens_for(self.engine, "connect")
        def _pragmas(dbapi_conn, _record):
            # take transaction control from pysqlite, so that writers can BEGIN IMMEDIATE
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @sa.event.listens_for(self.engine, "begin")
        def _begin(conn):
            # a writer takes the write lock before it reads the keys and caps it decides
            # on: a deferred BEGIN would let two processes read the same "free" state
            mode = conn.get_execution_options().get("mktlab_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

    def __repr__(self) -> str:
        return f"DeliveryLog({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- plumbing ----------------------------------------------------------------------
    def _unavailable(self, exc: Exception) -> ServiceUnavailableError:
        return ServiceUnavailableError(f"delivery log {self!r} is unreachable: {exc}")

    def ensure_schema(self) -> None:
        """Create the tables if they do not exist."""
        if self._ready:
            return
        for attempt in range(5):
            try:
                metadata.create_all(self.engine)
                break
            except (OperationalError, DBAPIError) as exc:
                # another process created them between our check and CREATE
                if ("already exists" in str(exc) or "duplicate key" in str(exc)) and attempt < 4:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise self._unavailable(exc) from exc
        self._ready = True

    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        self.ensure_schema()
        try:
            with self.engine.connect() as conn:
                yield conn
        except (OperationalError, DBAPIError) as exc:
            raise self._unavailable(exc) from exc

    def _write_conn(self) -> sa.Connection:
        return self.engine.connect().execution_options(mktlab_begin="IMMEDIATE")

    @contextlib.contextmanager
    def writer(self) -> Iterator[_Tx]:
        """A writer transaction for the gateway; buffered rows are written at the end.

        :class:`sqlalchemy.exc.IntegrityError` propagates (the gateway retries the batch:
        a concurrent writer recorded one of its keys first); other database errors become
        :class:`~mktlab.errors.ServiceUnavailableError`. Either way nothing is written.
        """
        self.ensure_schema()
        try:
            with self._write_conn() as conn, conn.begin():
                tx = _Tx(self, conn)
                yield tx
                tx.flush()
        except IntegrityError:
            raise
        except (OperationalError, DBAPIError) as exc:
            raise self._unavailable(exc) from exc

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except (OperationalError, DBAPIError, OSError):
            return False

    def dispose(self) -> None:
        """Close pooled connections (the log stays usable; it reconnects on demand)."""
        self.engine.dispose()

    # -- what a notebook reads ---------------------------------------------------------
    def _frame(self, stmt, columns: Iterable[str] | None = None):
        import pandas as pd

        with self._read() as conn:
            res = conn.execute(stmt)
            cols = list(columns) if columns is not None else list(res.keys())
            df = pd.DataFrame(res.all(), columns=cols)
        # times stay float (NaN when unset) even when a column is all NULL or the frame empty
        for col in cols:
            if col in _FLOAT_COLUMNS:
                df[col] = df[col].astype("float64")
        return df

    def deliveries(self, *, campaign_id: str | None = None, user_id: str | None = None):
        """One row per message key: status, channel, reason, times, attempts (JSON).

        Parameters
        ----------
        campaign_id, user_id : str, optional
            Keep only this campaign's / user's messages.

        Returns
        -------
        pandas.DataFrame
            Columns :data:`DELIVERY_COLUMNS`, ordered by ``created_at`` then ``key``.
        """
        c = deliveries.c
        stmt = sa.select(*(c[k] for k in DELIVERY_COLUMNS))
        if campaign_id is not None:
            stmt = stmt.where(c.campaign_id == campaign_id)
        if user_id is not None:
            stmt = stmt.where(c.user_id == user_id)
        return self._frame(stmt.order_by(c.created_at, c.key), DELIVERY_COLUMNS)

    def attempts(self):
        """Every channel tried for every message: ``key, seq, channel, outcome, detail, ...``."""
        return self._frame(sa.select(attempts).order_by(attempts.c.id))

    def inbox(self, *, user_id: str | None = None):
        """What the local providers delivered (one row per key)."""
        stmt = sa.select(inbox)
        if user_id is not None:
            stmt = stmt.where(inbox.c.user_id == user_id)
        return self._frame(stmt.order_by(inbox.c.delivered_at, inbox.c.key))

    def receipts(self):
        """Delivery receipts: ``id, key, status, ts, recorded_at``."""
        return self._frame(sa.select(receipts).order_by(receipts.c.id))

    def record_receipt(self, key: str, status: str, ts: float) -> None:
        """Store a provider's receipt for message ``key``.

        Parameters
        ----------
        key : str
        status : str
            One of ``delivered``, ``opened``, ``clicked``, ``bounced``, ``failed``.
        ts : float
            When it happened (epoch seconds).

        Raises
        ------
        ValidationError
            Unknown status or a non-finite ``ts``.
        NotFoundError
            No message with this key was ever sent through the gateway.
        """
        check_text(key, "receipt.key")
        if status not in RECEIPT_STATUSES:
            raise ValidationError(
                f"receipt.status: expected one of {RECEIPT_STATUSES}, got {status!r}"
            )
        ts = check_ts(ts, "receipt.ts")
        self.ensure_schema()
        try:
            with self._write_conn() as conn, conn.begin():
                found = conn.execute(
                    sa.select(deliveries.c.key).where(deliveries.c.key == key)
                ).first()
                if found is None:
                    raise NotFoundError(f"receipt.key: no delivery with key {key!r} in {self!r}")
                conn.execute(
                    receipts.insert().values(key=key, status=status, ts=ts, recorded_at=time.time())
                )
        except (OperationalError, DBAPIError) as exc:
            raise self._unavailable(exc) from exc

    def counts(self) -> dict:
        """Message counts for ``/metrics``.

        Returns
        -------
        dict
            ``{"total": n, "by_status": {status: n}, "by_channel": {channel: n sent},
            "by_status_channel": {status: {channel or "none": n}}, "receipts": {status: n}}``.
        """
        c = deliveries.c
        with self._read() as conn:
            rows = conn.execute(
                sa.select(c.status, c.channel, sa.func.count()).group_by(c.status, c.channel)
            ).all()
            rec = conn.execute(
                sa.select(receipts.c.status, sa.func.count()).group_by(receipts.c.status)
            ).all()
        by_status: dict[str, int] = {}
        by_channel: dict[str, int] = {}
        nested: dict[str, dict[str, int]] = {}
        for status, channel, n in rows:
            by_status[status] = by_status.get(status, 0) + int(n)
            nested.setdefault(status, {})[channel or "none"] = int(n)
            if status == "sent" and channel:
                by_channel[channel] = by_channel.get(channel, 0) + int(n)
        return {
            "total": sum(by_status.values()),
            "by_status": by_status,
            "by_channel": by_channel,
            "by_status_channel": nested,
            "receipts": {s: int(n) for s, n in rec},
        }


def dumps_attempts(att) -> str:
    return json.dumps([list(a) for a in att])


def loads_attempts(text: str | None) -> tuple[tuple[str, str], ...]:
    return tuple((a[0], a[1]) for a in json.loads(text or "[]"))


def finite_or_none(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)
