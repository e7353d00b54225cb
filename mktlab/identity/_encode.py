"""Vectorised helpers: string -> integer codes, value normalisation, blocklists, global ids."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mktlab.identity.rules import IdentityRules

GLOBAL_ID_PREFIX = "G"
_GID_WIDTH = 10  # uint32 max is 4_294_967_295: ten digits


def dense_factorize(key: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Factorize small non-negative integer keys without hashing (keys < ``size``).

    Returns codes (ordered by key value) and the sorted unique keys.
    """
    seen = np.zeros(size, dtype=np.bool_)
    seen[key] = True
    remap = np.cumsum(seen, dtype=np.int64) - 1
    return remap[key], np.flatnonzero(seen)


def normalize_values(values: pd.Series, mode: str) -> pd.Series:
    """Normalise identifier values the way matching expects (``strip``/``lower``/``none``)."""
    s = values.astype("str")
    if mode == "strip":
        return s.str.strip()
    if mode == "lower":
        return s.str.strip().str.lower()
    return s


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
    vcodes, vuniq = pd.factorize(pd.Series(values, copy=False).astype("str"))
    vcodes = vcodes.astype(np.int64)
    raw_codes, raw_keys = dense_factorize(vcodes * n_types + type_idx, max(1, len(vuniq) * n_types))
    raw_type = raw_keys % n_types
    raw_value = pd.Series(np.asarray(vuniq, dtype=object)[raw_keys // n_types], dtype="str")
    norm = raw_value.copy()
    for t, rule in enumerate(rules.ranked):
        m = raw_type == t
        if m.any() and rule.normalize != "none":
            norm[m] = normalize_values(raw_value[m], rule.normalize).to_numpy()
    # distinct raw spellings may collapse to one normalised identifier
    ncodes, nuniq = pd.factorize(norm)
    ncodes = ncodes.astype(np.int64)
    node_codes, node_keys = dense_factorize(ncodes * n_types + raw_type, max(1, len(nuniq) * n_types))
    node_type = node_keys % n_types
    node_value = pd.Series(np.asarray(nuniq, dtype=object)[node_keys // n_types], dtype="str")
    return node_codes[raw_codes], node_type, node_value


def blocked_mask(values: pd.Series, rules: IdentityRules) -> np.ndarray:
    """True where a normalised value is on the blocklist (by value or regex)."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.bool_)
    low = values.astype("str").str.strip().str.lower()
    mask = low.isin({v.strip().lower() for v in rules.block_values}).to_numpy()
    for rx in rules.block_regex:
        try:
            hit = pc.match_substring_regex(pa.array(values.astype("str")), rx)
            mask |= np.asarray(hit.to_numpy(zero_copy_only=False), dtype=np.bool_)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            # RE2 lacks some Python regex features; fall back to Python's engine
            pat = re.compile(rx)
            mask |= np.fromiter((bool(pat.search(x)) for x in values.astype("str")), bool, len(values))
    return mask


def index_in(values: pd.Series | np.ndarray, universe: pd.Series | np.ndarray) -> np.ndarray:
    """Position of each value in ``universe`` (-1 where absent), hashed by Arrow."""
    vals = pa.array(pd.Series(values, copy=False).astype("str"))
    uni = pa.array(pd.Series(universe, copy=False).astype("str"))
    pos = pc.index_in(vals, value_set=uni)
    return np.asarray(pos.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def format_global_ids(uids: np.ndarray) -> np.ndarray:
    """``G`` + the zero-padded uid: a stable, sortable person id (vectorised)."""
    u = np.asarray(uids, dtype=np.int64)
    digits = (u[:, None] // (10 ** np.arange(_GID_WIDTH - 1, -1, -1, dtype=np.int64))) % 10
    buf = np.empty((len(u), _GID_WIDTH + 1), dtype=np.uint8)
    buf[:, 0] = ord(GLOBAL_ID_PREFIX)
    buf[:, 1:] = (digits + ord("0")).astype(np.uint8)
    return buf.view(f"S{_GID_WIDTH + 1}").ravel().astype(f"U{_GID_WIDTH + 1}")


def parse_global_ids(gids: pd.Series | np.ndarray) -> np.ndarray:
    """Inverse of :func:`format_global_ids`; -1 where a value is not a global id."""
    s = pd.Series(gids, copy=False).astype("str")
    ok = s.str.fullmatch(rf"{GLOBAL_ID_PREFIX}\d{{{_GID_WIDTH}}}").fillna(False).to_numpy(bool)
    out = np.full(len(s), -1, dtype=np.int64)
    if ok.any():
        out[ok] = s[ok].str.slice(1).astype("int64").to_numpy()
    return out
