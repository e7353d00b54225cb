"""Building an audience store's bitmaps from a profile table and an event table.

:func:`build_parts` reads the tables (DataFrame, Arrow, Parquet or DuckDB), validates the
uids, turns every usable profile column into a tag (categorical, numeric as bit-sliced
index, boolean) and indexes the events; :class:`~mktlab.audience.tagstore.AudienceStore`
wraps the result.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
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

from mktlab.audience._bitmaps import UID_MAX, bitmap_from_mask, bitmap_from_uids
from mktlab.audience._dense import (
    DenseEngine,
    check_threads,
    count,
    plane_words,
    value_words,
    words_from_bitmap,
)
from mktlab.audience.events import EventIndex
from mktlab.audience.lang import suggest
from mktlab.audience.tags import BitSlicedIndex, BoolTag, CategoricalTag, NumericTag
from mktlab.errors import DataError, SchemaError, ValidationError

KINDS = ("categorical", "numeric", "bool")
DENSE_MIN_USERS = 1 << 20  # below this roaring is fast enough and a bitset wastes memory


@dataclass
class StoreParts:
    """What a store is made of, as built from tables or read from a file."""

    universe: Any  # BitMap, or a dense-engine handle
    tags: dict
    events: EventIndex | None = None
    dense: DenseEngine | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    as_of: dt.date | str | None = None
    event_aliases: dict[str, str] | None = None
    backend: Any = None  # a ClickHouseBackend when the bitmaps live in ClickHouse


def wants_dense(engine: str, top: int, n_users: int) -> bool:
    """Whether ``engine`` ("auto", "roaring", "dense") means bitsets for uids ``0..top``."""
    return engine == "dense" or (
        engine == "auto" and top + 1 >= DENSE_MIN_USERS and n_users >= (top + 1) // 2
    )


def build_parts(
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
    engine: str = "auto",
    con: duckdb.DuckDBPyConnection | None = None,
    progress: bool = False,
    threads: int | None = None,
) -> StoreParts:
    """The bitmaps of a store; see :meth:`~mktlab.audience.tagstore.AudienceStore.build`."""
    if profiles is None and events is None:
        raise ValidationError("build: give a profile table, an event table or both")
    if engine not in ("auto", "roaring", "dense"):
        raise ValidationError(f"engine must be 'auto', 'roaring' or 'dense', got {engine!r}")
    check_threads(threads)
    kinds = check_kinds(kinds)
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
    use_dense = wants_dense(engine, top, n_profiles)
    dense = DenseEngine(n_words, threads) if use_dense else None

    tags: dict = {}
    skipped: dict[str, str] = {}
    parts: list = []
    if ptable is not None:
        rows = _Rows(uids, dense)
        rows.all = rows.bitmap(np.ones(uids.size, dtype=bool))
        parts.append(rows.all)
        planned, skipped = plan_columns(ptable, uid, kinds, exclude)
        for name, kind in tqdm(planned, desc="tags", disable=not progress):
            tags[name] = _build_tag(name, kind, ptable.column(name), rows, max_values)
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
    return StoreParts(universe, tags, index, dense, skipped, as_of, event_aliases)


def check_kinds(kinds: dict[str, str] | None) -> dict[str, str]:
    """Validate ``kinds`` (column -> forced kind) and return a copy."""
    kinds = dict(kinds or {})
    for col, kind in kinds.items():
        if kind not in KINDS:
            raise ValidationError(f"kinds[{col!r}] = {kind!r}; expected one of {KINDS}")
    return kinds


def plan_columns(
    ptable: pa.Table, uid: str, kinds: dict[str, str], exclude
) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Which profile columns become tags, of which kind, and why the others are skipped."""
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
    planned: list[tuple[str, str]] = []
    skipped: dict[str, str] = {}
    for name in [c for c in ptable.column_names if c != uid and c not in exclude]:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):
            skipped[name] = "name is not usable in expressions (letters, digits, '_', '.')"
            continue
        col = ptable.column(name)
        kind = kinds.get(name) or _infer_kind(col)
        if kind is None:
            skipped[name] = f"unsupported type {col.type}"
            continue
        planned.append((name, kind))
    return planned, skipped


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
