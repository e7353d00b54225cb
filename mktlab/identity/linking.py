"""Links between identifiers: a star per record, deduplication, hubs.

Every identifier of a record is linked to the record's strongest identifier (same
components as a clique, far fewer edges); repeated links collapse into one with first /
last seen and a record count; identifiers linked to too many others of one type are hubs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mktlab.identity._kernels import counting_sort, is_grouped, star_edges, typed_degree
from mktlab.identity.merge_rules import IdentityRules


def record_stars(rec, n_rec, rank, node, ts):
    """Link each row's identifier to its record's strongest identifier (compiled, O(n)).

    Returns edge arrays (u=anchor, v, ts), the anchor at every position of the row order,
    that order (rows of a record contiguous) and the number of records.
    """
    rec = np.ascontiguousarray(rec, dtype=np.int64)
    if is_grouped(rec, int(n_rec)):
        order = np.arange(len(rec), dtype=np.int64)
    else:
        order = counting_sort(rec, int(n_rec), np.arange(len(rec), dtype=np.int64))
    eu, ev, et, anchor, n_records = star_edges(
        order,
        rec,
        np.ascontiguousarray(rank, dtype=np.int64),
        np.ascontiguousarray(node, dtype=np.int64),
        np.ascontiguousarray(ts, dtype=np.int64),
    )
    return eu, ev, et, anchor, order, int(n_records)


def record_codes(rid: pd.Series) -> tuple[np.ndarray, int]:
    """Non-negative record codes and their range; dense integer ids are used as they are."""
    if pd.api.types.is_integer_dtype(rid.dtype) and len(rid):
        rec = rid.to_numpy(dtype=np.int64)
        lo, hi = int(rec.min()), int(rec.max())
        if hi - lo < 4 * len(rec) + 1024:  # dense enough for a counting sort
            return rec - lo, hi - lo + 1
    codes = pd.factorize(rid)[0].astype(np.int64)
    return codes, int(codes.max()) + 1 if len(codes) else 1


def dedupe_edges(u, v, first, last, count, n_nodes):
    """Undirected, deduplicated links with first/last seen and number of records."""
    lo, hi = np.minimum(u, v), np.maximum(u, v)
    key = lo * np.int64(n_nodes) + hi
    order = np.argsort(key)  # min / max / sum below do not care about ties
    ks = key[order]
    if len(ks) == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z, z, z
    starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    uk = ks[starts]
    return (
        uk // n_nodes,
        uk % n_nodes,
        np.minimum.reduceat(first[order], starts),
        np.maximum.reduceat(last[order], starts),
        np.add.reduceat(count[order], starts),
    )


def hubs(u, v, node_type, rules: IdentityRules):
    """Identifiers linked to more than their type's hub threshold of one other type.

    Only links to identifiers of the same or a stronger type count: a device seen with
    thousands of user_ids is a hub, while a user_id seen with many device cookies is a
    heavy user (the device limit trims those), not a reason to drop the account.
    """
    n_nodes, n_types = len(node_type), len(rules.names)
    thr = np.array(
        [
            rules.hub_limit(n) if rules.hub_limit(n) is not None else np.iinfo(np.int64).max
            for n in rules.names
        ],
        dtype=np.int64,
    )
    if len(u) == 0 or (thr == np.iinfo(np.int64).max).all():
        return np.zeros(n_nodes, dtype=np.bool_), np.zeros(n_nodes, dtype=np.int64)
    deg = typed_degree(u, v, np.ascontiguousarray(node_type, dtype=np.int64), n_nodes, n_types)
    return deg > thr[node_type], deg
