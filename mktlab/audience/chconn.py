"""Two ways to talk to ClickHouse with one interface: chdb in process, a server over HTTP.

:class:`ChdbRunner` runs the SQL on chdb (ClickHouse compiled into the Python process; no
server). chdb allows one open connection per process, so every runner shares the one
:func:`chdb_connection` returns. :class:`ServerRunner` sends the same SQL to a ClickHouse
server through clickhouse-connect (``MKTLAB_CLICKHOUSE_URL``). Both move data in
ClickHouse's own formats: Arrow streams in, ``RowBinary`` out (so a ``groupBitmap`` state
arrives as the exact bytes ClickHouse serialized).
"""

from __future__ import annotations

import io
import threading
from typing import Any

import pyarrow as pa

from mktlab.config import clickhouse_url
from mktlab.errors import ConfigError, DataError, ServiceUnavailableError

_CHDB: Any = None
_CHDB_LOCK = threading.RLock()


def chdb_connection():
    """The process's one chdb connection (opened on first use, in memory)."""
    global _CHDB
    with _CHDB_LOCK:
        if _CHDB is None:
            try:
                import chdb
            except ImportError as exc:  # pragma: no cover - the scale extra is missing
                raise ConfigError(
                    "engine='chdb' needs the chdb package: pip install -e '.[scale]'"
                ) from exc
            _CHDB = chdb.connect(":memory:")
        return _CHDB


def _short(sql: str, limit: int = 300) -> str:
    return sql if len(sql) <= limit else sql[:limit] + f"... ({len(sql):,} characters)"


class ChdbRunner:
    """Runs SQL on the in-process chdb engine."""

    name = "chdb"
    table_engine = "Memory"  # bitmaps stay deserialized in RAM: no decode per query

    def __init__(self):
        self.con = chdb_connection()

    def _query(self, sql: str, fmt: str, params: dict | None = None):
        with _CHDB_LOCK:  # one connection: one statement at a time
            try:
                return self.con.query(sql, fmt, params=params)
            except Exception as exc:
                raise DataError(f"chdb: {exc}\n  in: {_short(sql)}") from exc

    def execute(self, sql: str, params: dict | None = None) -> None:
        self._query(sql, "CSV", params)

    def arrow(self, sql: str, params: dict | None = None) -> pa.Table:
        return self._query(sql, "Arrowtable", params)

    def raw(self, sql: str, params: dict | None = None) -> bytes:
        """The result in ``RowBinary`` (one state column: the state's own bytes)."""
        return bytes(self._query(sql, "RowBinary", params).bytes())

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, data.schema) as writer:
            writer.write_table(data)
        self.insert_bytes(table, list(data.column_names), sink.getvalue(), "ArrowStream")

    def insert_bytes(self, table: str, columns: list[str], data: bytes, fmt: str) -> None:
        cols = ", ".join(f"`{c}`" for c in columns)
        with _CHDB_LOCK:
            try:
                inserter = self.con.send_insert(f"INSERT INTO {table} ({cols})", fmt)
                inserter.append(data)
                inserter.finish()
            except Exception as exc:
                raise DataError(f"chdb: insert into {table}: {exc}") from exc


class ServerRunner:
    """Runs SQL on a ClickHouse server through clickhouse-connect.

    Parameters
    ----------
    url : str
        ``http(s)://user:password@host:port/database`` (clickhouse-connect's DSN).
    """

    name = "clickhouse"
    table_engine = "MergeTree ORDER BY id SETTINGS index_granularity = 1"

    def __init__(self, url: str):
        if not url or "://" not in url:
            raise ConfigError(
                f"ClickHouse URL {url!r}: expected http(s)://user:password@host:8123/database "
                "(set MKTLAB_CLICKHOUSE_URL)"
            )
        try:
            import clickhouse_connect
        except ImportError as exc:  # pragma: no cover - the scale extra is missing
            raise ConfigError(
                "engine='clickhouse' needs clickhouse-connect: pip install -e '.[scale]'"
            ) from exc
        self.url = url
        try:
            self.client = clickhouse_connect.get_client(dsn=url, connect_timeout=5)
            self.client.command("SELECT 1")
        except Exception as exc:
            raise ServiceUnavailableError(
                f"ClickHouse at {_redact(url)} does not answer ({exc}); start the server or "
                "fix MKTLAB_CLICKHOUSE_URL, or use engine='chdb' to run in process"
            ) from exc

    def _call(self, sql: str, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except Exception as exc:
            raise DataError(f"ClickHouse server: {exc}\n  in: {_short(sql)}") from exc

    def execute(self, sql: str, params: dict | None = None) -> None:
        self._call(sql, self.client.command, sql, parameters=params)

    def arrow(self, sql: str, params: dict | None = None) -> pa.Table:
        return self._call(sql, self.client.query_arrow, sql, parameters=params)

    def raw(self, sql: str, params: dict | None = None) -> bytes:
        return self._call(sql, self.client.raw_query, sql, parameters=params, fmt="RowBinary")

    def insert_arrow(self, table: str, data: pa.Table) -> None:
        self._call(f"INSERT INTO {table}", self.client.insert_arrow, table, data)

    def insert_bytes(self, table: str, columns: list[str], data: bytes, fmt: str) -> None:
        self._call(
            f"INSERT INTO {table}",
            self.client.raw_insert,
            table,
            columns,
            insert_block=data,
            fmt=fmt,
        )


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    head, sep, rest = url.partition("://")
    if "@" in rest:
        cred, _, host = rest.rpartition("@")
        user = cred.split(":", 1)[0]
        return f"{head}{sep}{user}:***@{host}"
    return url


def runner_for(engine: str, url: str | None = None):
    """A runner for ``engine`` ``"chdb"`` or ``"clickhouse"`` (``url`` or the configured one)."""
    if engine == "chdb":
        return ChdbRunner()
    if engine == "clickhouse":
        if url is None:
            url = clickhouse_url()
        if not url:
            raise ConfigError(
                "engine='clickhouse' needs a server: set MKTLAB_CLICKHOUSE_URL "
                "(e.g. http://default:@127.0.0.1:8123/default) or pass clickhouse_url=; "
                "engine='chdb' runs the same SQL in process"
            )
        return ServerRunner(url)
    raise ConfigError(f"no ClickHouse runner for engine {engine!r}")
