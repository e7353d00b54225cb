"""Building a store's bitmaps inside ClickHouse (chdb or a server).

The tables are read and validated exactly as for the local engines
(:mod:`~mktlab.audience.builder`: same uid checks, same column kinds, same errors).
Python then turns each tag column into the integer codes the local engine uses
(dictionary index, ``value - min``, or rank among distinct values) and streams
``(uid, code)`` to a staging table as Arrow; ClickHouse builds every state with
``groupBitmapState`` (one per categorical value, one per bit plane). Events go to a
MergeTree ordered by ``(code, day, uid)`` so a window reads one contiguous range.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from mktlab.audience.builder import (
    StoreParts,
    _raise_duplicates,
    _to_arrow,
    _uids,
    check_kinds,
    plan_columns,
)
from mktlab.audience.chconn import runner_for
from mktlab.audience.clickhouse import STATE_TYPE, ClickHouseBackend, ClickHouseEvents
from mktlab.audience.events import event_days
from mktlab.audience.tags import BitSlicedIndex, BoolTag, CategoricalTag, NumericTag
from mktlab.errors import DataError, SchemaError, ValidationError

UID_MAX = (1 << 32) - 1
_UNIVERSE, _ROWS, _EVENT_UIDS = 0, 1, 2


class _Ids:
    def __init__(self, start: int = 3):
        self.next = start

    def take(self, n: int = 1) -> int:
        first = self.next
        self.next += n
        return first


class _Loader:
    """Streams ``(uid, c)`` into ``<db>.stage`` and turns it into states."""

    def __init__(self, runner, db: str, uids: np.ndarray):
        self.runner, self.db = runner, db
        self.uid = pa.array(uids, type=pa.uint32())
        self.loaded = False

    def load(self, codes: np.ndarray | None) -> None:
        """``codes``: one per row, ``-1`` = null (``None``: all null)."""
        if self.loaded:
            self.runner.execute(f"TRUNCATE TABLE {self.db}.stage")
        if codes is None:
            c = pa.nulls(len(self.uid), type=pa.uint32())
        else:
            c = pa.array(np.maximum(codes, 0).astype(np.uint32), mask=codes < 0)
        self.runner.insert_arrow(f"{self.db}.stage", pa.table({"uid": self.uid, "c": c}))
        self.loaded = True

    def state(self, id_: int, where: str = "c IS NOT NULL") -> None:
        self.runner.execute(
            f"INSERT INTO {self.db}.bitmaps SELECT {id_}, groupBitmapState(uid) "
            f"FROM {self.db}.stage WHERE {where}"
        )

    def by_code(self, base: int) -> None:
        self.runner.execute(
            f"INSERT INTO {self.db}.bitmaps SELECT {base} + c, groupBitmapState(uid) "
            f"FROM {self.db}.stage WHERE c IS NOT NULL GROUP BY c"
        )

    def planes(self, base: int, bits: int) -> None:
        self.runner.execute(
            f"INSERT INTO {self.db}.bitmaps SELECT {base} + b, groupBitmapState(uid) "
            f"FROM {self.db}.stage ARRAY JOIN arrayFilter(x -> bitTest(assumeNotNull(c), x), "
            f"range(toUInt8({bits}))) AS b WHERE c IS NOT NULL GROUP BY b"
        )


def build_clickhouse_parts(
    profiles: Any = None,
    events: Any = None,
    *,
    engine: str,
    uid: str = "uid",
    as_of: Any = None,
    data_range: tuple[Any, Any] | None = None,
    kinds: dict[str, str] | None = None,
    exclude: tuple[str, ...] | list[str] = (),
    max_values: int = 10_000,
    event_aliases: dict[str, str] | None = None,
    con=None,
    progress: bool = False,
    clickhouse_url: str | None = None,
    database: str | None = None,
) -> StoreParts:
    """The parts of a store whose bitmaps live in ClickHouse (see ``AudienceStore.build``)."""
    t_start = time.perf_counter()
    if profiles is None and events is None:
        raise ValidationError("build: give a profile table, an event table or both")
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
    planned, skipped = plan_columns(ptable, uid, kinds, exclude) if ptable is not None else ([], {})
    ev = event_days(etable.select(["ts", "event"]), data_range) if etable is not None else None

    runner = runner_for(engine, clickhouse_url)
    if database is not None and not database.replace("_", "").isalnum():
        raise ValidationError(f"database {database!r}: use letters, digits and '_'")
    db = database or f"mktlab_aud_{uuid.uuid4().hex[:12]}"
    backend = ClickHouseBackend(runner, db, owned=database is None)
    try:
        return _build(
            backend, runner, db, ptable, uids, euids, ev, planned, skipped, max_values,
            as_of, event_aliases, progress, t_start,
        )  # fmt: skip
    except BaseException:
        backend.close()
        raise


def _build(backend, runner, db, ptable, uids, euids, ev, planned, skipped, max_values,
           as_of, event_aliases, progress, t_start) -> StoreParts:  # fmt: skip
    runner.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
    for t in ("bitmaps", "stage", "events"):
        runner.execute(f"DROP TABLE IF EXISTS {db}.{t}")
    runner.execute(
        f"CREATE TABLE {db}.bitmaps (id UInt32, bm {STATE_TYPE}) ENGINE = {runner.table_engine}"
    )
    runner.execute(f"CREATE TABLE {db}.stage (uid UInt32, c Nullable(UInt32)) ENGINE = Memory")
    ids = _Ids()
    plans: list = []
    if ptable is not None:
        loader = _Loader(runner, db, uids)
        loader.load(None)
        loader.state(_ROWS, "1")
        for name, kind in tqdm(planned, desc="tags", disable=not progress):
            plans.append(_tag(name, kind, ptable.column(name), loader, ids, max_values))
    if ev is not None:
        names, codes, day, _first, _last = ev
        runner.execute(
            f"CREATE TABLE {db}.events (uid UInt32, day Int32, code UInt32) "
            "ENGINE = MergeTree ORDER BY (code, day, uid)"
        )
        runner.insert_arrow(
            f"{db}.events",
            pa.table(
                {
                    "uid": pa.array(euids, type=pa.uint32()),
                    "day": pa.array(day.astype(np.int32)),
                    "code": pa.array(codes.astype(np.uint32)),
                }
            ),
        )
        runner.execute(
            f"INSERT INTO {db}.bitmaps SELECT {_EVENT_UIDS}, groupBitmapState(uid) FROM {db}.events"
        )
        backend.event_codes = {n: i for i, n in enumerate(names)}
    runner.execute(
        f"INSERT INTO {db}.bitmaps SELECT {_UNIVERSE}, groupBitmapOrState(bm) FROM {db}.bitmaps "
        f"WHERE id IN ({_ROWS}, {_EVENT_UIDS})"
    )
    runner.execute(f"DROP TABLE IF EXISTS {db}.stage")
    cards = runner.arrow(f"SELECT id, bitmapCardinality(bm) AS n FROM {db}.bitmaps").to_pydict()
    backend.cards = {int(i): int(n) for i, n in zip(cards["id"], cards["n"])}
    if uids is not None and backend.cards.get(_ROWS, 0) != uids.size:
        _raise_duplicates(uids)
    backend.universe = backend.ref(_UNIVERSE)
    tags = {plan[0]: plan[1](backend) for plan in plans}
    index = ClickHouseEvents(ev[0], ev[3], ev[4], backend) if ev is not None else None
    backend.build_seconds = time.perf_counter() - t_start
    return StoreParts(
        backend.universe, tags, index, None, skipped, as_of, event_aliases, backend=backend
    )


def _present_mask(col: pa.ChunkedArray) -> np.ndarray:
    valid = col.is_valid()
    if pa.types.is_floating(col.type):
        valid = pc.and_(valid, pc.invert(pc.fill_null(pc.is_nan(col), True)))
    return valid.to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _bits(top: int) -> int:
    return max(int(top).bit_length(), 1)


def _tag(name: str, kind: str, col: pa.ChunkedArray, loader: _Loader, ids: _Ids, max_values: int):
    """Load one tag's codes, build its states; return (name, make_tag(backend))."""
    present = _present_mask(col)
    if kind == "bool":
        if not pa.types.is_boolean(col.type):
            try:
                col = pc.cast(col, pa.bool_())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaError(
                    f"profiles: column {name!r} cannot be read as boolean: {exc}"
                ) from None
        truth = pc.fill_null(col, False).to_numpy(zero_copy_only=False).astype(bool)
        pid, tid = ids.take(), ids.take()
        loader.load(np.where(present, (truth & present).astype(np.int64), -1))
        loader.state(pid)
        loader.state(tid, "c = 1")
        return name, lambda b: BoolTag(name, b.ref(tid), b.ref(pid))
    if kind == "numeric":
        return _numeric(name, col, present, loader, ids)
    return _categorical(name, col, present, loader, ids, max_values)


def _categorical(name, col, present, loader: _Loader, ids: _Ids, max_values: int):
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
    codes = pc.fill_null(indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    has = codes >= 0
    k = len(dictionary)
    base, pid = ids.take(k), ids.take()
    loader.load(codes)
    loader.by_code(base)
    top = int(codes[has].max()) if has.any() else 0
    pbase = ids.take(_bits(top)) if ordered else 0
    if ordered:
        loader.planes(pbase, _bits(top))
    if np.array_equal(has, present):
        loader.state(pid)
    else:  # a float column read as categorical: NaN is a value but not "present"
        loader.load(np.where(present, 0, -1))
        loader.state(pid)

    def make(b):
        values = {v: b.ref(base + i) for i, v in enumerate(dictionary)}
        if ordered:
            bsi = BitSlicedIndex([b.ref(pbase + i) for i in range(_bits(top))], b.ref(pid), top)
            return CategoricalTag(name, values, b.ref(pid), order=tuple(dictionary), bsi=bsi)
        values = {v: h for v, h in values.items() if len(h)}
        return CategoricalTag(name, dict(sorted(values.items())), b.ref(pid))

    return name, make


def _numeric(name, col, present, loader: _Loader, ids: _Ids):
    from mktlab.audience.builder import _infer_kind

    if _infer_kind(col) != "numeric":
        try:
            col = pc.cast(col, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(
                f"profiles: column {name!r} cannot be read as numeric: {exc}"
            ) from None
    t = col.type
    if pa.types.is_date(t):
        dtype, raw = "date", pc.cast(pc.cast(col, pa.date32()), pa.int32())
    elif pa.types.is_timestamp(t):
        dtype = "timestamp"
        if t.tz is not None:
            col = pc.local_timestamp(col)
        raw = pc.cast(pc.cast(col, pa.timestamp("us")), pa.int64())
    elif pa.types.is_floating(t):
        dtype, raw = "float", col
    else:
        dtype, raw = "int", col
    values = pc.fill_null(raw, 0.0 if dtype == "float" else 0).to_numpy()
    if dtype == "float":
        values = values.astype(np.float64, copy=False)
    pid = ids.take()
    if not present.any():
        loader.load(None)
        loader.state(pid)
        return name, lambda b: NumericTag(
            name, dtype, BitSlicedIndex([b.ref(pid)], b.ref(pid)), vmin=0
        )
    vals = values[present]
    lo, hi = vals.min(), vals.max()
    codes = np.full(values.size, -1, dtype=np.int64)
    extra: dict = {"lo": float(lo), "hi": float(hi)}
    if dtype != "float" and int(hi) - int(lo) <= UID_MAX:
        vmin = int(lo)
        codes[present] = vals.astype(np.int64) - vmin
        extra["vmin"] = vmin
    else:  # floats and very wide integers: rank among the distinct values
        uniques, inverse = np.unique(vals, return_inverse=True)
        codes[present] = inverse
        extra["uniques"] = uniques
    top = int(codes.max()) if codes.size else 0
    top = max(top, 0)
    bits = _bits(top)
    pbase = ids.take(bits)
    loader.load(codes)
    loader.state(pid)
    loader.planes(pbase, bits)

    def make(b):
        bsi = BitSlicedIndex([b.ref(pbase + i) for i in range(bits)], b.ref(pid), top)
        return NumericTag(name, dtype, bsi, **extra)

    return name, make
