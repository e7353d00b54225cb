"""The dense engine: uncompressed bitsets and a fused bitmap "VM" compiled with numba.

For a dense universe (uids ``0 .. U-1`` mostly in use, e.g. 100M users) a roaring
bitmap of a random tag is a chain of 8 KB bitset containers anyway, and every roaring
operation allocates a new result and walks memory once. Evaluating a five-predicate
expression with bit-sliced comparisons takes dozens of such operations, each touching
12.5 MB at 100M users. Here the expression is compiled to a small register program
and run block by block (32 KB per register, so intermediates stay in L2): every input
bitset is streamed from memory once and nothing is allocated per operation.

At scale a query is bound by memory bandwidth (each stored bitset it names is read
once), so the program is kept short (bit-sliced comparisons compile to one operation
per plane, see ``BitSlicedIndex._ge_lsb``), its loops are vectorised (AVX2/AVX-512 and
hardware popcount where the CPU has them), and the words are split across threads:
the kernel releases the GIL and each thread runs the whole program over its own range
of blocks (``DenseEngine.threads``, default all usable CPUs; one thread below about a
million uids per thread). Long per-bitset runs (32 KB blocks) matter as much as the
thread count: with 8 KB blocks and 20-30 bitsets interleaved, one core reached only
about a third of its sequential bandwidth.

Bitsets are ``uint64`` arrays: bit ``i`` of word ``j`` is uid ``64 * j + i``.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit
from numba.typed import List
from pyroaring import BitMap

from mktlab.errors import ValidationError

OP_AND, OP_OR, OP_ANDNOT, OP_XOR, OP_ZERO = 0, 1, 2, 3, 4
_BLOCK = 4096  # words per block and register (32 KB)
_PAR_MIN_WORDS = 1 << 14  # per thread; smaller universes run on the calling thread


@njit(inline="always")
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(cache=True, nogil=True, boundscheck=False)
def _run(prog, rows, start, stop, n_regs, result, out, write):  # pragma: no cover - compiled
    """Run ``prog`` over words ``start .. stop-1``; return the popcount of the result.

    ``prog[k] = (op, dst, a, b)``; an operand ``< 0`` is stored row ``-a - 1``, else a
    register. :meth:`ProgramAlgebra.compile` guarantees ``dst`` is either ``a`` (an
    in-place update) or distinct from both operands, so every loop below has provably
    non-overlapping operands and LLVM vectorises it (with overlap it falls back to
    scalar code).
    """
    regs = np.empty((max(n_regs, 1), _BLOCK), np.uint64)
    res = regs[result]
    cnt = 0
    for lo in range(start, stop, _BLOCK):
        ln = min(_BLOCK, stop - lo)
        for k in range(prog.shape[0]):
            op = prog[k, 0]
            d = prog[k, 1]
            a = prog[k, 2]
            b = prog[k, 3]
            rd = regs[d]
            if op == 4:
                for i in range(ln):
                    rd[i] = 0
                continue
            xb = rows[-b - 1][lo : lo + ln] if b < 0 else regs[b][:ln]
            if a == d:
                if op == 0:
                    for i in range(ln):
                        rd[i] &= xb[i]
                elif op == 1:
                    for i in range(ln):
                        rd[i] |= xb[i]
                elif op == 2:
                    for i in range(ln):
                        rd[i] &= ~xb[i]
                else:
                    for i in range(ln):
                        rd[i] ^= xb[i]
                continue
            xa = rows[-a - 1][lo : lo + ln] if a < 0 else regs[a][:ln]
            if op == 0:
                for i in range(ln):
                    rd[i] = xa[i] & xb[i]
            elif op == 1:
                for i in range(ln):
                    rd[i] = xa[i] | xb[i]
            elif op == 2:
                for i in range(ln):
                    rd[i] = xa[i] & ~xb[i]
            else:
                for i in range(ln):
                    rd[i] = xa[i] ^ xb[i]
        for i in range(ln):
            cnt += _popcount(res[i])
        if write:
            for i in range(ln):
                out[lo + i] = res[i]
    return cnt


@njit(cache=True)
def _count_words(words):  # pragma: no cover - compiled
    c = 0
    for i in range(words.shape[0]):
        c += _popcount(words[i])
    return c


@njit(cache=True)
def _words_from_uids(uids, n_words):  # pragma: no cover - compiled
    words = np.zeros(n_words, np.uint64)
    for u in uids:
        words[u >> 6] |= np.uint64(1) << np.uint64(u & 63)
    return words


@njit(cache=True)
def _serialize(words):  # pragma: no cover - compiled
    """Portable Roaring bytes (no run containers) of a bitset."""
    n_words = words.shape[0]
    n_chunks = (n_words + 1023) // 1024
    cards = np.zeros(n_chunks, np.int64)
    for c in range(n_chunks):
        s = 0
        for j in range(c * 1024, min(n_words, (c + 1) * 1024)):
            s += _popcount(words[j])
        cards[c] = s
    m = 0
    for c in range(n_chunks):
        if cards[c] > 0:
            m += 1
    head = 8 + 8 * m
    total = head
    for c in range(n_chunks):
        if cards[c] > 4096:
            total += 8192
        elif cards[c] > 0:
            total += 2 * cards[c]
    out = np.zeros(total, np.uint8)
    out[0] = 12346 & 255
    out[1] = 12346 >> 8
    for i in range(4):
        out[4 + i] = (m >> (8 * i)) & 255
    k = 0
    pos = head
    for c in range(n_chunks):
        card = cards[c]
        if card == 0:
            continue
        out[8 + 4 * k] = c & 255
        out[8 + 4 * k + 1] = (c >> 8) & 255
        out[8 + 4 * k + 2] = (card - 1) & 255
        out[8 + 4 * k + 3] = ((card - 1) >> 8) & 255
        for i in range(4):
            out[8 + 4 * m + 4 * k + i] = (pos >> (8 * i)) & 255
        base = c * 1024
        if card > 4096:
            for j in range(1024):
                w = words[base + j] if base + j < n_words else np.uint64(0)
                for b in range(8):
                    out[pos + 8 * j + b] = (w >> np.uint64(8 * b)) & np.uint64(255)
            pos += 8192
        else:
            for j in range(min(1024, n_words - base)):
                w = words[base + j]
                while w:
                    low = w & (~w + np.uint64(1))
                    bit = _popcount(low - np.uint64(1))
                    v = j * 64 + bit
                    out[pos] = v & 255
                    out[pos + 1] = v >> 8
                    pos += 2
                    w ^= low
        k += 1
    return out


@njit(cache=True)
def _scatter_values(codes, pos, use_pos, k, n_words):  # pragma: no cover - compiled
    out = np.zeros((k, n_words), np.uint64)
    for i in range(codes.shape[0]):
        c = codes[i]
        if c >= 0:
            u = pos[i] if use_pos else i
            out[c, u >> 6] |= np.uint64(1) << np.uint64(u & 63)
    return out


@njit(cache=True)
def _scatter_planes(codes, offset, pos, use_pos, bits, n_words):  # pragma: no cover - compiled
    out = np.zeros((bits, n_words), np.uint64)
    acc = np.zeros(64, np.uint64)
    n = codes.shape[0]
    if use_pos:
        for i in range(n):  # arbitrary row order: branch-free scatter
            c = np.uint64(np.int64(codes[i]) - offset)
            u = pos[i]
            sh = np.uint64(u & 63)
            for b in range(bits):
                out[b, u >> 6] |= ((c >> np.uint64(b)) & np.uint64(1)) << sh
        return out
    # rows are uids 0..n-1: build 64 rows at a time in registers (no data-dependent branches)
    for w in range((n + 63) // 64):
        for b in range(bits):
            acc[b] = 0
        base = w * 64
        for i in range(min(64, n - base)):
            c = np.uint64(np.int64(codes[base + i]) - offset)
            for b in range(bits):
                acc[b] |= ((c >> np.uint64(b)) & np.uint64(1)) << np.uint64(i)
        for b in range(bits):
            out[b, w] = acc[b]
    return out


def value_words(codes: np.ndarray, pos: np.ndarray | None, k: int, n_words: int) -> np.ndarray:
    """``out[v]`` = bitset of rows with ``codes == v`` (negative codes = null), one pass."""
    use = pos is not None
    return _scatter_values(codes, pos if use else np.empty(0, np.uint32), use, k, n_words)


def plane_words(
    values: np.ndarray, offset: int, pos: np.ndarray | None, bits: int, n_words: int
) -> np.ndarray:
    """``out[b]`` = bitset of rows whose code ``values - offset`` has bit ``b`` set, one pass."""
    use = pos is not None
    return _scatter_planes(
        values, np.int64(offset), pos if use else np.empty(0, np.uint32), use, bits, n_words
    )


def count(words: np.ndarray) -> int:
    """Number of set bits."""
    return int(_count_words(words))


def bitmap_from_words(words: np.ndarray) -> BitMap:
    """Convert a bitset to a :class:`~pyroaring.BitMap`."""
    if words.size == 0:
        return BitMap()
    return BitMap.deserialize(_serialize(words).tobytes())


def words_from_bitmap(bm: BitMap, n_words: int) -> np.ndarray:
    """Convert a bitmap to a bitset of ``n_words`` words (members must be < 64 * n_words)."""
    if len(bm) and bm.max() >= 64 * n_words:
        raise ValueError(f"uid {bm.max()} is outside the dense range 0..{64 * n_words - 1}")
    uids = np.frombuffer(bm.to_array(), dtype=np.uint32) if len(bm) else np.empty(0, np.uint32)
    return _words_from_uids(uids, n_words)


def words_from_mask(mask: np.ndarray, n_words: int) -> np.ndarray:
    """Bitset of a boolean mask over uids ``0 .. len(mask)-1``."""
    packed = np.packbits(mask, bitorder="little")
    out = np.zeros(n_words * 8, dtype=np.uint8)
    out[: packed.size] = packed
    return out.view("<u8").astype(np.uint64, copy=False)


class DenseBits:
    """A stored bitset plus its row in the engine; the roaring form is made on demand."""

    __slots__ = ("_bitmap", "_len", "row", "words")

    def __init__(self, words: np.ndarray, row: int):
        self.words = words
        self.row = row
        self._bitmap: BitMap | None = None
        self._len: int | None = None

    @property
    def bitmap(self) -> BitMap:
        if self._bitmap is None:
            self._bitmap = bitmap_from_words(self.words)
        return self._bitmap

    def __len__(self) -> int:
        if self._len is None:
            self._len = count(self.words)
        return self._len


class DenseEngine:
    """Holds every stored bitset (``rows``) and runs compiled programs over them.

    Parameters
    ----------
    n_words : int
        Words per bitset (``64 * n_words`` uids).
    threads : int, optional
        Threads a program runs on; default the CPUs this process may use. Every thread
        gets at least ``_PAR_MIN_WORDS`` words (about a million uids), so small
        universes run on the calling thread alone.
    """

    def __init__(self, n_words: int, threads: int | None = None):
        self.n_words = n_words
        self.threads = threads
        self.rows: List = List.empty_list(numba.types.uint64[::1])
        self._by_id: dict[int, DenseBits] = {}
        # The kernel reads ``rows`` without the GIL: appending (which may reallocate the
        # list) must not overlap a run started from another Python thread.
        self._lock = threading.Lock()

    @property
    def threads(self) -> int:
        return self._threads

    @threads.setter
    def threads(self, value: int | None) -> None:
        check_threads(value)
        self._threads = default_threads() if value is None else int(value)

    def add(self, words: np.ndarray) -> DenseBits:
        words = np.ascontiguousarray(words, dtype=np.uint64)
        if words.shape != (self.n_words,):
            raise ValueError(f"bitset has {words.shape} words, engine has {self.n_words}")
        with self._lock:
            self.rows.append(words)
            return DenseBits(words, len(self.rows) - 1)

    def add_bitmap(self, bm: BitMap) -> DenseBits:
        """Register a derived roaring bitmap (cached by identity; callers keep it alive)."""
        hit = self._by_id.get(id(bm))
        if hit is None or hit._bitmap is not bm:
            hit = self.add(words_from_bitmap(bm, self.n_words))
            hit._bitmap = bm
            self._by_id[id(bm)] = hit
        return hit

    def run(
        self, prog: np.ndarray, n_regs: int, result: int, *, materialize: bool
    ) -> tuple[int, np.ndarray | None]:
        """Run a compiled program; return its count and, if ``materialize``, its bitset.

        The words are split into one contiguous range per thread (whole blocks); each
        range is an independent run of the same program, so the answer does not depend
        on the thread count.
        """
        n_words = self.n_words
        out = np.empty(n_words if materialize else 1, dtype=np.uint64)
        n_parts = max(1, min(self.threads, n_words // _PAR_MIN_WORDS))
        per = -(-n_words // n_parts // _BLOCK) * _BLOCK
        bounds = [(lo, min(n_words, lo + per)) for lo in range(0, n_words, per)] or [(0, 0)]
        with self._lock:
            futures = []
            if len(bounds) > 1:
                pool = _pool(len(bounds) - 1)
                futures = [
                    pool.submit(_run, prog, self.rows, lo, hi, n_regs, result, out, materialize)
                    for lo, hi in bounds[1:]
                ]
            try:
                lo, hi = bounds[0]
                n = _run(prog, self.rows, lo, hi, n_regs, result, out, materialize)
            finally:  # never leave a worker writing ``out`` or reading ``rows`` behind
                n_rest = sum(f.result() for f in futures)
        return int(n + n_rest), (out if materialize else None)


def check_threads(value: object) -> None:
    """Raise :class:`ValidationError` unless ``value`` is a positive integer or ``None``."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1
    ):
        raise ValidationError(f"threads must be a positive integer or None, got {value!r}")


def default_threads() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """A shared pool with at least ``workers`` threads (re-made after a fork)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < workers:
            if _POOL is not None and _POOL[0] == os.getpid():
                _POOL[2].shutdown(wait=False)
            _POOL = (
                os.getpid(),
                workers,
                ThreadPoolExecutor(workers, thread_name_prefix="mktlab-audience"),
            )
        return _POOL[2]


class ProgramAlgebra:
    """Builds a register program instead of computing bitmaps (same API as RoaringAlgebra).

    Values are operand codes: ``-(row + 1)`` for a stored bitset, ``>= 0`` for the
    result of instruction number ``code``.
    """

    # Every operation streams a block of each operand, so fewer operations beat early
    # exits: bit-sliced comparisons use their one-chain form (BitSlicedIndex._ge_lsb).
    streaming = True

    def __init__(self, engine: DenseEngine, universe: DenseBits):
        self.engine = engine
        self.universe_bits = universe
        self.prog: list[tuple[int, int, int]] = []  # (op, a, b); dst = index

    def leaf(self, h) -> int:
        if not isinstance(h, DenseBits):
            h = self.engine.add_bitmap(h)
        return -(h.row + 1)

    def _emit(self, op: int, a: int, b: int) -> int:
        self.prog.append((op, a, b))
        return len(self.prog) - 1

    def and_(self, a: int, b: int) -> int:
        # Every value lies inside the universe, so x & (universe - y) = x - y: one
        # instruction and one stored bitset fewer (e.g. ``c != "GZ"`` or ``age < 30``
        # inside an AND); the unused complement is dropped by compile().
        for x, y in ((a, b), (b, a)):
            if y >= 0 and self.prog[y][0] == OP_ANDNOT and self.prog[y][1] == self.universe():
                return self._emit(OP_ANDNOT, x, self.prog[y][2])
        return self._emit(OP_AND, a, b)

    def or_(self, a: int, b: int) -> int:
        return self._emit(OP_OR, a, b)

    def andnot(self, a: int, b: int) -> int:
        return self._emit(OP_ANDNOT, a, b)

    def xor(self, a: int, b: int) -> int:
        return self._emit(OP_XOR, a, b)

    def union(self, xs: list[int]) -> int:
        if not xs:
            return self.empty()
        out = xs[0]
        for x in xs[1:]:
            out = self.or_(out, x)
        return out

    def empty(self) -> int:
        return self._emit(OP_ZERO, 0, 0)

    def universe(self) -> int:
        return self.leaf(self.universe_bits)

    def not_(self, a: int) -> int:
        return self.andnot(self.universe(), a)

    def known_empty(self, a: int) -> bool:
        return False

    def size_hint(self, a: int) -> int:
        return 0

    def compile(self, result: int) -> tuple[np.ndarray, int, int]:
        """Drop dead instructions, allocate registers; return (program, n_regs, result_reg).

        The destination of an instruction is its first operand's register when that
        value dies there (commutative operands are swapped to make this so), otherwise
        a register distinct from both operands: the kernel's loops then never see
        partially overlapping arrays, which would stop LLVM from vectorising them.
        """
        if result < 0:  # the answer is a stored bitset: copy it through one instruction
            result = self.or_(result, result)
        live = {result}
        for k in range(result, -1, -1):
            op, a, b = self.prog[k]
            if k in live and op != OP_ZERO:
                live.update(v for v in (a, b) if v >= 0)
        order = sorted(live)
        last: dict[int, int] = {}
        for k in order:
            op, a, b = self.prog[k]
            if op != OP_ZERO:
                for v in (a, b):
                    if v >= 0:
                        last[v] = k
        last[result] = len(self.prog)
        reg_of: dict[int, int] = {}
        free: list[int] = []
        n_regs = 0
        prog = np.zeros((len(order), 4), dtype=np.int64)
        for j, k in enumerate(order):
            op, a, b = self.prog[k]
            if op == OP_ZERO:
                ra = rb = 0
                dying: set[int] = set()
            else:
                if op != OP_ANDNOT and b >= 0 and last[b] == k and not (a >= 0 and last[a] == k):
                    a, b = b, a
                ra = reg_of[a] if a >= 0 else a
                rb = reg_of[b] if b >= 0 else b
                dying = {v for v in (a, b) if v >= 0 and last[v] == k}
            if a in dying:
                dst = ra  # in place
            elif free:
                dst = free.pop()
            else:
                dst = n_regs
                n_regs += 1
            free.extend(reg_of[v] for v in dying if reg_of[v] != dst)
            reg_of[k] = dst
            prog[j] = (op, dst, ra, rb)
        return prog, n_regs, reg_of[result]
