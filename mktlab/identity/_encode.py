"""Vectorised helpers: string -> integer codes, value normalisation, blocklists, global ids."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mktlab.identity._kernels import digits_buffer, first_seen_codes
from mktlab.identity.merge_rules import IdentityRules

GLOBAL_ID_PREFIX = "G"
_GID_WIDTH = 10  # uint32 max is 4_294_967_295: ten digits


def dense_factorize(key: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Factorize small non-negative integer keys without hashing (keys < ``size``).

    Returns codes (in order of first appearance) and the unique keys in that order.
    """
    return first_seen_codes(np.ascontiguousarray(key, dtype=np.int64), max(1, int(size)))


def factorize_strings(values: pd.Series) -> tuple[np.ndarray, pa.Array]:
    """Codes and distinct values of a null-free string column (one Arrow hash pass)."""
    arr = pa.array(values.astype("str"))
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    enc = pc.dictionary_encode(arr)
    codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    return codes, enc.dictionary


def normalize_values(values: pd.Series, mode: str) -> pd.Series:
    """Normalise identifier values the way matching expects (``strip``/``lower``/``none``)."""
    s = values.astype("str")
    if mode == "strip":
        return s.str.strip()
    if mode == "lower":
        return s.str.strip().str.lower()
    return s


def as_id_strings(values: pd.Series | np.ndarray | pd.Index) -> pd.Series:
    """Identifier values as strings; integral floats (ids read next to NaN) lose ``.0``."""
    s = pd.Series(values, copy=False)
    if pd.api.types.is_float_dtype(s.dtype):
        f = s.to_numpy(dtype=np.float64, na_value=np.nan)
        ok = np.isfinite(f)
        if ok.any() and (f[ok] == np.round(f[ok])).all() and np.abs(f[ok]).max() < 2**63:
            s = s.astype("Int64")
    return s.astype("str")


def encode_pairs(
    type_idx: np.ndarray, values: pd.Series, n_types: int
) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """Codes for (type index, value) pairs: one string hash pass, then integer work.

    Returns codes per row, and the type index and value of every distinct pair.
    """
    vcodes, vuniq = factorize_strings(as_id_strings(values))
    key = vcodes * n_types + np.asarray(type_idx, dtype=np.int64)
    codes, keys = dense_factorize(key, max(1, len(vuniq) * n_types))
    uvalues = pd.Series(vuniq.take(pa.array(keys // n_types)), dtype="str")  # stays Arrow-backed
    return codes, keys % n_types, uvalues


def encode_identifiers(
    type_idx: np.ndarray, values: pd.Series | np.ndarray, rules: IdentityRules
) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """Codes for (type, normalised value) pairs.

    Normalisation runs on distinct raw values only, so a 10M-row input costs one string
    hash pass plus string work on the (far fewer) distinct identifiers.

    Returns
    -------
    codes : ndarray of int64, one per input row
    node_type : ndarray of int64, type index per distinct identifier
    node_value : Series of str, normalised value per distinct identifier
    """
    n_types = len(rules.ranked)
    raw_codes, raw_type, raw_value = encode_pairs(type_idx, pd.Series(values, copy=False), n_types)
    raw = pa.array(raw_value)
    if isinstance(raw, pa.ChunkedArray):
        raw = raw.combine_chunks()
    changed_at: list[np.ndarray] = []
    changed_to: list[pa.Array] = []
    for mode in ("strip", "lower"):
        types = [t for t, rule in enumerate(rules.ranked) if rule.normalize == mode]
        idx = np.flatnonzero(np.isin(raw_type, types)) if types else np.zeros(0, np.int64)
        if len(idx) == 0:
            continue
        sub = raw.take(pa.array(idx))
        done = pc.utf8_trim_whitespace(sub)
        if mode == "lower":
            done = pc.utf8_lower(done)
        diff = ~np.asarray(pc.equal(done, sub).to_numpy(zero_copy_only=False), dtype=np.bool_)
        if diff.any():  # usually few: only those need a second encoding pass
            changed_at.append(idx[diff])
            changed_to.append(done.filter(pa.array(diff)))
    if not changed_at:
        return raw_codes, raw_type, raw_value
    at = np.concatenate(changed_at)
    to = pa.concat_arrays([a.cast(raw.type) for a in changed_to])
    order = np.argsort(at)
    mask = np.zeros(len(raw), dtype=np.bool_)
    mask[at] = True
    norm = pc.replace_with_mask(raw, pa.array(mask), to.take(pa.array(order)))
    # distinct raw spellings may collapse to one normalised identifier
    node_codes, node_type, node_value = encode_pairs(
        raw_type, pd.Series(norm, dtype="str"), n_types
    )
    return node_codes[raw_codes], node_type, node_value


def blocked_mask(values: pd.Series, rules: IdentityRules) -> np.ndarray:
    """True where a normalised value is on the blocklist (by value or regex)."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.bool_)
    low = values.astype("str").str.strip().str.lower()
    mask = low.isin({v.strip().lower() for v in rules.block_values}).to_numpy(
        dtype=np.bool_, copy=True
    )
    for rx in rules.block_regex:
        try:
            hit = pc.match_substring_regex(pa.array(values.astype("str")), rx)
            mask |= np.asarray(hit.to_numpy(zero_copy_only=False), dtype=np.bool_)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            # RE2 lacks some Python regex features; fall back to Python's engine
            pat = re.compile(rx)
            mask |= np.fromiter(
                (bool(pat.search(x)) for x in values.astype("str")), bool, len(values)
            )
    return mask


def index_in(values: pd.Series | np.ndarray, universe: pd.Series | np.ndarray) -> np.ndarray:
    """Position of each value in ``universe`` (-1 where absent), hashed by Arrow."""
    vals = pa.array(pd.Series(values, copy=False).astype("str"))
    uni = pa.array(pd.Series(universe, copy=False).astype("str"))
    pos = pc.index_in(vals, value_set=uni)
    return np.asarray(pos.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def format_global_ids(uids: np.ndarray) -> pd.Series:
    """``G`` + the zero-padded uid: a stable, sortable person id (vectorised, Arrow-backed)."""
    u = np.ascontiguousarray(uids, dtype=np.int64)
    width = _GID_WIDTH + 1
    buf = digits_buffer(u, _GID_WIDTH, ord(GLOBAL_ID_PREFIX))
    big = width * (len(u) + 1) >= 2**31
    offsets = np.arange(0, width * (len(u) + 1), width, dtype=np.int64 if big else np.int32)
    kind = pa.large_string() if big else pa.string()
    arr = pa.Array.from_buffers(kind, len(u), [None, pa.py_buffer(offsets), pa.py_buffer(buf)])
    return pd.Series(arr, dtype="str")


def type_column(type_idx: np.ndarray, names: list[str]) -> pd.Series:
    """Type names for type indexes, built as Arrow strings without Python objects."""
    dict_arr = pa.DictionaryArray.from_arrays(
        pa.array(np.asarray(type_idx, dtype=np.int32)), pa.array(names)
    )
    return pd.Series(dict_arr.cast(pa.string()), dtype="str")


def parse_global_ids(gids: pd.Series | np.ndarray) -> np.ndarray:
    """Inverse of :func:`format_global_ids`; -1 where a value is not a global id."""
    s = pd.Series(gids, copy=False).astype("str")
    ok = s.str.fullmatch(rf"{GLOBAL_ID_PREFIX}\d{{{_GID_WIDTH}}}").fillna(False).to_numpy(bool)
    out = np.full(len(s), -1, dtype=np.int64)
    if ok.any():
        out[ok] = s[ok].str.slice(1).astype("int64").to_numpy()
    return out
