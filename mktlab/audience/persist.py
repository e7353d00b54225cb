"""Saving an audience store to one DuckDB file and loading it back.

The file holds a ``meta`` document (tags, kinds, as_of, aliases), a ``bitmaps`` table of
ClickHouse-compatible roaring states (``tag, part, key, state``) and the event index;
a write goes to a temp file that is renamed into place, so a reader never sees half.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
from pyroaring import BitMap

from mktlab.audience._bitmaps import from_clickhouse_state, to_clickhouse_state
from mktlab.audience._dense import DenseEngine, check_threads, words_from_bitmap
from mktlab.audience.builder import StoreParts, wants_dense
from mktlab.audience.events import EventIndex
from mktlab.audience.tags import BitSlicedIndex, BoolTag, CategoricalTag, NumericTag, bm
from mktlab.errors import DataError
from mktlab.io import atomic_path

if TYPE_CHECKING:  # the store hands itself in; importing it at run time would be a cycle
    from mktlab.audience.tagstore import AudienceStore


def write_store(store: AudienceStore, path: str | Path) -> Path:
    """Write ``store`` to a DuckDB file atomically (temp file, then rename)."""
    path = Path(path)
    rows: list[tuple] = []

    def add(tag: str, part: str, key: str, h) -> None:
        rows.append((tag, part, key, to_clickhouse_state(bm(h))))

    meta: dict[str, Any] = {
        "version": 1,
        "as_of": None if store.as_of is None else store.as_of.isoformat(),
        "event_aliases": store.event_aliases,
        "skipped": store.skipped,
        "engine": store.engine,
        "tags": {},
    }
    add("", "universe", "", store.universe)
    for name, t in store.tags.items():
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
    if store.events is not None:
        meta["events"] = {
            "names": store.events.names,
            "first_day": store.events.first_day,
            "last_day": store.events.last_day,
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
            if store.events is not None:
                ev = pa.table({"uid": store.events.uids, "key": store.events.keys})
                con.register("ev", ev)
                con.execute("CREATE TABLE events AS SELECT * FROM ev")
        finally:
            con.close()
    return path


def read_parts(path: str | Path, *, engine: str = "auto", threads: int | None = None) -> StoreParts:
    """The parts of a store written by :func:`write_store` (``engine``, ``threads`` as in build)."""
    check_threads(threads)
    path = Path(path)
    if not path.exists():
        raise DataError(f"audience store {path} does not exist; run `mktlab audience build` first")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise DataError(f"audience store {path}: cannot open ({exc})") from exc
    try:
        meta = json.loads(con.sql("SELECT doc FROM meta").fetchall()[0][0])
        table = con.sql("SELECT tag, part, key, state FROM bitmaps").to_arrow_table()
        ev = con.sql("SELECT uid, key FROM events").to_arrow_table() if "events" in meta else None
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
    use_dense = wants_dense(engine, top, len(universe))
    dense = DenseEngine(top // 64 + 1, threads) if use_dense else None
    cache: dict[bytes, Any] = {}

    def handle(state: bytes):
        # Identical states (e.g. a no-null column's presence = all profiles) share one handle.
        if state not in cache:
            b = from_clickhouse_state(state)
            cache[state] = b if dense is None else dense.add(words_from_bitmap(b, dense.n_words))
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
    uni = universe if dense is None else dense.add(words_from_bitmap(universe, dense.n_words))
    return StoreParts(
        uni,
        tags,
        index,
        dense,
        meta.get("skipped") or {},
        meta.get("as_of"),
        meta.get("event_aliases"),
    )
