"""Saved audiences: a DuckDB table of definitions and roaring bitmaps.

Each saved audience is one row: name, definition (the expression text), size, build
time, ``as_of`` and the members as a BLOB in ClickHouse's ``groupBitmap`` state layout
(see :func:`mktlab.audience._bitmaps.to_clickhouse_state`), so the same bytes can be
loaded into ClickHouse with ``CAST(... AS AggregateFunction(groupBitmap, UInt32))``.

Every write is one DuckDB transaction (all or nothing), and the connection is opened
only for the duration of a call, so several processes can take turns on the file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
from pyroaring import BitMap

from mktlab.audience._bitmaps import from_clickhouse_state, to_clickhouse_state
from mktlab.audience.lang import UnknownNameError, suggest
from mktlab.config import settings
from mktlab.errors import ServiceUnavailableError, ValidationError

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_DDL = """
CREATE TABLE IF NOT EXISTS audiences (
    name VARCHAR PRIMARY KEY,
    definition VARCHAR NOT NULL,
    size BIGINT NOT NULL,
    built_at TIMESTAMP NOT NULL,
    build_seconds DOUBLE NOT NULL,
    as_of DATE,
    description VARCHAR,
    state BLOB NOT NULL
)
"""


def default_catalog_path() -> Path:
    """``<processed_dir>/audiences.duckdb``."""
    return settings().processed_dir / "audiences.duckdb"


def check_name(name: str) -> str:
    """Validate a saved-audience name (letters, digits, ``_ . -``; not starting with a digit)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValidationError(
            f"audience name {name!r}: use letters, digits, '_', '.', '-' and start with a letter or '_'"
        )
    return name


@dataclass(frozen=True)
class SavedAudience:
    """A row of the catalog."""

    name: str
    definition: str
    size: int
    built_at: dt.datetime
    build_seconds: float
    as_of: dt.date | None
    description: str | None
    bitmap: BitMap


class AudienceCatalog:
    """Saved audiences in a DuckDB file.

    Parameters
    ----------
    path : str or Path, optional
        The DuckDB file; default ``settings().processed_dir / "audiences.duckdb"``.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_catalog_path()

    def __repr__(self) -> str:
        return f"AudienceCatalog({str(self.path)!r})"

    @contextlib.contextmanager
    def _connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        missing = not self.path.exists()
        if read_only and missing:
            con = duckdb.connect(":memory:")  # nothing saved yet: an empty table, no file
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.Error as exc:
                raise ServiceUnavailableError(f"audience catalog {self.path}: {exc}") from exc
        try:
            if not read_only or missing:
                con.execute(_DDL)
            yield con
        finally:
            con.close()

    def save(
        self,
        name: str,
        definition: str,
        bitmap: BitMap,
        *,
        build_seconds: float = 0.0,
        as_of: dt.date | None = None,
        description: str | None = None,
    ) -> SavedAudience:
        """Insert or replace ``name`` in one transaction and return the stored row."""
        check_name(name)
        row = SavedAudience(
            name=name,
            definition=definition,
            size=len(bitmap),
            built_at=dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0),
            build_seconds=float(build_seconds),
            as_of=as_of,
            description=description,
            bitmap=bitmap,
        )
        state = to_clickhouse_state(bitmap)
        with self._connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute("DELETE FROM audiences WHERE name = ?", [name])
                con.execute(
                    "INSERT INTO audiences VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        name,
                        definition,
                        row.size,
                        row.built_at,
                        row.build_seconds,
                        as_of,
                        description,
                        state,
                    ],
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return row

    def names(self) -> list[str]:
        """Saved audience names, sorted."""
        with self._connect(read_only=True) as con:
            return [
                r[0] for r in con.execute("SELECT name FROM audiences ORDER BY name").fetchall()
            ]

    def __contains__(self, name: str) -> bool:
        return name in self.names()

    def get(self, name: str, *, text: str = "", span: tuple[int, int] = (0, 0)) -> SavedAudience:
        """Return the saved audience ``name`` (raises :class:`UnknownNameError`)."""
        with self._connect(read_only=True) as con:
            row = con.execute(
                "SELECT name, definition, size, built_at, build_seconds, as_of, description, state "
                "FROM audiences WHERE name = ?",
                [name],
            ).fetchone()
        if row is None:
            raise UnknownNameError(
                f"no saved audience @{name}{suggest(name, self.names())} (catalog {self.path})",
                text,
                *span,
            )
        bitmap = from_clickhouse_state(row[7])
        return SavedAudience(*row[:7], bitmap=bitmap)

    def list(self) -> pd.DataFrame:
        """A table of saved audiences (without the bitmaps)."""
        with self._connect(read_only=True) as con:
            return con.execute(
                "SELECT name, definition, size, built_at, build_seconds, as_of, description "
                "FROM audiences ORDER BY name"
            ).df()

    def delete(self, name: str) -> None:
        """Remove ``name``; raises if it does not exist."""
        if name not in self.names():
            raise UnknownNameError(f"no saved audience @{name}{suggest(name, self.names())}")
        with self._connect() as con:
            con.execute("DELETE FROM audiences WHERE name = ?", [name])

    def bitmaps(self, names: list[str] | None = None) -> dict[str, BitMap]:
        """Name -> bitmap for ``names`` (default: all saved audiences)."""
        names = self.names() if names is None else list(names)
        return {n: self.get(n).bitmap for n in names}
