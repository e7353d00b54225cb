"""Salted, deterministic hashing of unit ids into buckets (compiled, vectorised).

The hash
--------
A unit's bucket for a salt is::

    h      = MurmurHash3_x86_32(utf8(f"{salt}:{unit}"), seed=0)     # unsigned 32-bit
    bucket = (h * n_buckets) >> 32                                  # in [0, n_buckets)

``unit`` is the id as text: strings as they are, integers in decimal (``42`` and
``"42"`` land in the same bucket). MurmurHash3_x86_32 is the hash Optimizely buckets
with and is available almost everywhere (``sklearn.utils.murmurhash3_32``, the ``mmh3``
package, ClickHouse ``murmurHash3_32``), so any system can reproduce an assignment from
the salt and the id alone. It depends on no process state (unlike Python's ``hash``),
so it is stable across runs, processes and machines. The multiply-shift mapping takes
the bucket from the high bits and has no modulo bias.

Ids are hashed straight out of an Arrow string buffer by a numba kernel, so no Python
object is touched per id.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numba
import numpy as np
import pandas as pd
import pyarrow as pa

from mktlab.errors import DataError, ValidationError

N_BUCKETS = 10_000


# All arithmetic is in uint64 masked to 32 bits: mixing numba's uint32 and int64 types
# silently unifies to float64 and made an earlier version of this kernel 20x slower.
_M32 = np.uint64(0xFFFFFFFF)


@numba.njit(cache=True, nogil=True, inline="always")
def _mix_k(k):  # pragma: no cover - compiled
    k = (k * np.uint64(0xCC9E2D51)) & _M32
    k = ((k << np.uint64(15)) | (k >> np.uint64(17))) & _M32
    return (k * np.uint64(0x1B873593)) & _M32


@numba.njit(cache=True, nogil=True, inline="always")
def _mix_h(h, k):  # pragma: no cover - compiled
    h ^= _mix_k(k)
    h = ((h << np.uint64(13)) | (h >> np.uint64(19))) & _M32
    return (h * np.uint64(5) + np.uint64(0xE6546B64)) & _M32


@numba.njit(cache=True, nogil=True, inline="always")
def _fmix(h, length):  # pragma: no cover - compiled
    h ^= np.uint64(length) & _M32
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & _M32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & _M32
    h ^= h >> np.uint64(16)
    return h


@numba.njit(cache=True, nogil=True, inline="always")
def _stream(h, k, filled, data, start, stop):  # pragma: no cover - compiled
    """Feed ``data[start:stop]`` into the state (hash ``h``, partial block ``k``)."""
    for j in range(start, stop):
        k |= np.uint64(data[j]) << np.uint64(8 * filled)
        filled += 1
        if filled == 4:
            h = _mix_h(h, k)
            k = np.uint64(0)
            filled = 0
    return h, k, filled


@numba.njit(cache=True, nogil=True)
def _murmur3_kernel(prefix, data, offsets, seed, out):  # pragma: no cover - compiled
    """MurmurHash3_x86_32 of ``prefix + data[offsets[i]:offsets[i+1]]`` for every row i."""
    # the salt prefix is the same for every row: hash it once and resume from its state
    h0, k0, f0 = _stream(np.uint64(seed), np.uint64(0), 0, prefix, 0, prefix.shape[0])
    n_prefix = prefix.shape[0]
    for row in range(out.shape[0]):
        s = offsets[row]
        e = offsets[row + 1]
        h, k, filled = _stream(h0, k0, f0, data, s, e)
        if filled:
            h ^= _mix_k(k)
        out[row] = np.uint32(_fmix(h, n_prefix + e - s))


@numba.njit(cache=True, nogil=True)
def _murmur3_int_kernel(prefix, values, seed, out):  # pragma: no cover - compiled
    """Hash of ``prefix + str(values[i])`` (decimal text) without building strings."""
    h0, k0, f0 = _stream(np.uint64(seed), np.uint64(0), 0, prefix, 0, prefix.shape[0])
    n_prefix = prefix.shape[0]
    buf = np.empty(24, dtype=np.uint8)
    digits = np.empty(24, dtype=np.uint8)
    for row in range(out.shape[0]):
        v = values[row]
        neg = v < 0
        nd = 0
        if v == -9223372036854775808:  # |min int64| does not fit in int64
            digits[0] = np.uint8(56)  # its last digit, 8
            v = np.int64(-922337203685477580)
            nd = 1
        u = -v if neg else v
        while True:
            q = u // 10
            digits[nd] = np.uint8(48 + (u - 10 * q))
            u = q
            nd += 1
            if u == 0:
                break
        n = 0
        if neg:
            buf[0] = np.uint8(45)
            n = 1
        for j in range(nd):
            buf[n + j] = digits[nd - 1 - j]
        h, k, filled = _stream(h0, k0, f0, buf, 0, n + nd)
        if filled:
            h ^= _mix_k(k)
        out[row] = np.uint32(_fmix(h, n_prefix + n + nd))


def _as_arrow_strings(ids: Any) -> pa.Array:
    """Ids (array-like of str or int) as one contiguous Arrow string array, nulls refused."""
    if isinstance(ids, pa.ChunkedArray):
        arr = ids.combine_chunks()
    elif isinstance(ids, pa.Array):
        arr = ids
    else:
        if isinstance(ids, str | bytes) or not isinstance(ids, Iterable | np.ndarray):
            raise ValidationError(f"ids: expected an array of ids, got {type(ids).__name__}")
        if hasattr(ids, "array") and hasattr(ids, "dtype"):  # pandas Series / Index
            ids = ids.array
        try:
            arr = pa.array(ids) if not isinstance(ids, list | tuple) else pa.array(list(ids))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValidationError(f"ids: cannot read as strings or integers ({exc})") from exc
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_integer(t):
        arr = arr.cast(pa.large_string())
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        pass
    elif pa.types.is_null(t) and len(arr) == 0:
        arr = pa.array([], type=pa.large_string())
    else:
        raise ValidationError(f"ids: must be strings or integers, got Arrow type {t}")
    if arr.null_count:
        bad = np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[:5].tolist()
        raise DataError(f"ids: {arr.null_count} missing id(s), e.g. at positions {bad}")
    return arr


def prepare_ids(ids: Any) -> np.ndarray | pa.Array:
    """Ids ready for hashing: an int64 numpy array, or a contiguous Arrow string array.

    Convert once when hashing the same ids under several salts.
    """
    if (
        isinstance(ids, np.ndarray)
        and ids.dtype == np.int64
        and ids.ndim == 1
        and ids.flags.c_contiguous
    ):
        return ids
    if (
        isinstance(ids, pa.Array)
        and (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type))
        and not ids.null_count
    ):
        return ids
    if (
        isinstance(ids, pd.Series | pd.Index)
        and pd.api.types.is_integer_dtype(ids.dtype)
        and not ids.hasnans
    ):
        ids = ids.to_numpy()
    if (
        isinstance(ids, np.ndarray)
        and ids.ndim == 1
        and np.issubdtype(ids.dtype, np.integer)
        # uint64 beyond int64 goes the text route (Arrow formats it exactly)
        and (ids.dtype != np.uint64 or not ids.size or ids.max() <= np.iinfo(np.int64).max)
    ):
        return np.ascontiguousarray(ids, dtype=np.int64)
    return _as_arrow_strings(ids)


def murmur3_32(ids: Any, salt: str = "", *, seed: int = 0) -> np.ndarray:
    """Unsigned 32-bit MurmurHash3 of ``f"{salt}:{id}"`` for every id (or of the bare id).

    Parameters
    ----------
    ids : array-like of str or int
        Unit ids (list, numpy array, pandas Series, pyarrow array). Integers are hashed
        as their decimal text.
    salt : str, default ""
        Prefix mixed into every key as ``f"{salt}:{id}"``; empty hashes the bare id.
    seed : int, default 0
        MurmurHash3 seed.

    Returns
    -------
    numpy.ndarray of uint32
        Same length and order as ``ids``; equals ``sklearn.utils.murmurhash3_32(key,
        seed, positive=True)`` for each key.
    """
    if not isinstance(salt, str):
        raise ValidationError(f"salt: must be a string, got {type(salt).__name__}")
    if not 0 <= int(seed) < 2**32:
        raise ValidationError(f"seed: must be in [0, 2**32), got {seed}")
    prefix = np.frombuffer((f"{salt}:" if salt else "").encode("utf-8"), dtype=np.uint8)
    ids = prepare_ids(ids)
    if isinstance(ids, np.ndarray):
        # integer ids are hashed as their decimal text, formatted inside the kernel
        out = np.empty(ids.shape[0], dtype=np.uint32)
        _murmur3_int_kernel(prefix, ids, np.uint32(seed), out)
        return out
    arr = ids
    n = len(arr)
    out = np.empty(n, dtype=np.uint32)
    if n == 0:
        return out
    bufs = arr.buffers()
    off_dtype = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(bufs[1], dtype=off_dtype)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(1, np.uint8)
    if data.size == 0:
        data = np.zeros(1, np.uint8)
    _murmur3_kernel(prefix, data, offsets.astype(np.int64, copy=False), np.uint32(seed), out)
    return out


def hash_buckets(ids: Any, salt: str, n_buckets: int = N_BUCKETS) -> np.ndarray:
    """Bucket in ``[0, n_buckets)`` of every id for ``salt`` (see the module docstring).

    Parameters
    ----------
    ids : array-like of str or int
        Unit ids.
    salt : str
        Per-experiment (or per-layer) salt; different salts give independent buckets.
    n_buckets : int, default 10_000
        Number of buckets.

    Returns
    -------
    numpy.ndarray of int32
    """
    if not isinstance(salt, str) or not salt:
        raise ValidationError(f"salt: must be a non-empty string, got {salt!r}")
    if not isinstance(n_buckets, int | np.integer) or not 1 <= n_buckets <= 2**31 - 1:
        raise ValidationError(f"n_buckets: must be an integer in [1, 2**31), got {n_buckets!r}")
    h = murmur3_32(ids, salt).astype(np.uint64)
    return ((h * np.uint64(n_buckets)) >> np.uint64(32)).astype(np.int32)


_M = 0xFFFFFFFF


def murmur3_scalar(data: bytes, seed: int = 0) -> int:
    """MurmurHash3_x86_32 of one key (pure Python: a scalar call would pay more in numba
    dispatch and Arrow conversion than this costs)."""
    h = seed
    n = len(data)
    end = n - n % 4
    for i in range(0, end, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * 0xCC9E2D51) & _M
        k = ((k << 15) | (k >> 17)) & _M
        k = (k * 0x1B873593) & _M
        h ^= k
        h = ((h << 13) | (h >> 19)) & _M
        h = (h * 5 + 0xE6546B64) & _M
    tail = data[end:]
    if tail:
        k = int.from_bytes(tail, "little")
        k = (k * 0xCC9E2D51) & _M
        k = ((k << 15) | (k >> 17)) & _M
        k = (k * 0x1B873593) & _M
        h ^= k
    h ^= n
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M
    h ^= h >> 16
    return h


def bucket_of(unit_id: str, salt: str, n_buckets: int = N_BUCKETS) -> int:
    """:func:`hash_buckets` of one id, without array conversion (request-time code)."""
    h = murmur3_scalar(f"{salt}:{unit_id}".encode())
    return (h * n_buckets) >> 32


def warm_up() -> None:
    """Compile the kernel (cached on disk after the first process)."""
    murmur3_32(["warm-up"], "x")  # string ids (int32 offsets, copied to int64)
    murmur3_32(pa.array(["warm-up"], type=pa.large_string()), "x")  # read-only int64 offsets
    murmur3_32(np.zeros(1, dtype=np.int64), "x")  # integer ids
