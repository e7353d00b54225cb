"""The graph core: plain components with scipy, ordered conflict replay with numba.

Most people in an identity graph never trip a cardinality rule, and for them the order of
unions does not matter: if a whole component holds at most ``limit`` values of every type,
no partial union of it can exceed a limit either (counts only grow). So we first take plain
connected components with scipy over all edges, and replay edges in rule order through a
compiled union-find only inside the components that break a limit. The replay refuses a
union that would give the merged set more than ``limit`` values of a type.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

ACCEPTED = -1  # reason code of an edge that was applied


@numba.njit(cache=True, nogil=True)
def _find(parent: np.ndarray, x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]  # path halving keeps trees flat without recursion
        x = parent[x]
    return x


@numba.njit(cache=True, nogil=True)
def _replay(u, v, node_type, limits, n_nodes):  # pragma: no cover - compiled
    """Union-find over ordered edges that refuses unions breaking a per-type limit.

    Returns (root per node, reason per edge): reason is -1 when the edge was applied or
    already inside one set, else the index of the first type whose limit it would break.
    """
    n_types = limits.shape[0]
    parent = np.arange(n_nodes, dtype=np.int64)
    size = np.ones(n_nodes, dtype=np.int64)
    counts = np.zeros((n_nodes, n_types), dtype=np.int32)
    for i in range(n_nodes):
        counts[i, node_type[i]] = 1
    reason = np.full(u.shape[0], -1, dtype=np.int16)
    for e in range(u.shape[0]):
        ru = _find(parent, u[e])
        rv = _find(parent, v[e])
        if ru == rv:
            continue
        bad = -1
        for t in range(n_types):
            if counts[ru, t] + counts[rv, t] > limits[t]:
                bad = t
                break
        if bad >= 0:
            reason[e] = bad
            continue
        if size[ru] < size[rv]:
            ru, rv = rv, ru
        parent[rv] = ru
        size[ru] += size[rv]
        for t in range(n_types):
            counts[ru, t] += counts[rv, t]
    for i in range(n_nodes):
        parent[i] = _find(parent, i)
    return parent, reason


@numba.njit(cache=True, nogil=True)
def _plain_uf(u, v, n_nodes):  # pragma: no cover - compiled
    parent = np.arange(n_nodes, dtype=np.int64)
    for e in range(u.shape[0]):
        ru = _find(parent, u[e])
        rv = _find(parent, v[e])
        if ru != rv:
            if ru < rv:
                parent[rv] = ru
            else:
                parent[ru] = rv
    for i in range(n_nodes):
        parent[i] = _find(parent, i)
    return parent


@numba.njit(cache=True, nogil=True)
def _conflicts(comp, n_comp, node_type, limits, u):  # pragma: no cover - compiled
    """Components holding more values of a type than its limit; their nodes and edges.

    One pass over nodes counts values per (component, type); one pass over edges keeps
    those inside a conflicting component (both ends share it, so one end decides).
    """
    n_types = limits.shape[0]
    counts = np.zeros(n_comp * n_types, dtype=np.int32)
    bad = np.zeros(n_comp, dtype=np.bool_)
    for i in range(comp.shape[0]):
        t = node_type[i]
        k = comp[i] * n_types + t
        counts[k] += 1
        if counts[k] > limits[t]:
            bad[comp[i]] = True
    n_sub = 0
    for i in range(comp.shape[0]):
        if bad[comp[i]]:
            n_sub += 1
    nodes = np.empty(n_sub, dtype=np.int64)
    j = 0
    for i in range(comp.shape[0]):
        if bad[comp[i]]:
            nodes[j] = i
            j += 1
    m = 0
    for e in range(u.shape[0]):
        if bad[comp[u[e]]]:
            m += 1
    edges = np.empty(m, dtype=np.int64)
    j = 0
    for e in range(u.shape[0]):
        if bad[comp[u[e]]]:
            edges[j] = e
            j += 1
    return bad, nodes, edges


def plain_components(u: np.ndarray, v: np.ndarray, n_nodes: int) -> tuple[int, np.ndarray]:
    """Connected components of an undirected graph given as edge arrays (scipy)."""
    if n_nodes == 0:
        return 0, np.zeros(0, dtype=np.int32)
    data = np.ones(len(u), dtype=np.bool_)
    g = coo_matrix((data, (u, v)), shape=(n_nodes, n_nodes)).tocsr()
    n, labels = connected_components(g, directed=True, connection="weak", return_labels=True)
    return int(n), labels.astype(np.int32, copy=False)


def warm_up() -> None:
    """Compile the numba kernels (cached on disk after the first process)."""
    from mktlab.identity import _kernels

    _kernels.warm_up()
    z = np.zeros(1, dtype=np.int64)
    _replay(z, z, np.zeros(1, dtype=np.int64), np.ones(1, dtype=np.int64), 1)
    _conflicts(z, 1, z, np.ones(1, dtype=np.int64), z)
    _plain_uf(z, z, 1)


def resolve_components(
    u: np.ndarray,
    v: np.ndarray,
    sort_keys: list[np.ndarray] | None,
    node_type: np.ndarray,
    limits: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """People from edges under per-type limits.

    Parameters
    ----------
    u, v : ndarray of int
        Edge endpoints (node codes ``0..n_nodes-1``); self-loops are ignored.
    sort_keys : list of ndarray or None
        ``np.lexsort`` keys over all edges (last key primary) giving the order the rule
        replays them in, strongest first. Only edges of conflicting components are
        sorted; ``None`` keeps the given order.
    node_type : ndarray of int
        Type index of every node (its length is the number of nodes).
    limits : ndarray of int
        Maximum values per person of each type index.

    Returns
    -------
    labels : ndarray of int64
        A person label per node (equal labels = same person), in ``0 .. 2 * n_nodes``.
    reason : ndarray of int16
        Per edge: -1 if applied (or redundant), else the type index whose limit the edge
        would have broken.
    """
    n_nodes = len(node_type)
    u = np.asarray(u, dtype=np.int64)
    v = np.asarray(v, dtype=np.int64)
    node_type = np.asarray(node_type, dtype=np.int64)
    limits = np.asarray(limits, dtype=np.int64)
    reason = np.full(len(u), ACCEPTED, dtype=np.int16)
    n_comp, comp32 = plain_components(u, v, n_nodes)
    # clean components keep their component number; replayed sets get n_comp + root node
    labels = comp32.astype(np.int64)
    _, sub_nodes, sub_edges = _conflicts(labels, n_comp, node_type, limits, u)
    if len(sub_edges) == 0:
        return labels, reason
    local = np.full(n_nodes, -1, dtype=np.int64)
    local[sub_nodes] = np.arange(len(sub_nodes))
    if sort_keys:
        sub_edges = sub_edges[np.lexsort([np.asarray(k)[sub_edges] for k in sort_keys])]
    roots, sub_reason = _replay(
        local[u[sub_edges]], local[v[sub_edges]], node_type[sub_nodes], limits, len(sub_nodes)
    )
    labels[sub_nodes] = n_comp + sub_nodes[roots]
    reason[sub_edges] = sub_reason
    return labels, reason
