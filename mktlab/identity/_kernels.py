"""Compiled O(n) helpers (numba): factorizing small integer keys, stable counting sorts,
and formatting global ids. They replace hash tables and comparison sorts on the 10M-row
path, where numpy's general-purpose routines were the bottleneck.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def first_seen_codes(key, size):  # pragma: no cover - compiled
    """Codes of non-negative keys (< size) in order of first appearance, and the keys."""
    table = np.full(size, -1, dtype=np.int64)
    codes = np.empty(key.shape[0], dtype=np.int64)
    uniq = np.empty(key.shape[0], dtype=np.int64)
    n = 0
    for i in range(key.shape[0]):
        k = key[i]
        c = table[k]
        if c < 0:
            c = n
            table[k] = n
            uniq[n] = k
            n += 1
        codes[i] = c
    return codes, uniq[:n].copy()


@numba.njit(cache=True, nogil=True)
def counting_sort(keys, n_buckets, perm):  # pragma: no cover - compiled
    """Reorder ``perm`` stably by ``keys[perm]`` (keys in ``0..n_buckets-1``)."""
    counts = np.zeros(n_buckets + 1, dtype=np.int64)
    for i in range(perm.shape[0]):
        counts[keys[perm[i]] + 1] += 1
    for b in range(n_buckets):
        counts[b + 1] += counts[b]
    out = np.empty_like(perm)
    for i in range(perm.shape[0]):
        k = keys[perm[i]]
        out[counts[k]] = perm[i]
        counts[k] += 1
    return out


@numba.njit(cache=True, nogil=True)
def digits_buffer(values, width, prefix):  # pragma: no cover - compiled
    """Fixed-width ASCII ``prefix`` + zero-padded decimal of each value, row after row."""
    n = values.shape[0]
    buf = np.empty(n * (width + 1), dtype=np.uint8)
    for i in range(n):
        base = i * (width + 1)
        buf[base] = prefix
        x = values[i]
        for j in range(width, 0, -1):
            buf[base + j] = 48 + x % 10
            x //= 10
    return buf


@numba.njit(cache=True, nogil=True)
def is_grouped(rec, n_rec):  # pragma: no cover - compiled
    """True when the rows of every record are contiguous (the usual layout of a log)."""
    seen = np.zeros(n_rec, dtype=np.bool_)
    for i in range(rec.shape[0]):
        if i > 0 and rec[i] == rec[i - 1]:
            continue
        if seen[rec[i]]:
            return False
        seen[rec[i]] = True
    return True


@numba.njit(cache=True, nogil=True)
def star_edges(order, rec, rank, node, ts):  # pragma: no cover - compiled
    """Per record (rows contiguous in ``order``): link every identifier to the anchor.

    The anchor is the row with the smallest (rank, node). An identifier repeated inside
    a record yields one link. Returns (u, v, ts) of the links, the anchor node at each
    position of ``order``, and the number of records.
    """
    n = order.shape[0]
    eu = np.empty(n, dtype=np.int64)
    ev = np.empty(n, dtype=np.int64)
    et = np.empty(n, dtype=np.int64)
    anchor = np.empty(n, dtype=np.int64)
    m = 0
    n_rec = 0
    i = 0
    while i < n:
        r = rec[order[i]]
        j = i + 1
        while j < n and rec[order[j]] == r:
            j += 1
        best = order[i]
        for k in range(i + 1, j):
            p = order[k]
            if rank[p] < rank[best] or (rank[p] == rank[best] and node[p] < node[best]):
                best = p
        a = node[best]
        for k in range(i, j):
            p = order[k]
            anchor[k] = a
            x = node[p]
            if x == a:
                continue
            dup = False
            if j - i <= 64:  # huge records skip the check; links are deduplicated later
                for q in range(i, k):
                    if node[order[q]] == x:
                        dup = True
                        break
            if dup:
                continue
            eu[m] = a
            ev[m] = x
            et[m] = ts[p]
            m += 1
        n_rec += 1
        i = j
    return eu[:m].copy(), ev[:m].copy(), et[:m].copy(), anchor, n_rec


@numba.njit(cache=True, nogil=True)
def typed_degree(u, v, node_type, n_nodes, n_types):  # pragma: no cover - compiled
    """Per node, the largest number of links to one type at least as strong as its own."""
    deg = np.zeros((n_nodes, n_types), dtype=np.int64)
    for e in range(u.shape[0]):
        a, b = u[e], v[e]
        ta, tb = node_type[a], node_type[b]
        if tb <= ta:
            deg[a, tb] += 1
        if ta <= tb:
            deg[b, ta] += 1
    out = np.zeros(n_nodes, dtype=np.int64)
    for i in range(n_nodes):
        best = 0
        for t in range(n_types):
            if deg[i, t] > best:
                best = deg[i, t]
        out[i] = best
    return out


@numba.njit(cache=True, nogil=True)
def best_per_group(group, n_groups, rank, value):  # pragma: no cover - compiled
    """Per group, the ``value`` of its lowest-``rank`` row (first row wins ties)."""
    best_rank = np.full(n_groups, np.iinfo(np.int64).max, dtype=np.int64)
    best = np.full(n_groups, -1, dtype=np.int64)
    present = np.zeros(n_groups, dtype=np.bool_)
    for i in range(group.shape[0]):
        g = group[i]
        present[g] = True
        if rank[i] < best_rank[g]:
            best_rank[g] = rank[i]
            best[g] = value[i]
    return best, present


def warm_up() -> None:
    """Compile the kernels (cached on disk after the first process)."""
    z = np.zeros(1, dtype=np.int64)
    first_seen_codes(z, 1)
    counting_sort(z, 1, z)
    digits_buffer(z, 10, 71)
    is_grouped(z, 1)
    star_edges(z, z, z, z, z)
    typed_degree(z, z, z, 1, 1)
    best_per_group(z, 1, z, z)
