"""Arrow helpers for generating the synthetic world: id strings, decoding, row picks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_HEX = np.frombuffer(b"0123456789abcdef", dtype="S1")


def digits(values: np.ndarray, width: int, prefix: str = "") -> pa.Array:
    """``values`` as zero-padded decimal strings of ``width``, after ``prefix``."""
    s = pc.utf8_lpad(pa.array(values.astype(np.int64)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, s, "") if prefix else s


def uuids(rng: np.random.Generator, n: int, upper: bool = False) -> pa.Array:
    """``n`` random UUID-shaped strings (8-4-4-4-12 hex), upper-case if asked."""
    nib = rng.integers(0, 16, size=(n, 32), dtype=np.uint8)
    chars = _HEX[nib]
    out = np.full((n, 36), b"-", dtype="S1")
    out[:, [*range(8), *range(9, 13), *range(14, 18), *range(19, 23), *range(24, 36)]] = chars
    fixed = pa.Array.from_buffers(pa.binary(36), n, [None, pa.py_buffer(out.tobytes())])
    arr = fixed.cast(pa.binary()).cast(pa.string())
    return pc.utf8_upper(arr) if upper else arr


def decode(codes: np.ndarray, names: tuple[str, ...]) -> pa.Array:
    """Strings ``names[code]`` for integer ``codes``."""
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(names)).cast(pa.string())


def take(arr: pa.Array | pa.ChunkedArray, idx: np.ndarray) -> pa.Array:
    """Rows ``idx`` of ``arr`` (one contiguous array)."""
    return flat(arr).take(pa.array(idx, type=pa.int64()))


def flat(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``arr`` as one contiguous array."""
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
