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
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyroaring import BitMap
from tqdm.auto import tqdm

from mktlab.audience._bitmaps import (
    UID_MAX,
    bitmap_from_mask,
    bitmap_from_uids,
    from_clickhouse_state,
    to_clickhouse_state,
)
from mktlab.audience._dense import (
    DenseEngine,
    ProgramAlgebra,
    bitmap_from_words,
    check_threads,
    count,
    plane_words,
    value_words,
    words_from_bitmap,
)
from mktlab.audience.catalog import AudienceCatalog, check_name
from mktlab.audience.events import ANY, EventIndex, from_day, to_day
from mktlab.audience.lang import (
    And,
    AudienceSyntaxError,
    AudienceTypeError,
    Between,
    Compare,
    CountCmp,
    Did,
    In,
    Node,
    Not,
    Or,
    SavedRef,
    Tag,
    UnknownNameError,
    Xor,
    parse,
    suggest,
)
from mktlab.audience.results import Audience
from mktlab.audience.tags import (
    BitSlicedIndex,
    BoolTag,
    CategoricalTag,
    NumericTag,
    RoaringAlgebra,
    bm,
)
from mktlab.errors import DataError, SchemaError, ValidationError
from mktlab.io import atomic_path

DEFAULT_EVENT_ALIASES: dict[str, str] = {
    "active": ANY,
    "purchased": "order",
    "ordered": "order",
    "viewed": "view",
    "carted": "cart",
    "redeemed": "coupon_redeem",
}
_WINDOW_TAG = re.compile(r"^(?P<prefix>[A-Za-z_][A-Za-z0-9_]*?)_(?P<days>\d+)d$")
_KINDS = ("categorical", "numeric", "bool")
DENSE_MIN_USERS = 1 << 20  # below this roaring is fast enough and a bitset wastes memory


# --------------------------------------------------------------------------- input
def _to_arrow(data: Any, what: str, con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
    """Accept a DataFrame, Arrow table, Parquet path or DuckDB table/relation name."""
    if data is None:
        return None  # type: ignore[return-value]
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, duckdb.DuckDBPyRelation):
        return data.to_arrow_table()
    if isinstance(data, str | Path):
        text = str(data)
        if con is not None and not text.endswith((".parquet", ".pq")) and not Path(text).exists():
            return con.sql(f"SELECT * FROM {text}").to_arrow_table()
        path = Path(text)
        if not path.exists():
            raise DataError(f"{what}: {path} does not exist")
        return pq.read_table(path)
    raise ValidationError(
        f"{what}: expected a DataFrame, Arrow table, Parquet path or DuckDB table, got {type(data).__name__}"
    )


def _uids(table: pa.Table, uid: str, what: str) -> np.ndarray:
    """Validate the uid column (integer, non-null, 0 .. 2**32-1) and return it as uint32."""
    if uid not in table.column_names:
        raise SchemaError(f"{what}: missing column {uid!r}; got {', '.join(table.column_names)}")
    col = table.column(uid)
    if not pa.types.is_integer(col.type):
        raise SchemaError(
            f"{what}: column {uid!r} must be an unsigned 32-bit integer, got {col.type}"
        )
    if col.null_count:
        rows = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[:5].tolist()
        raise SchemaError(f"{what}: column {uid!r} has {col.null_count} null(s), e.g. rows {rows}")
    arr = col.to_numpy()
    if arr.size and arr.dtype != np.uint32:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > UID_MAX:
            bad = np.flatnonzero((arr < 0) | (arr > UID_MAX))[:5]
            raise ValidationError(
                f"{what}: column {uid!r} must fit in 32 bits (0..{UID_MAX}); got range {lo}..{hi}, "
                f"e.g. rows {bad.tolist()} = {arr[bad].tolist()}"
            )
        arr = arr.astype(np.uint32)
    return np.ascontiguousarray(arr, dtype=np.uint32)


class _Rows:
    """Maps row masks of the profile table to stored bitmaps, choosing the fastest route.

    With a dense engine every bitmap is a bitset over uids ``0 .. 64 * n_words - 1``
    written by one numba pass per column (rows may come in any order); otherwise a
    roaring bitmap built from the uid-sorted rows.
    """

    def __init__(self, uids: np.ndarray, engine: DenseEngine | None = None):
        n = uids.size
        self.order = None
        self.engine = engine
        self.all = None  # handle of every profile row, shared by columns without nulls
        self.pos = None
        if engine is not None:
            in_order = n == 0 or (
                int(uids[0]) == 0 and int(uids[-1]) == n - 1 and bool(np.all(uids[1:] > uids[:-1]))
            )
            self.pos = None if in_order else uids
            words = value_words(np.zeros(n, dtype=np.int8), self.pos, 1, engine.n_words)[0]
            if count(words) != n:
                _raise_duplicates(uids)
            self.uids = uids
            return
        if n > 1 and not bool(np.all(uids[1:] > uids[:-1])):
            self.order = np.argsort(uids, kind="stable")
            uids = uids[self.order]
            if bool(np.any(uids[1:] == uids[:-1])):
                _raise_duplicates(uids)
        self.uids = uids
        self.lo = int(uids[0]) if n else 0
        span = int(uids[-1]) - self.lo + 1 if n else 0
        self.contiguous = span == n
        self.dense = n > 0 and span <= 4 * n

    def take(self, values: np.ndarray) -> np.ndarray:
        return values if self.order is None else values[self.order]

    def bitmap(self, mask: np.ndarray):
        if self.all is not None and mask.all():
            return self.all
        if self.engine is not None:
            codes = np.where(mask, np.int8(0), np.int8(-1))
            return self.engine.add(value_words(codes, self.pos, 1, self.engine.n_words)[0])
        if self.contiguous:
            return bitmap_from_mask(mask, self.lo)
        if self.dense:
            full = np.zeros(int(self.uids[-1]) - self.lo + 1, dtype=bool)
            full[self.uids[mask] - self.lo] = True
            return bitmap_from_mask(full, self.lo)
        return bitmap_from_uids(self.uids[mask])

    def value_bitmaps(self, codes: np.ndarray, k: int) -> list:
        """Handle per code ``0 .. k-1``; negative codes are nulls."""
        if self.engine is not None:
            words = value_words(codes, self.pos, k, self.engine.n_words)
            return [self.engine.add(words[i]) for i in range(k)]
        if k <= 64:
            return [self.bitmap(codes == i) for i in range(k)]
        # Many values: one stable sort by code, then each value is a sorted uid slice.
        order = np.argsort(codes, kind="stable")
        bounds = np.concatenate(
            [[0], np.cumsum(np.bincount(codes.astype(np.int64) + 1, minlength=k + 1))]
        )
        return [bitmap_from_uids(self.uids[order[bounds[i + 1] : bounds[i + 2]]]) for i in range(k)]

    def bsi(self, codes: np.ndarray, present: np.ndarray, ebm, offset: int = 0) -> BitSlicedIndex:
        """Bit planes of ``codes - offset`` (>= 0 where present; null rows are ignored)."""
        if not present.all():
            codes = np.where(present, codes, codes.dtype.type(offset))
        top = int(codes.max()) - offset if codes.size else 0
        bits = max(top.bit_length(), 1)
        if self.engine is not None:
            words = plane_words(codes, offset, self.pos, bits, self.engine.n_words)
            return BitSlicedIndex([self.engine.add(words[b]) for b in range(bits)], ebm, top)
        if offset:
            codes = _offset_codes(codes, offset, top)
        dtype = (
            np.uint8
            if bits <= 8
            else np.uint16
            if bits <= 16
            else np.uint32
            if bits <= 32
            else np.uint64
        )
        codes = codes.astype(dtype, copy=False)
        planes = [self.bitmap((codes & dtype(1 << b)) != 0) for b in range(bits)]
        return BitSlicedIndex(planes, ebm, top)


def _raise_duplicates(uids: np.ndarray) -> None:
    values, counts = np.unique(uids, return_counts=True)
    dup = values[counts > 1]
    raise DataError(
        f"profiles: uid must be unique (one row per user); {dup.size} duplicated uid(s), e.g. {dup[:5].tolist()}"
    )


def _infer_kind(col: pa.ChunkedArray) -> str | None:
    t = col.type
    if pa.types.is_boolean(t):
        return "bool"
    if (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_date(t)
        or pa.types.is_timestamp(t)
    ):
        return "numeric"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return "categorical"
    return None


def _build_categorical(
    name: str, col: pa.ChunkedArray, rows: _Rows, present_bm, max_values: int
) -> CategoricalTag:
    ordered = False
    if pa.types.is_dictionary(col.type):
        ordered = bool(col.type.ordered)
        if col.num_chunks > 1:
            col = col.unify_dictionaries()
        arr = col.combine_chunks() if col.num_chunks else pa.array([], type=col.type)
        dictionary = [str(v) for v in arr.dictionary.to_pylist()]
        indices = arr.indices
    else:
        enc = pc.dictionary_encode(pc.cast(col, pa.string())).combine_chunks()
        dictionary = [str(v) for v in enc.dictionary.to_pylist()]
        indices = enc.indices
    if len(dictionary) > max_values:
        raise DataError(
            f"profiles: column {name!r} has {len(dictionary)} distinct values (> max_values={max_values}); "
            "pass exclude=[...] to leave it out or raise max_values"
        )
    # Keep the narrow index type (int8 for a few values): 100M rows stay 100 MB.
    codes = rows.take(pc.fill_null(indices, -1).to_numpy(zero_copy_only=False))
    if codes.dtype == np.int8 and len(dictionary) > 127:
        codes = codes.astype(np.int16)
    present = codes >= 0
    handles = rows.value_bitmaps(codes, len(dictionary))
    # Values that occur in no row are dropped (unless ordered: their rank still counts).
    values = {v: h for v, h in zip(dictionary, handles) if ordered or len(h)}
    if ordered:
        bsi = rows.bsi(np.maximum(codes, 0), present, present_bm)
        return CategoricalTag(name, values, present_bm, order=tuple(dictionary), bsi=bsi)
    values = dict(sorted(values.items()))
    return CategoricalTag(name, values, present_bm)


def _offset_codes(values: np.ndarray, vmin: int, span: int) -> np.ndarray:
    """``values - vmin`` in the narrowest unsigned type, in slices to bound temporaries."""
    dtype = (
        np.uint8
        if span < 1 << 8
        else np.uint16
        if span < 1 << 16
        else np.uint32
        if span < 1 << 32
        else np.uint64
    )
    out = np.empty(values.size, dtype=dtype)
    step = 1 << 23
    for i in range(0, values.size, step):
        part = values[i : i + step]
        out[i : i + step] = part.astype(np.int64) - vmin
    return out


def _build_numeric(
    name: str, col: pa.ChunkedArray, rows: _Rows, present: np.ndarray, present_bm
) -> NumericTag:
    t = col.type
    if pa.types.is_date(t):
        dtype = "date"
        raw = pc.cast(pc.cast(col, pa.date32()), pa.int32())
    elif pa.types.is_timestamp(t):
        dtype = "timestamp"
        if t.tz is not None:
            col = pc.local_timestamp(col)
        raw = pc.cast(pc.cast(col, pa.timestamp("us")), pa.int64())
    elif pa.types.is_floating(t):
        dtype = "float"
        raw = col
    else:
        dtype = "int"
        raw = col
    fill = 0.0 if dtype == "float" else 0
    values = rows.take(pc.fill_null(raw, fill).to_numpy())
    if dtype == "float":
        values = values.astype(np.float64, copy=False)
    if not present.any():
        return NumericTag(name, dtype, BitSlicedIndex([present_bm], present_bm), vmin=0)
    vals = values[present]
    lo, hi = vals.min(), vals.max()
    if dtype != "float" and int(hi) - int(lo) <= UID_MAX:
        vmin = int(lo)
        # Null rows hold the fill value 0, possibly below vmin; their codes are masked in bsi().
        bsi = rows.bsi(values, present, present_bm, offset=vmin)
        return NumericTag(name, dtype, bsi, vmin=vmin, lo=float(lo), hi=float(hi))
    # Floats and very wide integers: rank among the distinct values (exact, order-preserving).
    uniques, inverse = np.unique(vals, return_inverse=True)
    codes = np.zeros(values.size, dtype=np.uint32)
    codes[present] = inverse
    bsi = rows.bsi(codes, present, present_bm)
    return NumericTag(name, dtype, bsi, uniques=uniques, lo=float(lo), hi=float(hi))


# --------------------------------------------------------------------------- store
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
    ):
        self._universe = universe
        self.tags = tags
        self.events = events
        self.event_aliases = dict(DEFAULT_EVENT_ALIASES if event_aliases is None else event_aliases)
        self.catalog = catalog if catalog is not None else AudienceCatalog()
        self.skipped = dict(skipped or {})
        self.dropped_rows: dict[str, int] = {}  # filled by builders that drop input rows
        self._dense = dense
        self._derived: dict[tuple, BitMap] = {}
        self._as_of_day: int | None = None
        if as_of is not None:
            if events is None:
                raise ValidationError("as_of: given but there is no event table")
            self._as_of_day = to_day(as_of)
            events.window(1, self._as_of_day)  # validates as_of lies inside the data
        elif events is not None:
            self._as_of_day = events.last_day

    # ------------------------------------------------------------------ build
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
        engine : {"auto", "roaring", "dense"}
            ``auto`` picks ``dense`` for universes of at least 2**20 mostly-used uids.
        con : duckdb connection, optional
            Used when ``profiles``/``events`` name DuckDB tables.
        progress : bool
            Show a progress bar over columns.
        threads : int, optional
            Threads one dense-engine query runs on (default: the CPUs this process may
            use); see :attr:`threads`. Ignored by the roaring engine.
        """
        if profiles is None and events is None:
            raise ValidationError("build: give a profile table, an event table or both")
        if engine not in ("auto", "roaring", "dense"):
            raise ValidationError(f"engine must be 'auto', 'roaring' or 'dense', got {engine!r}")
        check_threads(threads)
        kinds = dict(kinds or {})
        for col, kind in kinds.items():
            if kind not in _KINDS:
                raise ValidationError(f"kinds[{col!r}] = {kind!r}; expected one of {_KINDS}")
        if isinstance(catalog, str | Path):
            catalog = AudienceCatalog(catalog)
        ptable = _to_arrow(profiles, "profiles", con)
        etable = _to_arrow(events, "events", con)
        uids = _uids(ptable, uid, "profiles") if ptable is not None else None
        euids = None
        if etable is not None:
            for need in (uid, "ts", "event"):
                if need not in etable.column_names:
                    raise SchemaError(
                        f"events: missing column {need!r}; got {', '.join(etable.column_names)}"
                    )
            euids = _uids(etable, uid, "events")
        top = (
            max(int(a.max()) for a in (uids, euids) if a is not None and a.size)
            if any(a is not None and a.size for a in (uids, euids))
            else 0
        )
        n_words = top // 64 + 1
        n_profiles = 0 if uids is None else uids.size
        n_known = n_profiles if n_profiles else (0 if euids is None else int(np.unique(euids).size))
        if engine == "dense" and top + 1 > 64 * n_known + DENSE_MIN_USERS:
            raise ValidationError(
                f"engine='dense': uids reach {top:,} for about {n_known:,} users; a bitset per tag value "
                "would be mostly empty. Use engine='roaring' (or 'auto') for sparse uids"
            )
        use_dense = engine == "dense" or (
            engine == "auto" and top + 1 >= DENSE_MIN_USERS and n_profiles >= (top + 1) // 2
        )
        dense = DenseEngine(n_words, threads) if use_dense else None

        tags: dict = {}
        skipped: dict[str, str] = {}
        parts: list = []
        if ptable is not None:
            for col in kinds:
                if col not in ptable.column_names:
                    raise SchemaError(
                        f"kinds: profiles has no column {col!r}{suggest(col, ptable.column_names)}"
                    )
            for col in exclude:
                if col not in ptable.column_names:
                    raise SchemaError(
                        f"exclude: profiles has no column {col!r}{suggest(col, ptable.column_names)}"
                    )
            rows = _Rows(uids, dense)
            rows.all = rows.bitmap(np.ones(uids.size, dtype=bool))
            parts.append(rows.all)
            columns = [c for c in ptable.column_names if c != uid and c not in exclude]
            for name in tqdm(columns, desc="tags", disable=not progress):
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):
                    skipped[name] = "name is not usable in expressions (letters, digits, '_', '.')"
                    continue
                col = ptable.column(name)
                kind = kinds.get(name) or _infer_kind(col)
                if kind is None:
                    skipped[name] = f"unsupported type {col.type}"
                    continue
                tags[name] = cls._build_tag(name, kind, col, rows, max_values)
        index = None
        if etable is not None:
            index = EventIndex.from_arrow(etable.select(["ts", "event"]), euids, data_range)
            ebm = bitmap_from_uids(euids)
            parts.append(ebm if dense is None else dense.add(words_from_bitmap(ebm, n_words)))
        if dense is None:
            universe = BitMap.union(*parts)
        elif len(parts) == 1:
            universe = parts[0]
        else:
            universe = dense.add(parts[0].words | parts[1].words)
        return cls(
            universe,
            tags,
            index,
            as_of=as_of,
            event_aliases=event_aliases,
            catalog=catalog,
            skipped=skipped,
            dense=dense,
        )

    @staticmethod
    def _build_tag(name: str, kind: str, col: pa.ChunkedArray, rows: _Rows, max_values: int):
        valid = col.is_valid()
        if pa.types.is_floating(col.type):
            valid = pc.and_(valid, pc.invert(pc.fill_null(pc.is_nan(col), True)))
        present = rows.take(valid.to_numpy(zero_copy_only=False).astype(bool, copy=False))
        present_bm = rows.bitmap(present)
        if kind == "bool":
            if not pa.types.is_boolean(col.type):
                try:
                    col = pc.cast(col, pa.bool_())
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise SchemaError(
                        f"profiles: column {name!r} cannot be read as boolean: {exc}"
                    ) from None
            truth = rows.take(pc.fill_null(col, False).to_numpy(zero_copy_only=False).astype(bool))
            return BoolTag(name, rows.bitmap(truth & present), present_bm)
        if kind == "numeric":
            if _infer_kind(col) != "numeric":
                try:
                    col = pc.cast(col, pa.float64())
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise SchemaError(
                        f"profiles: column {name!r} cannot be read as numeric: {exc}"
                    ) from None
            return _build_numeric(name, col, rows, present, present_bm)
        return _build_categorical(name, col, rows, present_bm, max_values)

    # ------------------------------------------------------------------ info
    @property
    def universe(self) -> BitMap:
        """Every known uid, as a roaring bitmap."""
        return bm(self._universe)

    @property
    def engine(self) -> str:
        return "roaring" if self._dense is None else "dense"

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
        t = self._tag(tag)
        if not isinstance(t, CategoricalTag):
            raise AudienceTypeError(f"{tag!r} is {t.describe()}, not categorical")
        return list(t.order or t.values)

    def _tag(self, name: str, text: str = "", span: tuple[int, int] = (0, 0)):
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
        if self._dense is None:
            alg = RoaringAlgebra(self._universe)
            result = _Evaluator(self, text, alg, stack).eval(node)
            if not materialize:
                return len(result)
            return BitMap(result) if alg.is_shared(result) else result
        alg = ProgramAlgebra(self._dense, self._universe)
        result = _Evaluator(self, text, alg, stack).eval(node)
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
        from mktlab.audience.results import overlap

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
        path = Path(path)
        rows: list[tuple] = []

        def add(tag: str, part: str, key: str, h) -> None:
            rows.append((tag, part, key, to_clickhouse_state(bm(h))))

        meta: dict[str, Any] = {
            "version": 1,
            "as_of": None if self.as_of is None else self.as_of.isoformat(),
            "event_aliases": self.event_aliases,
            "skipped": self.skipped,
            "engine": self.engine,
            "tags": {},
        }
        add("", "universe", "", self._universe)
        for name, t in self.tags.items():
            info: dict[str, Any] = {"kind": t.kind}
            add(name, "present", "", t.present)
            if isinstance(t, BoolTag):
                add(name, "true", "", t.true)
            elif isinstance(t, CategoricalTag):
                info["order"] = list(t.order) if t.order else None
                info["values"] = list(t.values)
                for v, h in t.values.items():
                    add(name, "value", v, h)
            if isinstance(t, NumericTag):
                info.update(dtype=t.dtype, vmin=t.vmin, lo=t.lo, hi=t.hi)
                info["uniques"] = None if t.uniques is None else t.uniques.tolist()
            bsi = getattr(t, "bsi", None)
            if bsi is not None:
                info["bits"] = bsi.bits
                info["top"] = bsi.top
                for i, plane in enumerate(bsi.planes):
                    add(name, "plane", str(i), plane)
            meta["tags"][name] = info
        if self.events is not None:
            meta["events"] = {
                "names": self.events.names,
                "first_day": self.events.first_day,
                "last_day": self.events.last_day,
            }
        frame = pa.table(
            {
                "tag": [r[0] for r in rows],
                "part": [r[1] for r in rows],
                "key": [r[2] for r in rows],
                "state": pa.array([r[3] for r in rows], type=pa.large_binary()),
            }
        )
        with atomic_path(path) as tmp:
            con = duckdb.connect(str(tmp))
            try:
                con.execute("CREATE TABLE meta (doc VARCHAR)")
                con.execute("INSERT INTO meta VALUES (?)", [json.dumps(meta)])
                con.register("frame", frame)
                con.execute("CREATE TABLE bitmaps AS SELECT * FROM frame")
                if self.events is not None:
                    ev = pa.table({"uid": self.events.uids, "key": self.events.keys})
                    con.register("ev", ev)
                    con.execute("CREATE TABLE events AS SELECT * FROM ev")
            finally:
                con.close()
        return path

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
        check_threads(threads)
        path = Path(path)
        if not path.exists():
            raise DataError(
                f"audience store {path} does not exist; run `mktlab audience build` first"
            )
        try:
            con = duckdb.connect(str(path), read_only=True)
        except duckdb.Error as exc:
            raise DataError(f"audience store {path}: cannot open ({exc})") from exc
        try:
            meta = json.loads(con.sql("SELECT doc FROM meta").fetchall()[0][0])
            table = con.sql("SELECT tag, part, key, state FROM bitmaps").to_arrow_table()
            ev = (
                con.sql("SELECT uid, key FROM events").to_arrow_table()
                if "events" in meta
                else None
            )
        except duckdb.Error as exc:
            raise DataError(
                f"audience store {path}: not a store written by AudienceStore.write ({exc})"
            ) from exc
        finally:
            con.close()
        universe = BitMap()
        states: dict[tuple[str, str, str], bytes] = {}
        for tag, part, key, state in zip(
            *(table.column(c).to_pylist() for c in ("tag", "part", "key", "state"))
        ):
            if part == "universe":
                universe = from_clickhouse_state(state)
            else:
                states[(tag, part, key)] = state
        top = universe.max() if len(universe) else 0
        use_dense = engine == "dense" or (
            engine == "auto" and top + 1 >= DENSE_MIN_USERS and len(universe) >= (top + 1) // 2
        )
        dense = DenseEngine(top // 64 + 1, threads) if use_dense else None
        cache: dict[bytes, Any] = {}

        def handle(state: bytes):
            # Identical states (e.g. a no-null column's presence = all profiles) share one handle.
            if state not in cache:
                b = from_clickhouse_state(state)
                cache[state] = (
                    b if dense is None else dense.add(words_from_bitmap(b, dense.n_words))
                )
            return cache[state]

        def get(tag: str, part: str, key: str = ""):
            return handle(states[(tag, part, key)])

        tags: dict = {}
        for name, info in meta["tags"].items():
            present = get(name, "present")
            bsi = None
            if "bits" in info:
                bsi = BitSlicedIndex(
                    [get(name, "plane", str(i)) for i in range(info["bits"])],
                    present,
                    top=info.get("top"),
                )
            if info["kind"] == "bool":
                tags[name] = BoolTag(name, get(name, "true"), present)
            elif info["kind"] == "categorical":
                order = tuple(info["order"]) if info.get("order") else None
                values = {v: get(name, "value", v) for v in info.get("values", [])}
                tags[name] = CategoricalTag(name, values, present, order=order, bsi=bsi)
            else:
                uniques = None if info.get("uniques") is None else np.asarray(info["uniques"])
                tags[name] = NumericTag(
                    name,
                    info["dtype"],
                    bsi,
                    vmin=info.get("vmin"),
                    uniques=uniques,
                    lo=info.get("lo"),
                    hi=info.get("hi"),
                )
        index = None
        if ev is not None:
            e = meta["events"]
            index = EventIndex(
                e["names"],
                ev.column("uid").to_numpy().astype(np.uint32),
                ev.column("key").to_numpy().astype(np.int64),
                e["first_day"],
                e["last_day"],
            )
        if isinstance(catalog, str | Path):
            catalog = AudienceCatalog(catalog)
        uni = universe if dense is None else dense.add(words_from_bitmap(universe, dense.n_words))
        return cls(
            uni,
            tags,
            index,
            as_of=meta.get("as_of"),
            event_aliases=meta.get("event_aliases"),
            catalog=catalog,
            skipped=meta.get("skipped"),
            dense=dense,
        )


# --------------------------------------------------------------------------- evaluator
class _Evaluator:
    """Turns an AST into bitmap algebra (roaring operations or a dense-engine program)."""

    def __init__(self, store: AudienceStore, text: str, alg, stack: tuple[str, ...] = ()):
        self.store = store
        self.text = text
        self.alg = alg
        self.stack = stack

    def type_error(
        self, node: Node, message: str, span: tuple[int, int] | None = None
    ) -> AudienceTypeError:
        return AudienceTypeError(message, self.text, *(span or node.span))

    def tag_span(self, node) -> tuple[int, int]:
        return (node.span[0], node.span[0] + len(node.tag))

    def eval(self, node: Node):
        method = getattr(self, "_" + type(node).__name__.lower())
        return method(node)

    # -- boolean structure
    def _and(self, node: And):
        alg = self.alg
        pos = [self.eval(o) for o in node.operands if not isinstance(o, Not)]
        neg = [o.operand for o in node.operands if isinstance(o, Not)]
        if pos:
            pos.sort(key=alg.size_hint)  # smallest first: later intersections stay small
            result = pos[0]
            for s in pos[1:]:
                if alg.known_empty(result):
                    break
                result = alg.and_(result, s)
        else:
            result = alg.universe()
        for o in neg:
            if alg.known_empty(result):
                break
            result = alg.andnot(result, self.eval(o))
        return result

    def _or(self, node: Or):
        return self.alg.union([self.eval(o) for o in node.operands])

    def _xor(self, node: Xor):
        sets = [self.eval(o) for o in node.operands]
        result = sets[0]
        for s in sets[1:]:
            result = self.alg.xor(result, s)
        return result

    def _not(self, node: Not):
        return self.alg.not_(self.eval(node.operand))

    # -- leaves
    def _savedref(self, node: SavedRef):
        if node.name in self.stack:
            cycle = " -> ".join(f"@{n}" for n in (*self.stack, node.name))
            raise AudienceTypeError(
                f"saved audiences refer to each other in a cycle: {cycle}", self.text, *node.span
            )
        saved = self.store.catalog.get(node.name, text=self.text, span=node.span)
        try:
            sub = _Evaluator(self.store, saved.definition, self.alg, (*self.stack, node.name))
            return sub.eval(parse(saved.definition))
        except (AudienceTypeError, UnknownNameError, AudienceSyntaxError) as exc:
            raise type(exc)(
                f"in @{node.name} = {saved.definition!r}: {exc.reason}", self.text, *node.span
            ) from exc

    def _tag(self, node: Tag):
        tag = self.store.tags.get(node.name)
        if tag is None:
            window = self._window_tag(node)
            if window is not None:
                return window
            self.store._tag(node.name, self.text, node.span)
        if isinstance(tag, BoolTag):
            return self.alg.leaf(tag.true)
        example = (
            f'{node.name} == "{next(iter(tag.values), "x")}"'
            if isinstance(tag, CategoricalTag)
            else f"{node.name} >= 1"
        )
        raise self.type_error(
            node,
            f"{node.name!r} is {tag.describe()}, not a boolean tag; compare it, e.g. {example}",
        )

    def _window_tag(self, node: Tag):
        m = _WINDOW_TAG.match(node.name)
        if not m or self.store.events is None:
            return None
        prefix, days = m["prefix"], int(m["days"])
        event = self.store.event_aliases.get(prefix, prefix)
        if event != ANY and event not in self.store.events.names:
            return None
        return self._did(Did(event, days, span=node.span))

    def _check_event(self, node: Did | CountCmp) -> tuple[int, int]:
        ev = self.store.events
        if ev is None:
            raise UnknownNameError(
                f"{node.event}: this store has no event table", self.text, *node.span
            )
        if node.event != ANY and node.event not in ev.names:
            raise UnknownNameError(
                f"unknown event {node.event!r}{suggest(node.event, [*ev.names, ANY])} (events: {', '.join(ev.names)})",
                self.text,
                *node.span,
            )
        try:
            return ev.window(node.days, self.store._as_of_day)  # type: ignore[arg-type]
        except ValidationError as exc:
            raise AudienceTypeError(str(exc), self.text, *node.span) from None

    def _did(self, node: Did):
        start, end = self._check_event(node)
        return self.alg.leaf(self.store.events.did(node.event, start, end))  # type: ignore[union-attr]

    def _countcmp(self, node: CountCmp):
        start, end = self._check_event(node)
        values = [node.value] if node.op != "between" else [node.value, node.hi]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise self.type_error(node, f"count(...) is a number; cannot compare it with {v!r}")
        key = ("count", node.event, start, end, node.op, node.value, node.hi)
        if key not in self.store._derived:
            uids, counts = self.store.events.counts(node.event, start, end)  # type: ignore[union-attr]
            if node.op == "between":
                ok = (counts >= node.value) & (counts <= node.hi)  # type: ignore[operator]
                zero_ok = node.value <= 0 <= node.hi  # type: ignore[operator]
            else:
                ok = _cmp(counts, node.op, node.value)
                zero_ok = bool(_cmp(np.zeros(1), node.op, node.value)[0])
            # Users without events have count 0: if 0 qualifies, keep everyone but the failures.
            self.store._derived[key] = (
                zero_ok,
                bitmap_from_uids(uids[~ok] if zero_ok else uids[ok]),
            )
        zero_ok, members = self.store._derived[key]
        leaf = self.alg.leaf(members)
        return self.alg.not_(leaf) if zero_ok else leaf

    # -- comparisons
    def _value(self, node: Node, tag, v, span=None):
        """Check a literal against the tag's type; return it converted for numeric tags."""
        if isinstance(tag, NumericTag):
            if tag.dtype in ("date", "timestamp") and isinstance(v, str):
                try:
                    if tag.dtype == "date":
                        return (dt.date.fromisoformat(v) - dt.date(1970, 1, 1)).days
                    return int(np.datetime64(v, "us").astype(np.int64))
                except ValueError:
                    raise self.type_error(
                        node,
                        f"{tag.name!r} is a {tag.dtype}; cannot read {v!r} as one (use YYYY-MM-DD)",
                        span,
                    ) from None
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise self.type_error(
                    node,
                    f"type mismatch: {tag.name!r} is {tag.describe()}; cannot compare it with {v!r}",
                    span,
                )
            if tag.dtype in ("date", "timestamp"):
                raise self.type_error(
                    node,
                    f'type mismatch: {tag.name!r} is a {tag.dtype}; compare it with a quoted date like "2024-01-31"',
                    span,
                )
            return v
        if isinstance(tag, CategoricalTag):
            if not isinstance(v, str):
                raise self.type_error(
                    node,
                    f"type mismatch: {tag.name!r} is {tag.describe()}; compare it with a quoted value, not {v!r}",
                    span,
                )
            if v not in tag.values:
                raise UnknownNameError(
                    f"unknown value {v!r} for {tag.name!r}{suggest(v, tag.values)} "
                    f"(values: {', '.join(list(tag.values)[:20])})",
                    self.text,
                    *(span or node.span),
                )
            return v
        if isinstance(tag, BoolTag):
            if not isinstance(v, bool):
                raise self.type_error(
                    node,
                    f"type mismatch: {tag.name!r} is boolean; compare it with true or false, not {v!r}",
                    span,
                )
            return v
        raise AssertionError(tag)

    def _compare(self, node: Compare):
        alg = self.alg
        tag = self.store._tag(node.tag, self.text, self.tag_span(node))
        v = self._value(node, tag, node.value, node.value_span)
        if isinstance(tag, NumericTag):
            return tag.compare(node.op, v, alg)
        if isinstance(tag, BoolTag):
            if node.op not in ("==", "!="):
                raise self.type_error(node, f"{tag.name!r} is boolean; only == and != apply")
            want = v if node.op == "==" else not v
            return (
                alg.leaf(tag.true)
                if want
                else alg.andnot(alg.leaf(tag.present), alg.leaf(tag.true))
            )
        if node.op == "==":
            return alg.leaf(tag.values[v])
        if node.op == "!=":
            return alg.andnot(alg.leaf(tag.present), alg.leaf(tag.values[v]))
        if tag.order is None:
            raise self.type_error(
                node,
                f"{tag.name!r} is an unordered categorical; {node.op} needs an ordered one (use ==, != or in)",
            )
        code = tag.order.index(v)
        b = tag.bsi
        return {
            ">=": lambda: b.ge(code, alg),
            ">": lambda: b.ge(code + 1, alg),
            "<": lambda: b.lt(code, alg),
            "<=": lambda: b.lt(code + 1, alg),
        }[node.op]()

    def _between(self, node: Between):
        tag = self.store._tag(node.tag, self.text, self.tag_span(node))
        lo, hi = self._value(node, tag, node.lo), self._value(node, tag, node.hi)
        if isinstance(tag, NumericTag):
            return tag.between(lo, hi, self.alg)
        if isinstance(tag, CategoricalTag) and tag.order is not None:
            return tag.bsi.between(tag.order.index(lo), tag.order.index(hi), self.alg)
        raise self.type_error(
            node, f"{tag.name!r} is {tag.describe()}; 'between' needs a numeric or ordered tag"
        )

    def _in(self, node: In):
        alg = self.alg
        tag = self.store._tag(node.tag, self.text, self.tag_span(node))
        vals = [self._value(node, tag, v) for v in node.values]
        if isinstance(tag, NumericTag):
            hits = alg.union([tag.compare("==", v, alg) for v in vals])
        elif isinstance(tag, CategoricalTag):
            hits = alg.union([alg.leaf(tag.values[v]) for v in dict.fromkeys(vals)])
        else:
            hits = alg.union(
                [
                    alg.leaf(tag.true)
                    if v
                    else alg.andnot(alg.leaf(tag.present), alg.leaf(tag.true))
                    for v in vals
                ]
            )
        return alg.andnot(alg.leaf(tag.present), hits) if node.negate else hits


def _cmp(a: np.ndarray, op: str, v: float) -> np.ndarray:
    return {
        "==": a == v,
        "!=": a != v,
        ">=": a >= v,
        ">": a > v,
        "<=": a <= v,
        "<": a < v,
    }[op]
