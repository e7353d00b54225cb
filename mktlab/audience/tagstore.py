"""AudienceStore: tag bitmaps over uint32 uids, and evaluation of audience expressions.

Build it from a profile table (one row per ``uid``; every other column becomes a tag) and
optionally an event table (``uid, ts, event``)::

    store = AudienceStore.build(profiles, events, as_of="2026-06-30")
    aud = store.query('active_7d & ~purchased_30d & (tier_level >= 4 | city in ("SH", "BJ"))')
    aud.size, aud.sample(5, identity_map=imap)

Semantics (also what :func:`mktlab.audience.sql.to_sql` generates):

* A predicate on a missing (null / NaN) value is false, so ``city != "SH"`` excludes
  users without a city, while ``~(city == "SH")`` includes them.
* ``~x`` is relative to the universe: every uid of the profile table or the event table.
* ``did(e, Nd)`` / ``count(e, Nd)`` look at days ``as_of - N + 1 .. as_of``; ``e`` may be
  ``any``. Bare names ending in ``_<N>d`` are window tags: ``active_7d`` = ``did(any, 7d)``,
  ``<event>_30d`` = ``did(<event>, 30d)``, and aliases such as ``purchased_30d`` =
  ``did(order, 30d)`` (see ``event_aliases``). A profile column of the same name wins.
* ``@name`` evaluates the saved audience's definition against this store.

The store is a facade over three jobs: :mod:`~mktlab.audience.builder` (tables to
bitmaps), :mod:`~mktlab.audience.persist` (one DuckDB file) and
:mod:`~mktlab.audience.evaluate` (expressions to bitmap algebra).
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from pyroaring import BitMap

from mktlab.audience._dense import DenseEngine, ProgramAlgebra, bitmap_from_words, check_threads
from mktlab.audience.builder import StoreParts, build_parts
from mktlab.audience.catalog import AudienceCatalog, check_name
from mktlab.audience.evaluate import Evaluator
from mktlab.audience.events import ANY, DEFAULT_EVENT_ALIASES, EventIndex, from_day, to_day
from mktlab.audience.lang import AudienceTypeError, Node, UnknownNameError, parse, suggest
from mktlab.audience.persist import read_parts, write_store
from mktlab.audience.results import Audience, overlap
from mktlab.audience.tags import BoolTag, CategoricalTag, RoaringAlgebra, bm
from mktlab.errors import ValidationError

__all__ = ["DEFAULT_EVENT_ALIASES", "AudienceStore"]


class AudienceStore:
    """Tag bitmaps plus event windows over uint32 uids.

    Create with :meth:`build` (from tables) or :meth:`read` (from a file written by
    :meth:`write`); then :meth:`query`, :meth:`size`, :meth:`save`, :meth:`overlap`.

    Attributes
    ----------
    universe : BitMap
        Every known uid (profile rows and event rows); ``~x`` is ``universe - x``.
    tags : dict
        Tag name -> :class:`CategoricalTag`, :class:`NumericTag` or :class:`BoolTag`.
    events : EventIndex or None
        Event windows, if an event table was given.
    as_of : datetime.date or None
        The end day of every window.
    engine : {"roaring", "dense"}
        ``dense`` (large, densely numbered universes) keeps bitsets and evaluates each
        expression as one fused pass; ``roaring`` evaluates with pyroaring operations.
        Both give identical results.
    """

    def __init__(
        self,
        universe,
        tags: dict,
        events: EventIndex | None = None,
        *,
        as_of: dt.date | str | None = None,
        event_aliases: dict[str, str] | None = None,
        catalog: AudienceCatalog | None = None,
        skipped: dict[str, str] | None = None,
        dense: DenseEngine | None = None,
        backend: Any = None,
    ):
        self._universe = universe
        self.tags = tags
        self.events = events
        self.event_aliases = dict(DEFAULT_EVENT_ALIASES if event_aliases is None else event_aliases)
        self.catalog = catalog if catalog is not None else AudienceCatalog()
        self.skipped = dict(skipped or {})
        self.dropped_rows: dict[str, int] = {}  # filled by builders that drop input rows
        self._dense = dense
        self._backend = backend  # ClickHouseBackend: bitmaps and queries in ClickHouse
        self.derived: dict[tuple, Any] = {}  # count comparisons, memoised by the evaluator
        self._as_of_day: int | None = None
        if as_of is not None:
            if events is None:
                raise ValidationError("as_of: given but there is no event table")
            self._as_of_day = to_day(as_of)
            events.window(1, self._as_of_day)  # validates as_of lies inside the data
        elif events is not None:
            self._as_of_day = events.last_day

    @classmethod
    def build(
        cls,
        profiles: Any = None,
        events: Any = None,
        *,
        uid: str = "uid",
        as_of: Any = None,
        data_range: tuple[Any, Any] | None = None,
        kinds: dict[str, str] | None = None,
        exclude: tuple[str, ...] | list[str] = (),
        max_values: int = 10_000,
        event_aliases: dict[str, str] | None = None,
        catalog: AudienceCatalog | str | Path | None = None,
        engine: str = "auto",
        con: duckdb.DuckDBPyConnection | None = None,
        progress: bool = False,
        threads: int | None = None,
        clickhouse_url: str | None = None,
        database: str | None = None,
    ) -> AudienceStore:
        """Build a store from a profile table and/or an event table.

        Parameters
        ----------
        profiles : DataFrame, pyarrow.Table, Parquet path or DuckDB table name, optional
            One row per user: ``uid`` plus tag columns. Strings and dictionary
            (categorical) columns become categorical tags, booleans flags, numbers, dates
            and timestamps numeric tags (bit-sliced indexes).
        events : same kinds, optional
            Columns ``uid``, ``ts`` (timestamp or date) and ``event``; other columns are ignored.
        uid : str
            Name of the uid column in both tables (uint32 values).
        as_of : date or str, optional
            End day of every window; default the last event day.
        data_range : (start, end), optional
            Days the event table covers (default: its first and last event day).
        kinds : dict, optional
            Force a column's kind: ``"categorical"``, ``"numeric"`` or ``"bool"``.
        exclude : list of str
            Profile columns to leave out (e.g. a raw ``user_id``).
        max_values : int
            Refuse categorical columns with more distinct values than this.
        event_aliases : dict, optional
            Window-tag prefixes -> event (default ``active``->any, ``purchased``->order, ...).
        catalog : AudienceCatalog or path, optional
            Where saved audiences live; default ``settings().processed_dir/audiences.duckdb``.
        engine : {"auto", "local", "roaring", "dense", "chdb", "clickhouse"}
            Local engines (in this process, pyroaring or bitsets): ``auto`` (= ``local``)
            picks ``dense`` for universes of at least 2**20 mostly-used uids. ``chdb``
            builds the bitmaps as ClickHouse ``groupBitmap`` states in process and
            compiles every expression to ClickHouse SQL (:mod:`mktlab.audience.clickhouse`);
            ``clickhouse`` does the same on a server (``clickhouse_url`` or
            ``MKTLAB_CLICKHOUSE_URL``). All give identical sizes and members.
        con : duckdb connection, optional
            Used when ``profiles``/``events`` name DuckDB tables.
        progress : bool
            Show a progress bar over columns.
        threads : int, optional
            Threads one dense-engine query runs on (default: the CPUs this process may
            use); see :attr:`threads`. Ignored by the roaring engine.
        clickhouse_url : str, optional
            ``engine="clickhouse"``: the server (default ``MKTLAB_CLICKHOUSE_URL``).
        database : str, optional
            ClickHouse engines: the database to build in (default a temporary one,
            dropped when the store is closed or collected).
        """
        if isinstance(catalog, str | Path):
            catalog = AudienceCatalog(catalog)
        if engine == "local":
            engine = "auto"
        if engine in ("chdb", "clickhouse"):
            from mktlab.audience.clickhouse_build import build_clickhouse_parts

            check_threads(threads)
            parts = build_clickhouse_parts(
                profiles, events, engine=engine, uid=uid, as_of=as_of, data_range=data_range,
                kinds=kinds, exclude=exclude, max_values=max_values,
                event_aliases=event_aliases, con=con, progress=progress,
                clickhouse_url=clickhouse_url, database=database,
            )  # fmt: skip
            return cls._from_parts(parts, catalog)
        parts = build_parts(
            profiles,
            events,
            uid=uid,
            as_of=as_of,
            data_range=data_range,
            kinds=kinds,
            exclude=exclude,
            max_values=max_values,
            event_aliases=event_aliases,
            engine=engine,
            con=con,
            progress=progress,
            threads=threads,
        )
        return cls._from_parts(parts, catalog)

    @classmethod
    def _from_parts(cls, p: StoreParts, catalog: AudienceCatalog | None) -> AudienceStore:
        return cls(
            p.universe,
            p.tags,
            p.events,
            as_of=p.as_of,
            event_aliases=p.event_aliases,
            catalog=catalog,
            skipped=p.skipped,
            dense=p.dense,
            backend=p.backend,
        )

    # ------------------------------------------------------------------ info
    @property
    def universe(self) -> BitMap:
        """Every known uid, as a roaring bitmap."""
        return bm(self._universe)

    @property
    def engine(self) -> str:
        if self._backend is not None:
            return self._backend.name
        return "roaring" if self._dense is None else "dense"

    @property
    def clickhouse(self):
        """The :class:`~mktlab.audience.clickhouse.ClickHouseBackend` (ClickHouse engines), else None."""
        return self._backend

    def sql(self, expr: str | Node) -> str:
        """The ClickHouse SQL the ``chdb`` / ``clickhouse`` engine runs for ``size(expr)``."""
        if self._backend is None:
            raise ValidationError(
                f"sql(): the {self.engine!r} engine does not run SQL; build with engine='chdb' "
                "or 'clickhouse' (DuckDB SQL over the tables: mktlab.audience.to_sql)"
            )
        alg, result = self._backend.compile(self, expr)
        return alg.query(result, "bitmapCardinality({})")

    def close(self) -> None:
        """Release the engine's resources (a ClickHouse engine's temporary database)."""
        if self._backend is not None:
            self._backend.close()

    @property
    def threads(self) -> int:
        """Threads a dense-engine query runs on (settable; always 1 for roaring).

        Results never depend on it. Universes under about a million uids per thread
        run on the calling thread whatever it says.
        """
        return 1 if self._dense is None else self._dense.threads

    @threads.setter
    def threads(self, value: int | None) -> None:
        check_threads(value)
        if self._dense is not None:
            self._dense.threads = value

    @property
    def as_of_day(self) -> int | None:
        """:attr:`as_of` as a day number (days since 1970-01-01), as windows count it."""
        return self._as_of_day

    @property
    def as_of(self) -> dt.date | None:
        return None if self._as_of_day is None else from_day(self._as_of_day)

    @property
    def data_range(self) -> tuple[dt.date, dt.date] | None:
        if self.events is None:
            return None
        return from_day(self.events.first_day), from_day(self.events.last_day)

    def __len__(self) -> int:
        return len(self._universe)

    def __repr__(self) -> str:
        ev = f", events={self.events.names}, as_of={self.as_of}" if self.events else ""
        return (
            f"AudienceStore(users={len(self):,}, tags={len(self.tags)}{ev}, engine={self.engine!r})"
        )

    def describe(self) -> pd.DataFrame:
        """One row per tag: kind, description, users with a value."""
        rows = [
            {"tag": n, "kind": t.kind, "detail": t.describe(), "users": len(t.present)}
            for n, t in self.tags.items()
        ]
        return pd.DataFrame(rows, columns=["tag", "kind", "detail", "users"])

    def nbytes(self) -> int:
        """Approximate memory held by the stored bitmaps (bitsets, or roaring serialized size)."""
        if self._backend is not None:
            return self._backend.nbytes()
        if self._dense is not None:
            return sum(r.nbytes for r in self._dense.rows)
        seen: dict[int, int] = {}
        for h in self._handles():
            seen.setdefault(id(h), len(h.serialize()))
        return sum(seen.values())

    def _handles(self):
        yield self._universe
        for t in self.tags.values():
            yield t.present
            if isinstance(t, BoolTag):
                yield t.true
            if isinstance(t, CategoricalTag):
                yield from t.values.values()
            if getattr(t, "bsi", None) is not None:
                yield from t.bsi.planes

    def values(self, tag: str) -> list[str]:
        """The known values of a categorical tag."""
        t = self.tag(tag)
        if not isinstance(t, CategoricalTag):
            raise AudienceTypeError(f"{tag!r} is {t.describe()}, not categorical")
        return list(t.order or t.values)

    def tag(self, name: str, text: str = "", span: tuple[int, int] = (0, 0)):
        """The tag called ``name``; :class:`UnknownNameError` (with suggestions) if none.

        ``text`` and ``span`` place the error in an expression being evaluated.
        """
        if name in self.tags:
            return self.tags[name]
        raise UnknownNameError(
            f"unknown tag {name!r}{suggest(name, self._known_names())}", text, *span
        )

    def _known_names(self) -> list[str]:
        names = list(self.tags)
        if self.events is not None:
            names += ["active_7d", "active_30d"] + [f"{e}_30d" for e in self.events.names]
            names += [
                f"{a}_30d"
                for a, e in self.event_aliases.items()
                if e == ANY or e in self.events.names
            ]
        return names

    # ------------------------------------------------------------------ evaluate
    def _run(self, expr: str | Node, *, materialize: bool, stack: tuple[str, ...] = ()):
        text = expr if isinstance(expr, str) else ""
        node = parse(expr) if isinstance(expr, str) else expr
        if self._backend is not None:
            alg, result = self._backend.compile(self, expr, stack)
            return self._backend.run(alg, result, materialize)
        if self._dense is None:
            alg = RoaringAlgebra(self._universe)
            result = Evaluator(self, text, alg, stack).eval(node)
            if not materialize:
                return len(result)
            return BitMap(result) if alg.is_shared(result) else result
        alg = ProgramAlgebra(self._dense, self._universe)
        result = Evaluator(self, text, alg, stack).eval(node)
        prog, n_regs, reg = alg.compile(result)
        n, words = self._dense.run(prog, n_regs, reg, materialize=materialize)
        return bitmap_from_words(words) if materialize else n

    def evaluate(self, expr: str | Node) -> BitMap:
        """Return the members of ``expr`` as a new :class:`~pyroaring.BitMap`."""
        return self._run(expr, materialize=True)

    def size(self, expr: str | Node) -> int:
        """Exact number of users matching ``expr`` (without materializing the members)."""
        return self._run(expr, materialize=False)

    def query(self, expr: str) -> Audience:
        """Evaluate ``expr`` and return an :class:`~mktlab.audience.results.Audience`."""
        t0 = time.perf_counter()
        result = self.evaluate(expr)
        return Audience(expr, result, time.perf_counter() - t0, self.as_of)

    # ------------------------------------------------------------------ saved audiences
    def save(self, name: str, expr: str, *, description: str | None = None):
        """Evaluate ``expr`` and save it as ``@name`` (definition, size, bitmap, build time)."""
        check_name(name)
        t0 = time.perf_counter()
        result = self._run(expr, materialize=True, stack=(name,))
        return self.catalog.save(
            name,
            expr,
            result,
            build_seconds=time.perf_counter() - t0,
            as_of=self.as_of,
            description=description,
        )

    def refresh(self, names: str | list[str] | None = None) -> pd.DataFrame:
        """Recompute saved audiences from their definitions against this store.

        Returns a table of name, old size, new size, added and removed members.
        """
        names = (
            self.catalog.names()
            if names is None
            else [names]
            if isinstance(names, str)
            else list(names)
        )
        rows = []
        for name in names:
            old = self.catalog.get(name)
            row = self.save(name, old.definition, description=old.description)
            rows.append(
                {
                    "name": name,
                    "old_size": old.size,
                    "new_size": row.size,
                    "added": len(row.bitmap - old.bitmap),
                    "removed": len(old.bitmap - row.bitmap),
                }
            )
        return pd.DataFrame(rows, columns=["name", "old_size", "new_size", "added", "removed"])

    def saved(self) -> pd.DataFrame:
        """The saved audiences (name, definition, size, built_at, ...)."""
        return self.catalog.list()

    def overlap(self, audiences: list[str] | dict[str, Any] | None = None) -> pd.DataFrame:
        """Pairwise overlap of saved audiences (names) or of ``{label: expr or bitmap}``.

        See :func:`mktlab.audience.results.overlap`.
        """
        return overlap(self.sets(audiences))

    def sets(self, audiences: list[str] | dict[str, Any] | None = None) -> dict[str, BitMap]:
        """Label -> members for saved names (default: all saved) or ``{label: expr}``."""
        if audiences is None:
            return self.catalog.bitmaps()
        if isinstance(audiences, dict):
            out = {}
            for k, v in audiences.items():
                out[k] = self.evaluate(v) if isinstance(v, str) else getattr(v, "bitmap", v)
            return out
        return {n: self.catalog.get(n).bitmap for n in audiences}

    # ------------------------------------------------------------------ persistence
    def write(self, path: str | Path) -> Path:
        """Write the store to a DuckDB file atomically (temp file, then rename)."""
        return write_store(self, path)

    @classmethod
    def read(
        cls,
        path: str | Path,
        *,
        catalog: AudienceCatalog | str | Path | None = None,
        engine: str = "auto",
        threads: int | None = None,
    ) -> AudienceStore:
        """Load a store written by :meth:`write` (``engine`` and ``threads`` as in :meth:`build`)."""
        if isinstance(catalog, str | Path):
            catalog = AudienceCatalog(catalog)
        return cls._from_parts(read_parts(path, engine=engine, threads=threads), catalog)
