"""``resolve``: raw identifier observations -> :class:`IdentityMap`.

Pipeline (all vectorised; the only per-edge loop is the compiled conflict replay):

1. validate rows (bad ones raise or go to quarantine);
2. encode ``(id_type, normalised id_value)`` to integer node codes, drop blocklisted values;
3. link every identifier of a record to the record's strongest identifier (a star: same
   components as a clique, far fewer edges), merge with the previous map's links;
4. find hubs (an identifier linked to more than N distinct identifiers of one type) and
   take them out of linking;
5. components with scipy; components breaking a cardinality limit are replayed in rule
   order (recency or frequency) by a numba union-find that refuses the offending links;
6. give people stable ids: against a previous map, survivors keep ``global_id``/``uid``,
   a merge keeps the oldest, a split part gets fresh ids, uids are never reused.

Each numbered stage is one function below (``_stage_validate`` ... ``_stage_ids``);
:func:`resolve` runs them in order, times each, and assembles the report. Link building
lives in :mod:`~mktlab.identity.linking`, id assignment in
:mod:`~mktlab.identity.stable_ids`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from time import perf_counter

import numpy as np
import pandas as pd

from mktlab.errors import DataError, ValidationError, require_columns
from mktlab.identity import _graph
from mktlab.identity._encode import (
    blocked_mask,
    dense_factorize,
    encode_identifiers,
    encode_pairs,
    format_global_ids,
    type_column,
)
from mktlab.identity._kernels import counting_sort
from mktlab.identity.linking import dedupe_edges, hubs, record_codes, record_stars
from mktlab.identity.map import IdentityMap
from mktlab.identity.merge_rules import IdentityRules
from mktlab.identity.report import SIZE_BUCKETS, IdentityReport, size_label
from mktlab.identity.stable_ids import assign_ids

REQUIRED = ("record_id", "ts", "id_type", "id_value")
_NS = "datetime64[ns]"


# ----------------------------------------------------------------- validation
def _parse_ts(s: pd.Series) -> np.ndarray:
    """Timestamps as int64 ns since epoch (naive UTC); NaT -> int64 min."""
    if pd.api.types.is_datetime64_any_dtype(s):
        dt = s
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "could not infer format": we report NaT rows
            dt = pd.to_datetime(s, errors="coerce", utc=True)
    if isinstance(dt.dtype, pd.DatetimeTZDtype):
        dt = dt.dt.tz_convert("UTC").dt.tz_localize(None)
    return dt.to_numpy(dtype=_NS).view(np.int64)


def _validate(obs: pd.DataFrame, rules: IdentityRules, errors: str):
    names = rules.names
    tcodes, tuniq = pd.factorize(obs["id_type"])
    lut = np.array(
        [names.index(c) if (c := rules.canonical(t)) else -1 for t in tuniq] + [-1], dtype=np.int64
    )
    type_idx = lut[tcodes]  # code -1 (null) picks the trailing -1
    ts = _parse_ts(obs["ts"])
    checks = [
        ("record_id", "is null", obs["record_id"].isna().to_numpy()),
        ("id_type", "is null", tcodes < 0),
        ("id_type", f"is not a known type {names}", (tcodes >= 0) & (type_idx < 0)),
        ("id_value", "is null", obs["id_value"].isna().to_numpy()),
        ("ts", "is null or does not parse as a timestamp", ts == np.iinfo(np.int64).min),
    ]
    bad = np.zeros(len(obs), dtype=np.bool_)
    reason = np.full(len(obs), None, dtype=object)
    problems = []
    for col, what, mask in checks:
        new = mask & ~bad
        if mask.any():
            sample = obs.loc[mask].head(3).to_dict("records")
            problems.append(f"observations.{col}: {int(mask.sum()):,} row(s) {what}; e.g. {sample}")
            reason[new] = f"{col} {what}"
            bad |= mask
    if bad.any() and errors == "raise":
        raise DataError(
            "bad observations (pass errors='quarantine' to set them aside):\n  "
            + "\n  ".join(problems)
        )
    quarantine = obs.loc[bad].copy()
    quarantine["reason"] = pd.Series(reason[bad], index=quarantine.index, dtype="str")
    return ~bad, type_idx, ts, quarantine.reset_index(drop=True)


def _str_col(values: np.ndarray | list) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=object), dtype="str")


# ------------------------------------------------------------------- stages
@dataclass
class _Rows:
    """Stage 1's output: the good observation rows, as arrays."""

    type_idx: np.ndarray  # id type index per row (rules order)
    ts: np.ndarray  # int64 ns
    values: pd.Series  # raw id_value
    rec: np.ndarray  # record code per row
    n_rec: int
    quarantine: pd.DataFrame


@dataclass
class _Nodes:
    """Stage 2's output: this run's identifiers and the node universe they map into."""

    row_local: np.ndarray  # row -> local identifier
    blocked_rows: np.ndarray
    blocked: dict[str, int]  # id type -> blocked observations
    excluded_blocked: pd.DataFrame
    node_type: np.ndarray
    node_value: pd.Series
    local_to_node: np.ndarray
    prev_to_node: np.ndarray | None  # previous map's node -> node (None without one)
    prev_uid: np.ndarray  # uid each node had in the previous map, -1 if new
    prev_next_uid: int
    prev_alive: set

    @property
    def n(self) -> int:
        return len(self.node_type)


@dataclass
class _Links:
    """Stages 3-4: deduplicated links, and the per-row star data hubs re-link from."""

    u: np.ndarray
    v: np.ndarray
    first: np.ndarray
    last: np.ndarray
    count: np.ndarray
    r_rec: np.ndarray  # per linking row: record, node, ts, type rank
    r_node: np.ndarray
    r_ts: np.ndarray
    r_rank: np.ndarray
    anchor: np.ndarray
    order: np.ndarray
    n_records: int


def _check_args(observations, rules, previous, errors) -> IdentityRules:
    if errors not in ("raise", "quarantine"):
        raise ValidationError(f"resolve: errors must be 'raise' or 'quarantine', got {errors!r}")
    if previous is not None and not isinstance(previous, IdentityMap):
        raise ValidationError(
            f"resolve: previous must be an IdentityMap, got {type(previous).__name__}"
        )
    if rules is None:
        rules = previous.rules if previous is not None else IdentityRules()
    if not isinstance(rules, IdentityRules):
        raise ValidationError(f"resolve: rules must be IdentityRules, got {type(rules).__name__}")
    if not isinstance(observations, pd.DataFrame):
        raise ValidationError(
            f"resolve: observations must be a DataFrame, got {type(observations).__name__}"
        )
    require_columns(observations, REQUIRED, table="observations")
    return rules


def _stage_validate(observations: pd.DataFrame, rules: IdentityRules, errors: str) -> _Rows:
    """1. Validate rows: bad ones raise or go to quarantine."""
    good, type_idx, ts, quarantine = _validate(observations, rules, errors)
    type_idx, ts = type_idx[good], ts[good]
    values = observations["id_value"]
    rid = observations["record_id"]
    if not good.all():
        values, rid = values[good], rid[good]
    rec, n_rec = record_codes(rid)
    return _Rows(type_idx, ts, values, rec, n_rec, quarantine)


def _stage_encode(rows: _Rows, rules: IdentityRules, previous: IdentityMap | None) -> _Nodes:
    """2. Encode identifiers to node codes, drop blocklisted values.

    The node universe holds the previous map's identifiers first, then this run's new ones.
    """
    names, n_types = rules.names, len(rules.names)
    row_local, local_type, local_value = encode_identifiers(rows.type_idx, rows.values, rules)
    local_blocked = blocked_mask(local_value, rules)
    n_local_obs = np.bincount(row_local, minlength=len(local_type))
    blocked_rows = local_blocked[row_local]
    blocked = {
        names[t]: int(c)
        for t, c in enumerate(np.bincount(rows.type_idx[blocked_rows], minlength=n_types))
        if c
    }
    excluded_blocked = pd.DataFrame(
        {
            "id_type": type_column(local_type[local_blocked], names),
            "id_value": local_value[local_blocked].reset_index(drop=True),
            "reason": _str_col(["blocked"] * int(local_blocked.sum())),
            "n_observations": n_local_obs[local_blocked].astype(np.int64),
        }
    )
    keep_local = np.flatnonzero(~local_blocked)
    local_to_node = np.full(len(local_type), -1, dtype=np.int64)
    prev_to_node = None
    if previous is not None and len(previous.nodes):
        pn = previous.nodes
        ptype_s = pd.Series(pn["id_type"]).map({n: i for i, n in enumerate(names)})
        ptype = ptype_s.fillna(-1).to_numpy(dtype=np.int64)
        p_ok = ptype >= 0
        p_ok[p_ok] = ~blocked_mask(pn["id_value"][p_ok].reset_index(drop=True), rules)
        p_idx = np.flatnonzero(p_ok)
        cand_type = np.concatenate([ptype[p_idx], local_type[keep_local]])
        cand_value = pd.concat(
            [
                pn["id_value"].iloc[p_idx].reset_index(drop=True),
                local_value.iloc[keep_local].reset_index(drop=True),
            ],
            ignore_index=True,
        )
        codes, node_type, node_value = encode_pairs(cand_type, cand_value, n_types)
        prev_to_node = np.full(len(pn), -1, dtype=np.int64)
        prev_to_node[p_idx] = codes[: len(p_idx)]
        local_to_node[keep_local] = codes[len(p_idx) :]
        prev_uid_col = pn["uid"].astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
        prev_uid = np.full(len(node_type), -1, dtype=np.int64)
        prev_uid[prev_to_node[p_idx]] = prev_uid_col[p_idx]
        prev_next_uid = previous.next_uid
        prev_alive = set(np.unique(previous.mapping["uid"].to_numpy()).tolist())
    else:
        node_type = local_type[keep_local]
        node_value = local_value.iloc[keep_local].reset_index(drop=True)
        local_to_node[keep_local] = np.arange(len(keep_local))
        prev_uid = np.full(len(node_type), -1, dtype=np.int64)
        prev_next_uid, prev_alive = 0, set()
    return _Nodes(
        row_local, blocked_rows, blocked, excluded_blocked, node_type, node_value,
        local_to_node, prev_to_node, prev_uid, prev_next_uid, prev_alive,
    )  # fmt: skip


def _stage_links(rows: _Rows, nodes: _Nodes, previous: IdentityMap | None) -> _Links:
    """3. Link every identifier of a record to its strongest one (a star), plus old links."""
    use = ~nodes.blocked_rows
    r_rec, r_node, r_ts = rows.rec[use], nodes.local_to_node[nodes.row_local[use]], rows.ts[use]
    r_rank = nodes.node_type[r_node]
    eu, ev, ets, anchor, order, n_records = record_stars(r_rec, rows.n_rec, r_rank, r_node, r_ts)
    ones = np.ones(len(eu), dtype=np.int64)
    parts = [(eu, ev, ets, ets, ones)]
    if previous is not None and len(previous.edges) and nodes.prev_to_node is not None:
        pe = previous.edges
        pu = nodes.prev_to_node[pe["u"].to_numpy(dtype=np.int64)]
        pv = nodes.prev_to_node[pe["v"].to_numpy(dtype=np.int64)]
        ok = (pu >= 0) & (pv >= 0)
        parts.append(
            (
                pu[ok], pv[ok],
                pe["first_ts"].to_numpy(dtype=_NS).view(np.int64)[ok],
                pe["last_ts"].to_numpy(dtype=_NS).view(np.int64)[ok],
                pe["n_records"].to_numpy(dtype=np.int64)[ok],
            )
        )  # fmt: skip
    cat = [np.concatenate([p[i] for p in parts]) for i in range(5)]
    u, v, first, last, count = dedupe_edges(cat[0], cat[1], cat[2], cat[3], cat[4], nodes.n)
    return _Links(u, v, first, last, count, r_rec, r_node, r_ts, r_rank, anchor, order, n_records)


def _stage_hubs(
    links: _Links, nodes: _Nodes, rules: IdentityRules, n_rec: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4. Find hubs and take them out of linking; records anchored on one are re-linked.

    Updates ``links`` in place; returns ``(hub per node, degree per node, hub per edge)``.
    """
    hub, degree = hubs(links.u, links.v, nodes.node_type, rules)
    if hub.any():
        affected = hub[links.anchor]
        if affected.any():
            rec_hit = np.unique(links.r_rec[links.order][affected])
            sel = np.isin(links.r_rec, rec_hit) & ~hub[links.r_node]
            hu, hv, hts, *_ = record_stars(
                links.r_rec[sel], n_rec, links.r_rank[sel], links.r_node[sel], links.r_ts[sel]
            )
            if len(hu):
                links.u, links.v, links.first, links.last, links.count = dedupe_edges(
                    np.concatenate([links.u, hu]), np.concatenate([links.v, hv]),
                    np.concatenate([links.first, hts]), np.concatenate([links.last, hts]),
                    np.concatenate([links.count, np.ones(len(hu), dtype=np.int64)]), nodes.n,
                )  # fmt: skip
    return hub, degree, hub[links.u] | hub[links.v]


def _stage_components(
    links: _Links, hub_edge: np.ndarray, node_type: np.ndarray, rules: IdentityRules,
    limits: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """5. Components; those breaking a cardinality limit are replayed in rule order.

    Returns ``(component label per node, refusal reason per linking edge, linking edges)``.
    """
    link = np.flatnonzero(~hub_edge)
    lu, lv, count, last = links.u[link], links.v[link], links.count[link], links.last[link]
    keys = [lv, lu, -count, -last] if rules.order == "recency" else [lv, lu, -last, -count]
    labels, reason = _graph.resolve_components(lu, lv, keys, node_type, limits)
    return labels, reason, link


def _stage_ids(labels, hub, nodes: _Nodes, links: _Links, ts, n_types: int, names):
    """6. People and stable ids: survivors keep theirs, merges keep the oldest.

    Returns ``(person per alive node, next_uid, history rows, stats, mapping, nodes, edges)``.
    """
    n_nodes = nodes.n
    alive = np.flatnonzero(~hub)
    person, _ = dense_factorize(labels[alive], 2 * n_nodes + 1)
    now = np.datetime64(pd.Timestamp.now("UTC").tz_localize(None), "ns")
    as_of = np.datetime64(int(ts.max()), "ns") if len(ts) else now
    p_uid, next_uid, hist, stats = assign_ids(
        person, nodes.node_type[alive], nodes.prev_uid[alive], nodes.prev_next_uid,
        nodes.prev_alive, now, as_of,
    )  # fmt: skip
    if next_uid > np.iinfo(np.uint32).max:
        raise DataError(f"resolve: uid space exhausted (next_uid={next_uid:,} > 2**32-1)")
    node_uid = np.full(n_nodes, -1, dtype=np.int64)
    node_uid[alive] = p_uid[person]
    # mapping rows grouped by uid, strongest type first: two stable counting sorts
    srt = counting_sort(nodes.node_type, n_types, alive.astype(np.int64))
    if len(alive):
        lo = int(node_uid[alive].min())
        srt = counting_sort(node_uid - lo, int(node_uid[alive].max()) - lo + 1, srt)
    mapping = pd.DataFrame(
        {
            "id_type": type_column(nodes.node_type[srt], names),
            "id_value": nodes.node_value.iloc[srt].reset_index(drop=True),
            "global_id": format_global_ids(node_uid[srt]),
            "uid": node_uid[srt].astype(np.uint32),
        }
    )
    node_frame = pd.DataFrame(
        {
            "id_type": type_column(nodes.node_type, names),
            "id_value": nodes.node_value.reset_index(drop=True),
            "uid": pd.arrays.IntegerArray(np.maximum(node_uid, 0).astype(np.uint32), node_uid < 0),
        }
    )
    edges = pd.DataFrame(
        {"u": links.u, "v": links.v, "first_ts": links.first.view(_NS),
         "last_ts": links.last.view(_NS), "n_records": links.count}
    )  # fmt: skip
    return person, next_uid, hist, stats, mapping, node_frame, edges


def _refusal_reasons(names, limits) -> np.ndarray:
    return np.array(
        [("single_valued:" if lim == 1 else "limit:") + n for n, lim in zip(names, limits)]
        + ["hub"],
        dtype=object,
    )


def _audit(links: _Links, nodes: _Nodes, link, reason, hub_edge, why, n_types, names):
    """Refused links (limit or single-valued conflicts, then hub links) with their reason."""
    refused_idx = link[reason >= 0]
    code = np.concatenate(
        [reason[reason >= 0].astype(np.int64), np.full(int(hub_edge.sum()), n_types)]
    )
    a_idx = np.concatenate([refused_idx, np.flatnonzero(hub_edge)])
    u, v, nt, nv = links.u, links.v, nodes.node_type, nodes.node_value
    audit = pd.DataFrame(
        {
            "id_type_a": type_column(nt[u[a_idx]], names),
            "id_value_a": nv.iloc[u[a_idx]].reset_index(drop=True),
            "id_type_b": type_column(nt[v[a_idx]], names),
            "id_value_b": nv.iloc[v[a_idx]].reset_index(drop=True),
            "first_ts": links.first[a_idx].view(_NS),
            "last_ts": links.last[a_idx].view(_NS),
            "n_records": links.count[a_idx],
            "reason": _str_col(why[code]),
        }
    )
    return audit, pd.Series(why[code]).value_counts()


def _excluded(nodes: _Nodes, n_obs_node, hub_nodes, names, previous: IdentityMap | None):
    """Blocked values and hub identifiers, accumulated over runs for blocked ones."""
    excluded = pd.concat(
        [
            nodes.excluded_blocked,
            pd.DataFrame(
                {
                    "id_type": type_column(nodes.node_type[hub_nodes], names),
                    "id_value": nodes.node_value.iloc[hub_nodes].reset_index(drop=True),
                    "reason": _str_col(["hub"] * len(hub_nodes)),
                    "n_observations": n_obs_node[hub_nodes].astype(np.int64),
                }
            ),
        ],
        ignore_index=True,
    )
    if previous is not None:
        prev_blocked = previous.excluded[previous.excluded["reason"] == "blocked"]
        if len(prev_blocked):
            excluded = (
                pd.concat([prev_blocked, excluded], ignore_index=True)
                .groupby(["id_type", "id_value", "reason"], sort=False)["n_observations"]
                .sum()
                .reset_index()
            )
    return excluded


def _history(previous: IdentityMap | None, hist: pd.DataFrame) -> pd.DataFrame:
    if previous is None:
        return hist
    return pd.concat([previous.history, hist], ignore_index=True) if len(hist) else previous.history


def _size_distribution(person: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    sizes = np.bincount(person) if len(person) else np.zeros(0, dtype=np.int64)
    dist = {}
    for lo, hi in SIZE_BUCKETS:
        m = (sizes >= lo) if hi is None else ((sizes >= lo) & (sizes <= hi))
        dist[size_label(lo, hi)] = int(m.sum())
    return sizes, dist


# ------------------------------------------------------------------- resolve
def resolve_local(
    observations: pd.DataFrame,
    rules: IdentityRules | None = None,
    previous: IdentityMap | None = None,
    errors: str = "raise",
) -> IdentityMap:
    """The local engine of :func:`mktlab.identity.resolve` (numpy, scipy, numba in process)."""
    secs: dict[str, float] = {}
    clock = perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now_ = perf_counter()
        secs[name] = round(now_ - clock, 3)
        clock = now_

    rules = _check_args(observations, rules, previous, errors)
    limits = np.array([t.max_per_person for t in rules.ranked], dtype=np.int64)

    rows = _stage_validate(observations, rules, errors)
    lap("validate")
    nodes = _stage_encode(rows, rules, previous)
    lap("encode")
    links = _stage_links(rows, nodes, previous)
    lap("links")
    hub, degree, hub_edge = _stage_hubs(links, nodes, rules, rows.n_rec)
    lap("hubs")
    labels, reason, link = _stage_components(links, hub_edge, nodes.node_type, rules, limits)
    lap("components")
    n_obs_node = np.bincount(links.r_node, minlength=nodes.n)
    return assemble(
        rules, previous, nodes, links, labels, reason, link, hub, degree, hub_edge,
        n_obs_node, rows.ts, len(observations), rows.quarantine, lap, secs,
    )  # fmt: skip


def assemble(
    rules, previous, nodes: _Nodes, links: _Links, labels, reason, link, hub, degree, hub_edge,
    n_obs_node, ts, n_observations: int, quarantine: pd.DataFrame, lap, secs,
) -> IdentityMap:  # fmt: skip
    """Stage 6 and the map: stable ids, audit, excluded, history and report.

    Shared by both engines: the Spark engine hands over the same node / link arrays (one
    row per identifier and per link, what the map holds anyway) so ids, audit and report
    have one home.
    """
    names, n_types = rules.names, len(rules.names)
    limits = np.array([t.max_per_person for t in rules.ranked], dtype=np.int64)
    person, next_uid, hist, stats, mapping, node_frame, edges = _stage_ids(
        labels, hub, nodes, links, ts, n_types, names
    )
    lap("ids")

    # audit, excluded, history, report
    why = _refusal_reasons(names, limits)
    audit, refused_counts = _audit(links, nodes, link, reason, hub_edge, why, n_types, names)
    hub_nodes = np.flatnonzero(hub)
    excluded = _excluded(nodes, n_obs_node, hub_nodes, names, previous)
    sizes, dist = _size_distribution(person)
    top = hub_nodes[np.argsort(-degree[hub_nodes])[:5]]
    node_type, node_value = nodes.node_type, nodes.node_value
    report = IdentityReport(
        n_observations=n_observations,
        n_quarantined=len(quarantine),
        n_records=links.n_records,
        n_identifiers=len(mapping),
        n_people=len(sizes),
        n_links=len(links.u),
        order=rules.order,
        refused={str(k): int(c) for k, c in refused_counts.items()},
        blocked=nodes.blocked,
        hubs={
            names[t]: int(c)
            for t, c in enumerate(np.bincount(node_type[hub_nodes], minlength=n_types))
            if c
        },
        hub_examples=[
            f"{names[node_type[i]]}:{node_value.iloc[i]} ({int(degree[i])} links)" for i in top
        ],
        size_distribution=dist,
        max_person_size=int(sizes.max()) if len(sizes) else 0,
        previous_people=len(nodes.prev_alive),
        next_uid=int(next_uid),
        **stats,
    )
    lap("report")
    report.seconds = secs
    return IdentityMap(
        mapping=mapping,
        nodes=node_frame,
        edges=edges,
        rules=rules,
        next_uid=next_uid,
        report=report,
        audit=audit,
        history=_history(previous, hist),
        quarantine=quarantine,
        excluded=excluded,
    )
