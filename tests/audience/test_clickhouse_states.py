"""Saved audiences cross between pyroaring and ClickHouse in ClickHouse's own state format.

Checked against what chdb really writes: ``groupBitmapState`` of ≤ 32 values is a small
set (``0x00``, a varint count, the values in insertion order), larger sets are ``0x01``, a
varint length and CRoaring's portable bytes (``Roaring64Map`` for UInt64).
"""

from __future__ import annotations

import numpy as np
import pytest
from pyroaring import BitMap, BitMap64

from mktlab.audience import (
    AudienceCatalog,
    AudienceStore,
    from_clickhouse_state,
    to_clickhouse_state,
)
from mktlab.audience.chconn import ChdbRunner
from mktlab.errors import DataError

pytest.importorskip("chdb", reason="needs the 'scale' extra (chdb)")


@pytest.fixture(scope="module")
def ch():
    return ChdbRunner()


def state_of(ch, values, width=32) -> bytes:
    """chdb's own ``groupBitmapState`` over ``values`` (in the given order)."""
    return ch.raw(
        f"SELECT groupBitmapState(x) FROM (SELECT arrayJoin({{v:Array(UInt{width})}}) AS x)",
        {"v": [int(v) for v in values]},
    )


SETS = {
    "empty": [],
    "one": [7],
    "32 values": list(range(0, 320, 10)),
    "33 values": list(range(0, 330, 10)),
    "a run": list(range(1000, 6000)),
    "sparse": [i * 65_537 for i in range(200)],
    "dense chunk": list(range(0, 200_000, 3)),
    "top uid": [0, 2**32 - 1, *range(100, 140)],
}


@pytest.mark.parametrize("name", list(SETS))
def test_pyroaring_bytes_are_chdb_bytes(ch, name):
    values = SETS[name]
    ours = to_clickhouse_state(BitMap(values))
    assert ours == state_of(ch, values), name  # sorted input: byte for byte
    assert ours[0] == (0 if len(values) <= 32 else 1)
    if len(values) <= 32:
        assert ours[1] == len(values)
        assert len(ours) == 2 + 4 * len(values)


def test_small_set_layout_and_insertion_order(ch):
    raw = state_of(ch, [5, 4, 3])
    assert raw == bytes.fromhex("0003" + "05000000" + "04000000" + "03000000")
    assert from_clickhouse_state(raw) == BitMap([3, 4, 5])  # any order reads back as the set


@pytest.mark.parametrize("values", [[1, 2**40], list(range(2**33, 2**33 + 40)), [3] * 5])
def test_uint64_states(ch, values):
    ours = to_clickhouse_state(BitMap64(values))
    theirs = state_of(ch, values, 64)
    if len(set(values)) > 32:
        assert ours == theirs
    assert from_clickhouse_state(theirs, width=64) == BitMap64(values)
    assert from_clickhouse_state(ours, width=64) == BitMap64(values)
    if len(set(values)) <= 32:
        assert len(ours) == 2 + 8 * len(set(values))


@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, 70_000])
def test_round_trip_through_clickhouse_functions(ch, n):
    rng = np.random.default_rng(n)
    values = sorted(set(rng.integers(0, 2**32, size=n, dtype=np.uint64).tolist()))
    state = to_clickhouse_state(BitMap(values))
    cast = "CAST(unhex({h:String}) AS AggregateFunction(groupBitmap, UInt32))"
    out = ch.arrow(
        f"SELECT bitmapCardinality(s) AS n, bitmapToArray(s) AS a FROM (SELECT {cast} AS s)",
        {"h": state.hex()},
    )
    assert out.column("n")[0].as_py() == len(values)
    assert out.column("a")[0].as_py() == values
    # and back: a state ClickHouse computes from ours is read by pyroaring
    back = ch.raw(
        f"SELECT bitmapOr(s, bitmapBuild([toUInt32(5)])) FROM (SELECT {cast} AS s)",
        {"h": state.hex()},
    )
    assert from_clickhouse_state(back) == BitMap([*values, 5])


def test_bad_states_are_refused():
    with pytest.raises(DataError, match="small set"):
        from_clickhouse_state(b"\x00\x02\x01\x00\x00\x00")
    with pytest.raises(DataError, match="expected"):
        from_clickhouse_state(b"\x01\x05abc")
    with pytest.raises(DataError, match="kind byte"):
        from_clickhouse_state(b"\x07\x00")
    with pytest.raises(DataError, match="roaring"):
        from_clickhouse_state(b"\x01\x03abc")


def test_saved_audiences_cross_both_ways(tmp_path):
    import pandas as pd

    profiles = pd.DataFrame(
        {"uid": np.arange(0, 5000, dtype=np.uint32) * 3, "x": np.arange(5000) % 7}
    )
    catalog = AudienceCatalog(tmp_path / "c.duckdb")
    store = AudienceStore.build(profiles, engine="chdb", catalog=catalog)
    store.save("big", "x >= 2")  # 3,571 members: a roaring state
    store.save("tiny", "x == 3 & x < 0 | x == 4 & ~(x != 4) & x >= 4")  # all x == 4
    catalog.save("few", "(hand-made)", BitMap([9, 3, 12]))  # a small set
    ch = store.clickhouse
    assert ch.push_saved(catalog) == ["big", "few", "tiny"]
    db = ch.db
    rows = ch.runner.arrow(
        f"SELECT name, bitmapCardinality(bm) AS n, bitmapToArray(bm) AS a "
        f"FROM {db}.saved_audiences FINAL ORDER BY name"
    ).to_pylist()
    for row in rows:
        assert row["a"] == list(catalog.get(row["name"]).bitmap)
        assert row["n"] == catalog.get(row["name"]).size
    # ClickHouse writes one itself; it comes back into a (fresh) catalog
    ch.runner.execute(
        f"INSERT INTO {db}.saved_audiences SELECT 'ch_made', 'x == 1', count(), "
        f"groupBitmapState(toUInt32(number * 3)) FROM numbers(40) WHERE number % 7 = 1"
    )
    other = AudienceCatalog(tmp_path / "other.duckdb")
    assert ch.pull_saved(other) == ["big", "ch_made", "few", "tiny"]
    assert other.get("ch_made").bitmap == BitMap([3 * i for i in range(40) if i % 7 == 1])
    assert other.get("big").bitmap == catalog.get("big").bitmap
    assert other.get("few").bitmap == BitMap([3, 9, 12])
    # re-pushing replaces, never duplicates
    catalog.save("few", "(hand-made)", BitMap([1]))
    ch.push_saved(catalog, ["few"])
    assert ch.pull_saved(other, ["few"]) == ["few"]
    assert other.get("few").bitmap == BitMap([1])
    store.close()
