"""Tag bitmaps: categorical value bitmaps, boolean flags and bit-sliced indexes.

A numeric tag is stored as a *bit-sliced index* (O'Neil & Quass, "Improved query
performance with variant indexes", SIGMOD 1997): values are mapped to integer codes
``0 .. 2**bits - 1`` that preserve order, and plane ``i`` is the bitmap of users whose
code has bit ``i`` set. ``code >= c`` is then at most ``bits`` steps, independent of how
many distinct values there are: MSB-first with an early exit for roaring bitmaps, one
AND or OR per plane LSB-first for the dense engine (whose cost is the planes it
streams). Constants outside the codes in use are answered without reading a plane.

Codes: integers and dates use ``value - min`` when the span fits in 32 bits; floats and
wide integers use the rank among the sorted distinct values. Either way a constant in
a comparison is translated to a code threshold exactly (no rounding), so the bitmap
result equals what SQL returns.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np
from pyroaring import BitMap

Value = int | float | str | bool


def bm(h) -> BitMap:
    """The roaring form of a stored bitmap handle (a BitMap or a dense engine row)."""
    return h if isinstance(h, BitMap) else h.bitmap


class RoaringAlgebra:
    """Bitmap operations on pyroaring bitmaps; never mutates its inputs.

    The dense engine has the same interface but emits a program instead
    (:class:`mktlab.audience._dense.ProgramAlgebra`), so the comparison algorithms below
    are written once.
    """

    streaming = False  # see ProgramAlgebra.streaming

    def __init__(self, universe):
        self._universe = bm(universe)
        self._shared: dict[int, BitMap] = {id(self._universe): self._universe}

    def leaf(self, h) -> BitMap:
        b = bm(h)
        self._shared[id(b)] = b  # stored bitmaps: results that are one of these get copied
        return b

    def is_shared(self, a: BitMap) -> bool:
        return self._shared.get(id(a)) is a

    def and_(self, a: BitMap, b: BitMap) -> BitMap:
        return a & b

    def or_(self, a: BitMap, b: BitMap) -> BitMap:
        return a | b

    def andnot(self, a: BitMap, b: BitMap) -> BitMap:
        return a - b

    def xor(self, a: BitMap, b: BitMap) -> BitMap:
        return a ^ b

    def union(self, xs: list[BitMap]) -> BitMap:
        return BitMap.union(*xs) if xs else BitMap()

    def empty(self) -> BitMap:
        return BitMap()

    def universe(self) -> BitMap:
        return self._universe

    def not_(self, a: BitMap) -> BitMap:
        return self._universe - a

    def known_empty(self, a: BitMap) -> bool:
        return not a

    def size_hint(self, a: BitMap) -> int:
        return len(a)


class BitSlicedIndex:
    """A bit-sliced index over integer codes.

    Parameters
    ----------
    planes : list of bitmap handles
        ``planes[i]`` = users whose code has bit ``i`` set (least significant first).
        Every plane is a subset of ``ebm`` (users without a value hold code 0).
    ebm : bitmap handle
        Existence bitmap: users that have a (non-null) value.
    top : int, optional
        No code exceeds ``top`` (default ``2**bits - 1``): comparisons with constants
        outside ``0 .. top`` are answered without touching a plane.
    """

    def __init__(self, planes: list, ebm, top: int | None = None):
        self.planes = planes
        self.ebm = ebm
        full = (1 << len(planes)) - 1
        self.top = full if top is None else min(max(int(top), 0), full)

    @property
    def bits(self) -> int:
        return len(self.planes)

    def ge(self, c: int, alg):
        """Users with ``code >= c``."""
        if c <= 0:
            return alg.leaf(self.ebm)
        if c > self.top:
            return alg.empty()
        if alg.streaming:
            return self._ge_lsb(c, alg)
        # O'Neil & Quass range algorithm, MSB first: the early exit when ``eq`` runs
        # empty pays off when every operation materialises a bitmap.
        gt = None
        eq = alg.leaf(self.ebm)
        low = (c & -c).bit_length() - 1  # below the lowest set bit of c, every code in eq is >= c
        for i in range(self.bits - 1, low - 1, -1):
            plane = alg.leaf(self.planes[i])
            if (c >> i) & 1:
                eq = alg.and_(eq, plane)
            else:
                hit = alg.and_(eq, plane)
                gt = hit if gt is None else alg.or_(gt, hit)
                eq = alg.andnot(eq, plane)
            if alg.known_empty(eq):
                return gt if gt is not None else alg.empty()
        return eq if gt is None else alg.or_(gt, eq)

    def _ge_lsb(self, c: int, alg):
        """``code >= c`` for ``0 < c < 2**bits`` in one operation per plane, LSB first.

        With ``R_i`` = users whose code's low ``i + 1`` bits are ``>=`` those of ``c``:
        ``R_i = P_i & R_(i-1)`` where ``c`` has bit ``i`` set, else ``P_i | R_(i-1)``.
        Below the lowest set bit of ``c`` everyone qualifies, so the chain starts at
        that bit's plane, and since planes lie inside ``ebm`` so does the result. A
        single chain (``bits - low - 1`` instructions, one register) instead of the
        MSB-first ``eq``/``gt`` pair (up to three per plane).
        """
        low = (c & -c).bit_length() - 1
        acc = alg.leaf(self.planes[low])
        for i in range(low + 1, self.bits):
            plane = alg.leaf(self.planes[i])
            acc = alg.and_(acc, plane) if (c >> i) & 1 else alg.or_(acc, plane)
        return acc

    def eq(self, c: int, alg):
        """Users with ``code == c``."""
        if c < 0 or c > self.top:
            return alg.empty()
        if alg.streaming and c:
            # Start from a plane of a set bit (planes lie inside ebm): one step fewer.
            first = c.bit_length() - 1
            eq = alg.leaf(self.planes[first])
            for i in range(self.bits - 1, -1, -1):
                if i != first:
                    plane = alg.leaf(self.planes[i])
                    eq = alg.and_(eq, plane) if (c >> i) & 1 else alg.andnot(eq, plane)
            return eq
        eq = alg.leaf(self.ebm)
        for i in range(self.bits - 1, -1, -1):
            plane = alg.leaf(self.planes[i])
            eq = alg.and_(eq, plane) if (c >> i) & 1 else alg.andnot(eq, plane)
            if alg.known_empty(eq):
                break
        return eq

    def lt(self, c: int, alg):
        """Users with ``code < c``."""
        if c <= 0:
            return alg.empty()
        if c > self.top:
            return alg.leaf(self.ebm)
        return alg.andnot(alg.leaf(self.ebm), self.ge(c, alg))

    def between(self, lo: int, hi: int, alg):
        """Users with ``lo <= code <= hi``."""
        lo, hi = max(lo, 0), min(hi, self.top)
        if lo > hi:
            return alg.empty()
        if hi == self.top:
            return self.ge(lo, alg)
        if lo == 0:
            return self.lt(hi + 1, alg)
        return alg.andnot(self.ge(lo, alg), self.ge(hi + 1, alg))


@dataclass
class CategoricalTag:
    """One bitmap per value; ``order`` (and ``bsi`` over the order) if ordered."""

    name: str
    values: dict  # value -> bitmap handle
    present: object
    order: tuple[str, ...] | None = None
    bsi: BitSlicedIndex | None = None
    kind: str = field(default="categorical", init=False)

    def describe(self) -> str:
        shown = ", ".join(list(self.values)[:6]) + (", ..." if len(self.values) > 6 else "")
        return f"{'ordered ' if self.order else ''}categorical ({len(self.values)} values: {shown})"


@dataclass
class BoolTag:
    """A boolean flag: ``true`` holds the users where it is set."""

    name: str
    true: object
    present: object
    kind: str = field(default="bool", init=False)

    def describe(self) -> str:
        return "boolean"


@dataclass
class NumericTag:
    """A numeric (int, float, date or timestamp) tag stored as a bit-sliced index.

    ``vmin`` is set for offset codes (``code = value - vmin``), ``uniques`` for rank
    codes (``code = index into the sorted distinct values``). Dates and timestamps are
    held as int64 days / microseconds since the epoch.
    """

    name: str
    dtype: str  # "int", "float", "date", "timestamp"
    bsi: BitSlicedIndex
    vmin: int | None = None
    uniques: np.ndarray | None = None
    lo: float | None = None
    hi: float | None = None
    kind: str = field(default="numeric", init=False)

    @property
    def present(self):
        return self.bsi.ebm

    def describe(self) -> str:
        shown = (
            f"{_fmt(self, self.lo)} .. {_fmt(self, self.hi)}" if self.lo is not None else "empty"
        )
        return f"{self.dtype} ({shown}, {self.bsi.bits}-bit index)"

    @property
    def n_codes(self) -> int:
        if self.uniques is not None:
            return len(self.uniques)
        return 1 << self.bsi.bits

    def code_ge(self, x: float | int) -> int:
        """Smallest code whose value is ``>= x``."""
        if self.uniques is not None:
            return int(np.searchsorted(self.uniques, x, side="left"))
        return _ceil(x) - self.vmin  # type: ignore[operator]

    def code_gt(self, x: float | int) -> int:
        """Smallest code whose value is ``> x``."""
        if self.uniques is not None:
            return int(np.searchsorted(self.uniques, x, side="right"))
        return math.floor(x) + 1 - self.vmin  # type: ignore[operator]

    def code_eq(self, x: float | int) -> int | None:
        """The code of value ``x``, or None when no user can hold exactly ``x``."""
        if self.uniques is not None:
            i = int(np.searchsorted(self.uniques, x, side="left"))
            return i if i < len(self.uniques) and self.uniques[i] == x else None
        if isinstance(x, float) and not x.is_integer():
            return None
        return int(x) - self.vmin  # type: ignore[operator]

    def compare(self, op: str, x: float | int, alg):
        """Users whose value satisfies ``value OP x``."""
        b = self.bsi
        if op == ">=":
            return b.ge(self.code_ge(x), alg)
        if op == ">":
            return b.ge(self.code_gt(x), alg)
        if op == "<":
            return b.lt(self.code_ge(x), alg)
        if op == "<=":
            return b.lt(self.code_gt(x), alg)
        code = self.code_eq(x)
        if op == "==":
            return alg.empty() if code is None else b.eq(code, alg)
        if op == "!=":
            ebm = alg.leaf(b.ebm)
            return ebm if code is None else alg.andnot(ebm, b.eq(code, alg))
        raise ValueError(op)

    def between(self, lo: float | int, hi: float | int, alg):
        c_lo, c_hi = self.code_ge(lo), self.code_gt(hi) - 1
        return self.bsi.between(max(c_lo, 0), c_hi, alg)


def _ceil(x: float | int) -> int:
    return x if isinstance(x, int) else math.ceil(x)


def _fmt(tag: NumericTag, v: float | None) -> str:
    if v is None:
        return "?"
    if tag.dtype == "date":
        return str(dt.date(1970, 1, 1) + dt.timedelta(days=int(v)))
    if tag.dtype == "timestamp":
        return str(np.datetime64(int(v), "us"))
    return f"{v:g}" if tag.dtype == "float" else str(int(v))


Tag = CategoricalTag | BoolTag | NumericTag
