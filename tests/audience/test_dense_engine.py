"""The dense engine's kernel: threads, register allocation and bit-sliced comparisons.

Results must never depend on the thread count, the block split or which comparison
algorithm (LSB-first chain for the dense engine, MSB-first with early exit for roaring)
built the program; constants outside a tag's range must be answered without planes.
"""

from __future__ import annotations

import threading

import duckdb
import numpy as np
import pandas as pd
import pytest
from pyroaring import BitMap

import mktlab.audience._dense as dense_mod
from mktlab.audience import AudienceCatalog, AudienceStore, to_sql
from mktlab.audience._dense import (
    OP_ZERO,
    DenseEngine,
    ProgramAlgebra,
    bitmap_from_words,
    count,
    words_from_bitmap,
)
from mktlab.audience.tags import BitSlicedIndex, RoaringAlgebra
from mktlab.errors import ValidationError


def _random_program(engine, rows, universe, rng, n_ops=40):
    """A random DAG over ``rows`` plus its numpy reference; returns (alg, result, words)."""
    alg = ProgramAlgebra(engine, universe)
    values = [(alg.leaf(r), r.words) for r in rows]
    full = universe.words
    for _ in range(n_ops):
        i, j = rng.integers(0, len(values), 2)
        (a, wa), (b, wb) = values[i], values[j]
        op = rng.integers(0, 6)
        if op == 0:
            values.append((alg.and_(a, b), wa & wb))
        elif op == 1:
            values.append((alg.or_(a, b), wa | wb))
        elif op == 2:
            values.append((alg.andnot(a, b), wa & ~wb))
        elif op == 3:
            values.append((alg.xor(a, b), wa ^ wb))
        elif op == 4:
            values.append((alg.not_(a), full & ~wa))
        else:
            values.append((alg.empty(), np.zeros_like(wa)))
    # Prefer a late value so most of the program is live.
    k = len(values) - 1 - int(rng.integers(0, 3))
    return alg, values[k][0], values[k][1]


@pytest.mark.parametrize("seed", range(6))
def test_threads_and_block_splits_give_the_single_thread_answer(monkeypatch, seed):
    rng = np.random.default_rng(seed)
    # Odd sizes: the last block and the last thread's range are partial.
    n_words = int(rng.integers(3 * 4096 + 1, 9 * 4096))
    engine = DenseEngine(n_words, threads=1)
    rows = [
        engine.add(rng.integers(0, 2**63, n_words, dtype=np.int64).view(np.uint64))
        for _ in range(6)
    ]
    universe = engine.add(np.full(n_words, np.uint64(2**64 - 1)))
    alg, res, expected = _random_program(engine, rows, universe, rng)
    prog, n_regs, reg = alg.compile(res)

    n1, w1 = engine.run(prog, n_regs, reg, materialize=True)
    assert np.array_equal(w1, expected)
    assert n1 == count(expected)
    monkeypatch.setattr(dense_mod, "_PAR_MIN_WORDS", 1)  # split even this small universe
    for threads in (2, 3, 5):
        engine.threads = threads
        assert engine.run(prog, n_regs, reg, materialize=False) == (n1, None)
        n, w = engine.run(prog, n_regs, reg, materialize=True)
        assert n == n1
        assert np.array_equal(w, expected)


@pytest.mark.parametrize("n_words", [1, 100, 4096, 4097, 8193])
def test_splits_of_tiny_universes(monkeypatch, n_words):
    monkeypatch.setattr(dense_mod, "_PAR_MIN_WORDS", 1)
    rng = np.random.default_rng(n_words)
    engine = DenseEngine(n_words, threads=3)
    rows = [
        engine.add(rng.integers(0, 2**63, n_words, dtype=np.int64).view(np.uint64))
        for _ in range(3)
    ]
    universe = engine.add(np.full(n_words, np.uint64(2**64 - 1)))
    alg, res, expected = _random_program(engine, rows, universe, rng, n_ops=12)
    n, words = engine.run(*alg.compile(res), materialize=True)
    assert np.array_equal(words, expected)
    assert n == count(expected)


def test_small_universes_stay_on_the_calling_thread(monkeypatch):
    calls = []
    real = dense_mod._pool
    monkeypatch.setattr(dense_mod, "_pool", lambda k: calls.append(k) or real(k))
    engine = DenseEngine(100, threads=4)
    row = engine.add(np.arange(100, dtype=np.uint64))
    alg = ProgramAlgebra(engine, row)
    prog, n_regs, reg = alg.compile(alg.leaf(row))
    assert engine.run(prog, n_regs, reg, materialize=False)[0] == count(row.words)
    assert calls == []


def test_register_allocation_never_overlaps_a_destination_with_an_operand():
    rng = np.random.default_rng(11)
    engine = DenseEngine(64)
    rows = [
        engine.add(rng.integers(0, 2**63, 64, dtype=np.int64).view(np.uint64)) for _ in range(4)
    ]
    universe = engine.add(np.full(64, np.uint64(2**64 - 1)))
    for _ in range(50):
        alg, res, expected = _random_program(engine, rows, universe, rng, n_ops=30)
        prog, n_regs, reg = alg.compile(res)
        for op, dst, a, b in prog.tolist():
            if op == OP_ZERO:
                continue
            # in place (dst is the first operand) or disjoint from both: never dst == b alone
            assert dst != b or a == b, (op, dst, a, b)
        n, words = engine.run(prog, n_regs, reg, materialize=True)
        assert np.array_equal(words, expected)
        assert n == count(expected)


def test_threads_option_is_validated_and_settable():
    p = pd.DataFrame({"uid": np.arange(5, dtype=np.uint32), "x": [1, 2, 3, 4, 5]})
    with pytest.raises(ValidationError, match="threads"):
        AudienceStore.build(p, engine="dense", threads=0)
    store = AudienceStore.build(p, engine="dense", threads=3, catalog=AudienceCatalog(":x:"))
    assert store.threads == 3
    store.threads = None
    assert store.threads == dense_mod.default_threads()
    with pytest.raises(ValidationError, match="threads"):
        store.threads = "2"
    assert AudienceStore.build(p, engine="roaring").threads == 1


def test_concurrent_queries_from_python_threads(monkeypatch):
    monkeypatch.setattr(dense_mod, "_PAR_MIN_WORDS", 64)
    rng = np.random.default_rng(5)
    n = 200_000
    p = pd.DataFrame(
        {
            "uid": np.arange(n, dtype=np.uint32),
            "x": rng.integers(0, 1000, n),
            "c": rng.choice(["a", "b", "c"], n),
        }
    )
    store = AudienceStore.build(p, engine="dense", threads=2, catalog=AudienceCatalog(":x:"))
    exprs = ["x >= 321", 'x between 10 and 700 & c != "b"', "x < 5 | x > 990"]
    expected = [
        int((p.x >= 321).sum()),
        int(((p.x >= 10) & (p.x <= 700) & (p.c != "b")).sum()),
        int(((p.x < 5) | (p.x > 990)).sum()),
    ]
    errors = []

    def work(k):
        try:
            for i in range(20):
                j = (i + k) % 3
                assert store.size(exprs[j]) == expected[j]
                if i % 5 == 0:  # rows get appended to the engine meanwhile
                    store._dense.add_bitmap(BitMap([k, i]))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# ---------------------------------------------------------------- bit-sliced comparisons
def _bsi_both(codes: np.ndarray, present: np.ndarray, top: int | None):
    """The same index for both algebras: (roaring alg, bsi), (engine, program alg, bsi)."""
    bits = max(int(codes.max()).bit_length(), 1)
    planes = [np.flatnonzero(present & ((codes >> b) & 1).astype(bool)) for b in range(bits)]
    ebm = BitMap(np.flatnonzero(present).tolist())
    r_planes = [BitMap(p.tolist()) for p in planes]
    roaring = BitSlicedIndex(r_planes, ebm, top)
    n_words = codes.size // 64 + 1
    engine = DenseEngine(n_words, threads=1)
    d_planes = [engine.add(words_from_bitmap(p, n_words)) for p in r_planes]
    d_ebm = engine.add(words_from_bitmap(ebm, n_words))
    universe = engine.add(words_from_bitmap(BitMap(range(codes.size)), n_words))
    dense = BitSlicedIndex(d_planes, d_ebm, top)
    return (RoaringAlgebra(BitMap(range(codes.size))), roaring), (engine, universe, dense)


def _dense_eval(engine, universe, build):
    alg = ProgramAlgebra(engine, universe)
    res = build(alg)
    prog, n_regs, reg = alg.compile(res)
    n, words = engine.run(prog, n_regs, reg, materialize=True)
    out = bitmap_from_words(words)
    assert len(out) == n
    return out, prog


@pytest.mark.parametrize("seed", range(4))
def test_lsb_and_msb_comparisons_agree_with_numpy(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    top = int(rng.integers(1, 300))
    codes = rng.integers(0, top + 1, n)
    present = rng.random(n) < 0.9
    codes[~present] = 0  # the store's convention: users without a value hold code 0
    (ralg, rbsi), (engine, universe, dbsi) = _bsi_both(codes, present, top)
    consts = sorted(
        {
            -3,
            -1,
            0,
            1,
            2,
            top - 1,
            top,
            top + 1,
            top + 7,
            2**dbsi.bits,
            *rng.integers(0, top + 1, 8).tolist(),
        }
    )
    for c in consts:
        for name, want in (
            ("ge", present & (codes >= c)),
            ("lt", present & (codes < c)),
            ("eq", present & (codes == c)),
        ):
            expected = BitMap(np.flatnonzero(want).tolist())
            assert getattr(rbsi, name)(c, ralg) == expected, (name, c)
            got, _ = _dense_eval(
                engine, universe, lambda alg, m=name, c=c: getattr(dbsi, m)(c, alg)
            )
            assert got == expected, (name, c)
    for lo, hi in [
        (-5, 3),
        (0, top),
        (-1, top + 9),
        (2, 1),
        (top, top),
        (top + 1, top + 5),
        (3, top - 2),
        (5, 5),
    ]:
        want = present & (codes >= lo) & (codes <= hi)
        expected = BitMap(np.flatnonzero(want).tolist())
        assert rbsi.between(lo, hi, ralg) == expected, (lo, hi)
        got, _ = _dense_eval(engine, universe, lambda alg, lo=lo, hi=hi: dbsi.between(lo, hi, alg))
        assert got == expected, (lo, hi)


def test_constants_outside_the_range_touch_no_plane():
    codes = np.array([0, 3, 5, 2, 5, 1] * 20)
    present = np.ones(codes.size, dtype=bool)
    _, (engine, universe, bsi) = _bsi_both(codes, present, top=5)
    plane_rows = {-(p.row + 1) for p in bsi.planes}
    for build in (
        lambda alg: bsi.ge(6, alg),
        lambda alg: bsi.ge(0, alg),
        lambda alg: bsi.lt(6, alg),
        lambda alg: bsi.lt(0, alg),
        lambda alg: bsi.eq(6, alg),
        lambda alg: bsi.eq(-1, alg),
        lambda alg: bsi.between(-2, 5, alg),
        lambda alg: bsi.between(4, 3, alg),
        lambda alg: bsi.between(6, 9, alg),
    ):
        _, prog = _dense_eval(engine, universe, build)
        assert not plane_rows & set(prog[:, 2:].ravel().tolist())
    # ge(c) with c in range is one instruction per plane from c's lowest set bit up
    alg = ProgramAlgebra(engine, universe)
    bsi.ge(2, alg)
    assert len(alg.prog) == bsi.bits - 2


@pytest.mark.parametrize("engine", ["roaring", "dense"])
def test_numeric_boundaries_match_sql(engine):
    p = pd.DataFrame(
        {
            "uid": np.arange(12, dtype=np.uint32),
            "x": pd.array([3, 7, 10, None, 3, 5, 10, 8, None, 4, 6, 9], dtype="Int64"),
            "f": [0.5, 2.0, None, 7.25, 7.25, 0.5, 3.0, 1.0, 2.0, None, 6.0, 4.5],
        }
    )
    store = AudienceStore.build(p, engine=engine, catalog=AudienceCatalog(":x:"))
    con = duckdb.connect()
    con.register("profiles", p)
    exprs = [
        f"x {op} {v}"
        for op in ("==", "!=", ">=", ">", "<=", "<")
        for v in (-1, 2, 3, 4, 10, 11, 100, 2.5, 10.5)
    ] + [
        "x between 3 and 10",
        "x between 2 and 11",
        "x between 10 and 3",
        "x between 3 and 3",
        "x between 10 and 10",
        "x between 11 and 20",
        "x between -5 and 2",
        "x between 3.5 and 9.5",
        "x in (3, 10, 42)",
        "~(x >= 3)",
        "f >= 0.5",
        "f > 7.25",
        "f < 0.5",
        "f <= 7.25",
        "f between 7.25 and 100",
        "f between 0.5 and 0.5",
        "f == 7.25",
        "f != 7.25",
        "f between 8 and 1",
    ]
    for expr in exprs:
        expected = sorted(
            int(r[0]) for r in con.execute(to_sql(expr, profiles="profiles")).fetchall()
        )
        assert sorted(store.evaluate(expr)) == expected, expr
        assert store.size(expr) == len(expected), expr
    con.close()


def test_and_with_a_complement_skips_the_universe():
    rng = np.random.default_rng(2)
    n_words = 300
    engine = DenseEngine(n_words)
    universe_words = rng.integers(0, 2**63, n_words, dtype=np.int64).view(np.uint64)
    universe = engine.add(universe_words)
    a = engine.add(universe_words & rng.integers(0, 2**63, n_words, dtype=np.int64).view(np.uint64))
    b = engine.add(universe_words & rng.integers(0, 2**63, n_words, dtype=np.int64).view(np.uint64))
    alg = ProgramAlgebra(engine, universe)
    res = alg.and_(alg.not_(alg.leaf(b)), alg.leaf(a))  # (U - b) & a  ->  a - b
    prog, n_regs, reg = alg.compile(res)
    assert len(prog) == 1
    assert alg.universe() not in prog[:, 2:]
    n, words = engine.run(prog, n_regs, reg, materialize=True)
    assert np.array_equal(words, a.words & ~b.words)
    assert n == count(words)
    # a complement used on its own still reads the universe
    alg = ProgramAlgebra(engine, universe)
    prog, n_regs, reg = alg.compile(alg.not_(alg.leaf(b)))
    assert np.array_equal(
        engine.run(prog, n_regs, reg, materialize=True)[1], universe_words & ~b.words
    )
