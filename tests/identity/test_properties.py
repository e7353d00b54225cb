"""Property: with no rule firing, resolve equals plain connected components."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from mktlab.identity import IdentityRules, IdTypeRule, resolve
from mktlab.identity._graph import _plain_uf, resolve_components

from .helpers import obs, people_of

TYPES = ("a", "b", "c")
ROOMY = IdentityRules(
    types=tuple(IdTypeRule(t, i, max_per_person=10_000) for i, t in enumerate(TYPES)),
    block_values=(),
    block_regex=(),
    hub_threshold=None,
)

records = st.lists(
    st.lists(st.tuples(st.sampled_from(TYPES), st.integers(0, 12)), min_size=1, max_size=4),
    min_size=0,
    max_size=30,
)


@settings(max_examples=80, deadline=None)
@given(records, st.sampled_from(["recency", "frequency"]))
def test_resolve_agrees_with_connected_components(recs, order):
    rows, g = [], nx.Graph()
    for rid, ids in enumerate(recs):
        nodes = [(t, f"v{v}") for t, v in ids]
        rows += [(rid, rid % 7, t, v) for t, v in nodes]
        g.add_nodes_from(nodes)
        g.add_edges_from(itertools.pairwise(nodes))
    rules = IdentityRules(**{**ROOMY.__dict__, "order": order})
    m = resolve(obs(*rows), rules)
    expected = {frozenset(c) for c in nx.connected_components(g)}
    assert people_of(m) == expected
    assert len(m.audit) == 0
    assert sorted(m.mapping["uid"].unique().tolist()) == list(range(len(expected)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), max_size=60), st.integers(0, 3))
def test_replay_never_breaks_limits_and_equals_components_without_limits(edges, seed):
    n = 31
    u = np.array([a for a, _ in edges], dtype=np.int64)
    v = np.array([b for _, b in edges], dtype=np.int64)
    rng = np.random.default_rng(seed)
    node_type = rng.integers(0, 3, n)
    # with huge limits: identical partition to plain union-find
    labels, reason = resolve_components(u, v, None, node_type, np.array([10**6] * 3))
    plain = _plain_uf(u, v, n)
    assert (reason == -1).all()
    assert _same_partition(labels, plain)
    # with tight limits: no person exceeds them, and every refused edge really would have
    limits = np.array([1, 2, 3])
    labels, reason = resolve_components(u, v, [rng.permutation(len(u))], node_type, limits)
    for lab in np.unique(labels):
        counts = np.bincount(node_type[labels == lab], minlength=3)
        assert (counts <= limits).all()
    for e in np.flatnonzero(reason >= 0):
        merged = (labels == labels[u[e]]) | (labels == labels[v[e]])
        assert labels[u[e]] != labels[v[e]]
        assert (np.bincount(node_type[merged], minlength=3) > limits).any()


def _same_partition(a, b):
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@settings(max_examples=40, deadline=None)
@given(records, records)
def test_incremental_equals_one_shot_and_never_reuses_uids(first, second):
    def rows(recs, offset):
        return [(offset + rid, rid % 5, t, f"v{v}") for rid, ids in enumerate(recs) for t, v in ids]

    a, b = obs(*rows(first, 0)), obs(*rows(second, 1000))
    m1 = resolve(a, ROOMY)
    m2 = resolve(b, previous=m1)
    assert people_of(m2) == people_of(resolve(pd.concat([a, b], ignore_index=True), ROOMY))
    # without rules firing, people only grow: every old person keeps its uid or merged
    # into an older one, and new uids start at the previous next_uid
    old = m1.mapping.merge(m2.mapping, on=["id_type", "id_value"], suffixes=("_1", "_2"))
    assert (old["uid_2"] <= old["uid_1"]).all()
    fresh = set(m2.mapping["uid"].tolist()) - set(m1.mapping["uid"].tolist())
    assert all(u >= m1.next_uid for u in fresh)
    assert m2.next_uid == m1.next_uid + len(fresh)
