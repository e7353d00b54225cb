"""The graph core on Spark: connected components as DataFrame iterations, conflict replay.

GraphFrames' JVM part cannot be downloaded on our machines, so components are the
alternating large-star / small-star rounds of Kiveris et al. (2014), written with plain
DataFrame joins and aggregations; they converge in O(log n) rounds to a star forest in
which every node points at the smallest node of its component. Components that break a
cardinality limit are replayed in rule order by the very numba union-find the local
engine uses (:func:`mktlab.identity._graph._replay`), a bucket of whole components per
task: components are disjoint, so replaying them apart gives the same refusals as one
replay of all of them.

References
----------
Kiveris, Lattanzi, Mirrokni, Rastogi, Vassilvitskii. "Connected Components in MapReduce
and Beyond." SoCC 2014.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

import numpy as np
import pandas as pd

MAX_ROUNDS = 64  # log2 of any graph we will see, with room to spare


def _checkpoint(df):
    # truncate the lineage each round; local (executor) storage needs no checkpoint dir.
    # Lazy: the next action (a count) materialises and counts in one job.
    return df.localCheckpoint(eager=False)


def connected_components(edges, stats: list[dict] | None = None):
    """Component label (smallest node) of every node that has an edge.

    Parameters
    ----------
    edges : pyspark DataFrame
        Columns ``u, v`` (long), an undirected edge per row; self-loops are dropped.
    stats : list, optional
        Filled with one dict per round: ``round, edges, seconds``.

    Returns
    -------
    DataFrame
        ``node, label`` for every endpoint of ``edges``.
    """
    from pyspark.sql import functions as F

    cur = _checkpoint(
        edges.where(F.col("u") != F.col("v"))
        .select(F.least("u", "v").alias("lo"), F.greatest("u", "v").alias("hi"))
        .distinct()
    )
    n_cur = cur.count()
    for rnd in range(1, MAX_ROUNDS + 1):
        t0 = perf_counter()
        # large-star: every neighbour b > a of a node a is re-linked to m(a) = min(Γ(a) ∪ {a})
        both = cur.select(F.col("lo").alias("a"), F.col("hi").alias("b")).unionByName(
            cur.select(F.col("hi").alias("a"), F.col("lo").alias("b"))
        )
        m = both.groupBy("a").agg(F.least(F.min("b"), F.col("a")).alias("m"))
        large = (
            both.where(F.col("b") > F.col("a"))
            .join(m, "a")
            .select(F.col("m").alias("lo"), F.col("b").alias("hi"))
            .distinct()
        )
        # small-star: a node x and its smaller neighbours are linked to their minimum
        ms = large.groupBy("hi").agg(F.min("lo").alias("m"))
        small = (
            large.join(ms, "hi")
            .where(F.col("lo") != F.col("m"))
            .select(F.col("m").alias("lo"), F.col("lo").alias("hi"))
            .unionByName(ms.select(F.col("m").alias("lo"), F.col("hi")))
            .distinct()
        )
        nxt = _checkpoint(small)
        n_nxt = nxt.count()
        same = n_nxt == n_cur and nxt.exceptAll(cur).limit(1).count() == 0
        if stats is not None:
            stats.append({"round": rnd, "edges": int(n_nxt), "seconds": perf_counter() - t0})
        cur, n_cur = nxt, n_nxt
        if same:  # a fixed point of both rounds is a star forest: every hi points at its min
            break
    else:  # pragma: no cover - would take a graph of 2**64 nodes
        raise RuntimeError("connected components did not converge")
    return cur.select(F.col("hi").alias("node"), F.col("lo").alias("label")).unionByName(
        cur.select(F.col("lo").alias("node"), F.col("lo").alias("label")).distinct()
    )


def _replay_bucket(edges: pd.DataFrame, nodes: pd.DataFrame, limits, order: str) -> pd.DataFrame:
    """Replay one bucket of conflicting components with the local engine's union-find."""
    from mktlab.identity._graph import _replay

    keys = np.sort(nodes["key"].to_numpy(dtype=np.int64))
    pos = np.searchsorted(keys, nodes["key"].to_numpy(dtype=np.int64))
    ntype = np.empty(len(keys), dtype=np.int64)
    ntype[pos] = nodes["t"].to_numpy(dtype=np.int64)
    label = np.empty(len(keys), dtype=np.int64)
    label[pos] = nodes["label"].to_numpy(dtype=np.int64)
    lo = np.searchsorted(keys, edges["lo"].to_numpy(dtype=np.int64))
    hi = np.searchsorted(keys, edges["hi"].to_numpy(dtype=np.int64))
    cnt, last = edges["cnt"].to_numpy(np.int64), edges["last"].to_numpy(np.int64)
    # the local engine's np.lexsort keys (last key primary); node keys sort as node codes
    sort_keys = [hi, lo, -cnt, -last] if order == "recency" else [hi, lo, -last, -cnt]
    o = np.lexsort(sort_keys)
    roots, reason = _replay(lo[o], hi[o], ntype, np.asarray(limits, dtype=np.int64), len(keys))
    out_e = pd.DataFrame(
        {
            "kind": np.zeros(len(o), dtype=np.int8),
            "a": edges["lo"].to_numpy(np.int64)[o],
            "b": edges["hi"].to_numpy(np.int64)[o],
            "r": reason.astype(np.int64),
        }
    )
    out_n = pd.DataFrame(
        {"kind": np.ones(len(keys), dtype=np.int8), "a": keys, "b": keys[roots], "r": label}
    )
    return pd.concat([out_e, out_n], ignore_index=True)


def replay_conflicts(edges, nodes, limits, order: str, buckets: int) -> Any:
    """Refusals and person roots inside components that break a cardinality limit.

    Parameters
    ----------
    edges : DataFrame
        ``lo, hi, cnt, last, label`` of the link edges of conflicting components.
    nodes : DataFrame
        ``key, t, label`` of their nodes.
    limits : sequence of int
        Maximum values per person, by type index.
    order : {"recency", "frequency"}
    buckets : int
        Tasks to spread the components over.

    Returns
    -------
    DataFrame
        ``kind, a, b, r``: ``kind`` 0 is an edge ``(a, b)`` with refusal reason ``r``
        (-1 applied), ``kind`` 1 a node ``a`` of component ``r`` whose person root is
        node ``b``.
    """
    from pyspark.sql import functions as F

    lim = [int(x) for x in limits]

    def run(e: pd.DataFrame, n: pd.DataFrame) -> pd.DataFrame:
        if len(n) == 0:
            return pd.DataFrame({"kind": [], "a": [], "b": [], "r": []}).astype(
                {"kind": "int8", "a": "int64", "b": "int64", "r": "int64"}
            )
        return _replay_bucket(e, n, lim, order)

    bucket = F.pmod(F.xxhash64("label"), F.lit(buckets))
    # both sides come from one node table: cut their lineage so the cogroup sees two inputs
    eb = _checkpoint(edges.withColumn("bucket", bucket)).groupBy("bucket")
    nb = _checkpoint(nodes.withColumn("bucket", bucket)).groupBy("bucket")
    return eb.cogroup(nb).applyInPandas(run, schema="kind byte, a long, b long, r long")
