"""Bitmap construction from numpy, bitset conversions and the ClickHouse state layout."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from mktlab.audience import (
    bitmap_from_mask,
    bitmap_from_uids,
    bitmap_to_numpy,
    from_clickhouse_state,
    to_clickhouse_state,
)
from mktlab.audience._dense import (
    DenseEngine,
    ProgramAlgebra,
    bitmap_from_words,
    count,
    words_from_bitmap,
    words_from_mask,
)
from mktlab.errors import DataError, ValidationError


@pytest.mark.parametrize("density", [0.0, 0.0001, 0.03, 0.07, 0.5, 1.0])
@pytest.mark.parametrize("offset", [0, 7, 8, 65_536 * 3, 65_536 + 12_345])
def test_bitmap_from_mask_matches_flatnonzero(density, offset):
    rng = np.random.default_rng(int(density * 1e4) + offset)
    mask = rng.random(300_000) < density
    expected = BitMap((np.flatnonzero(mask) + offset).tolist())
    assert bitmap_from_mask(mask, offset) == expected


def test_bitmap_from_uids_unsorted_with_duplicates_and_range_checks():
    assert bitmap_from_uids(np.array([5, 1, 5, 2**32 - 1], dtype=np.int64)) == BitMap(
        [1, 5, 2**32 - 1]
    )
    assert bitmap_from_uids(np.array([], dtype=np.uint32)) == BitMap()
    with pytest.raises(ValidationError, match="32 bits"):
        bitmap_from_uids(np.array([2**32]))
    with pytest.raises(ValidationError, match="32 bits"):
        bitmap_from_uids(np.array([-1]))
    with pytest.raises(ValidationError, match="integers"):
        bitmap_from_uids(np.array([1.5]))
    assert bitmap_to_numpy(BitMap([3, 1])).tolist() == [1, 3]


def test_clickhouse_small_set_layout_is_byte_exact():
    # 0x00, varint(n), n little-endian UInt32 (ClickHouse RoaringBitmapWithSmallSet, small mode)
    state = to_clickhouse_state(BitMap([1, 2, 300]))
    assert state == bytes([0, 3]) + (1).to_bytes(4, "little") + (2).to_bytes(4, "little") + (
        300
    ).to_bytes(4, "little")
    assert to_clickhouse_state(BitMap()) == b"\x00\x00"
    assert from_clickhouse_state(state) == BitMap([1, 2, 300])


def test_clickhouse_large_layout_is_flag_varint_portable_roaring():
    bm = BitMap(range(0, 100_000, 3))
    state = to_clickhouse_state(bm)
    assert state[0] == 1
    # varint of the payload length: 7 bits a byte, high bit = more bytes follow
    n, pos, shift = 0, 1, 0
    while True:
        byte = state[pos]
        n |= (byte & 0x7F) << shift
        pos += 1
        shift += 7
        if not byte & 0x80:
            break
    assert n == len(state) - pos
    assert BitMap.deserialize(state[pos:]) == bm
    assert from_clickhouse_state(state) == bm
    # 33 values switch to the roaring layout, 32 stay a small set
    assert to_clickhouse_state(BitMap(range(32)))[0] == 0
    assert to_clickhouse_state(BitMap(range(33)))[0] == 1


def test_clickhouse_state_does_not_mutate_the_input():
    bm = BitMap(range(1000))
    before = bm.serialize()
    to_clickhouse_state(bm)  # run_optimize happens on a copy
    assert bm.serialize() == before


@pytest.mark.parametrize(
    "bad", [b"", b"\x02\x00", b"\x00\x02\x01\x00\x00\x00", b"\x01\x05abc", b"\x01\xff"]
)
def test_corrupt_states_raise(bad):
    with pytest.raises(DataError):
        from_clickhouse_state(bad)


@settings(max_examples=40, deadline=None)
@given(st.sets(st.integers(0, 300_000), max_size=3000))
def test_words_round_trip(values):
    bm = BitMap(values)
    words = words_from_bitmap(bm, 300_001 // 64 + 1)
    assert count(words) == len(bm)
    assert bitmap_from_words(words) == bm


def test_words_from_mask_and_dense_bitset_container():
    mask = np.zeros(200_000, dtype=bool)
    mask[::2] = True  # 32768 per chunk -> bitset containers
    mask[150_001] = True
    words = words_from_mask(mask, 200_000 // 64 + 1)
    assert bitmap_from_words(words) == BitMap(np.flatnonzero(mask).tolist())
    with pytest.raises(ValueError, match="outside the dense range"):
        words_from_bitmap(BitMap([64 * 4]), 4)


def test_program_register_reuse_gives_same_answer():
    rng = np.random.default_rng(3)
    n_words = 5000
    engine = DenseEngine(n_words)
    rows = [
        engine.add(rng.integers(0, 2**63, n_words, dtype=np.int64).view(np.uint64))
        for _ in range(4)
    ]
    universe = engine.add(np.full(n_words, np.uint64(2**64 - 1)))
    alg = ProgramAlgebra(engine, universe)
    a, b, c, d = (alg.leaf(r) for r in rows)
    # ((a & b) | (c ^ d)) - ~a, with a dead ZERO value in between
    alg.empty()
    res = alg.andnot(alg.or_(alg.and_(a, b), alg.xor(c, d)), alg.not_(a))
    prog, n_regs, reg = alg.compile(res)
    assert n_regs <= 3
    n, words = engine.run(prog, n_regs, reg, materialize=True)
    w = [r.words for r in rows]
    expected = ((w[0] & w[1]) | (w[2] ^ w[3])) & w[0]
    assert np.array_equal(words, expected)
    assert n == count(expected)
