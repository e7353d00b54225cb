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
"""

from __future__ import annotations

import warnings
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
from mktlab.identity._kernels import counting_sort, is_grouped, star_edges, typed_degree
from mktlab.identity.map import IdentityMap, _empty_history
from mktlab.identity.report import SIZE_BUCKETS, IdentityReport, size_label
from mktlab.identity.rules import IdentityRules

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


# ---------------------------------------------------------------------- edges
def _star_edges(rec, n_rec, rank, node, ts):
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


def _record_codes(rid: pd.Series) -> tuple[np.ndarray, int]:
    """Non-negative record codes and their range; dense integer ids are used as they are."""
    if pd.api.types.is_integer_dtype(rid.dtype) and len(rid):
        rec = rid.to_numpy(dtype=np.int64)
        lo, hi = int(rec.min()), int(rec.max())
        if hi - lo < 4 * len(rec) + 1024:  # dense enough for a counting sort
            return rec - lo, hi - lo + 1
    codes = pd.factorize(rid)[0].astype(np.int64)
    return codes, int(codes.max()) + 1 if len(codes) else 1


def _dedupe_edges(u, v, first, last, count, n_nodes):
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


def _hubs(u, v, node_type, rules: IdentityRules):
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


# ----------------------------------------------------------------- stable ids
def _assign_ids(person, node_type, prev_uid, prev_next_uid, prev_uids_alive, now, as_of):
    """uid per person; history of merges / splits / moves / retirements vs the previous map."""
    n_people = int(person.max()) + 1 if len(person) else 0
    has_prev = prev_uid >= 0
    if not has_prev.any():
        uid = prev_next_uid + np.arange(n_people, dtype=np.int64)
        retired = np.asarray(sorted(prev_uids_alive), dtype=np.int64)
        hist = _history_rows("retire", retired, retired, now, as_of)
        return uid, prev_next_uid + n_people, hist, dict(retired=len(retired), new_people=n_people)
    pairs = pd.DataFrame({"g": prev_uid[has_prev], "p": person[has_prev], "r": node_type[has_prev]})
    agg = (
        pairs.groupby(["g", "p"], sort=False).agg(n=("r", "size"), best=("r", "min")).reset_index()
    )
    # each old person continues in the part holding its strongest identifier (then most)
    agg = agg.sort_values(["g", "best", "n", "p"], ascending=[True, True, False, True])
    primary = agg.drop_duplicates("g")
    survivor = primary.groupby("p")["g"].min()  # the oldest uid wins a merge
    uid = np.full(n_people, -1, dtype=np.int64)
    uid[survivor.index.to_numpy()] = survivor.to_numpy()
    fresh = np.flatnonzero(uid < 0)
    uid[fresh] = prev_next_uid + np.arange(len(fresh), dtype=np.int64)
    next_uid = prev_next_uid + len(fresh)
    merged = primary[primary["g"].to_numpy() != uid[primary["p"].to_numpy()]]
    others = agg.merge(primary[["g", "p"]], on=["g", "p"], how="left", indicator=True)
    others = others[others["_merge"] == "left_only"]
    p_fresh = np.zeros(n_people, dtype=np.bool_)
    p_fresh[fresh] = True
    split = others[p_fresh[others["p"].to_numpy()]].drop_duplicates("p")
    moved = others[~p_fresh[others["p"].to_numpy()]]
    moved = moved[moved["g"].to_numpy() != uid[moved["p"].to_numpy()]]
    retired = np.asarray(sorted(set(prev_uids_alive) - set(primary["g"].tolist())), dtype=np.int64)
    hist = pd.concat(
        [
            _history_rows("merge", uid[merged["p"].to_numpy()], merged["g"].to_numpy(), now, as_of),
            _history_rows("split", uid[split["p"].to_numpy()], split["g"].to_numpy(), now, as_of),
            _history_rows("move", uid[moved["p"].to_numpy()], moved["g"].to_numpy(), now, as_of),
            _history_rows("retire", retired, retired, now, as_of),
        ],
        ignore_index=True,
    )
    n_split_people = len(split)
    stats = dict(
        merges=len(merged), splits=n_split_people, retired=len(retired),
        new_people=len(fresh) - n_split_people,
    )  # fmt: skip
    return uid, next_uid, hist, stats


def _history_rows(event, uid, other, now, as_of) -> pd.DataFrame:
    uid = np.asarray(uid, dtype=np.int64)
    other = np.asarray(other, dtype=np.int64)
    if len(uid) == 0:
        return _empty_history()
    return pd.DataFrame(
        {
            "ts": np.full(len(uid), now, dtype=_NS),
            "as_of": np.full(len(uid), as_of, dtype=_NS),
            "event": pd.Series([event] * len(uid), dtype="str"),
            "global_id": format_global_ids(uid),
            "uid": uid.astype(np.uint32),
            "other_global_id": format_global_ids(other),
            "other_uid": other.astype(np.uint32),
        }
    )


def _str_col(values: np.ndarray | list) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=object), dtype="str")


# ------------------------------------------------------------------- resolve
def resolve(
    observations: pd.DataFrame,
    rules: IdentityRules | None = None,
    previous: IdentityMap | None = None,
    errors: str = "raise",
) -> IdentityMap:
    """Resolve raw identifier observations into people.

    Parameters
    ----------
    observations : DataFrame
        Columns ``record_id, ts, id_type, id_value`` (``source`` optional). Identifiers
        sharing a ``record_id`` were seen together and are linked.
    rules : IdentityRules, optional
        Defaults to the previous map's rules, else :class:`IdentityRules` defaults.
    previous : IdentityMap, optional
        A map from an earlier run. ``observations`` are then *new* observations added to
        the previous links; every surviving person keeps its ``global_id`` and ``uid``.
    errors : {"raise", "quarantine"}
        What to do with bad rows (null ids, unknown types, unparseable timestamps).

    Returns
    -------
    IdentityMap

    Raises
    ------
    SchemaError
        A required column is missing.
    DataError
        Bad rows and ``errors="raise"``; the message names each field with sample rows.
    """
    secs: dict[str, float] = {}
    clock = perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now_ = perf_counter()
        secs[name] = round(now_ - clock, 3)
        clock = now_

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
    names, n_types = rules.names, len(rules.names)
    limits = np.array([t.max_per_person for t in rules.ranked], dtype=np.int64)

    # 1. validate
    good, type_idx, ts, quarantine = _validate(observations, rules, errors)
    type_idx, ts = type_idx[good], ts[good]
    values = observations["id_value"]
    rid = observations["record_id"]
    if not good.all():
        values, rid = values[good], rid[good]
    rec, n_rec = _record_codes(rid)
    lap("validate")

    # 2. encode, blocklist
    row_local, local_type, local_value = encode_identifiers(type_idx, values, rules)
    local_blocked = blocked_mask(local_value, rules)
    n_local_obs = np.bincount(row_local, minlength=len(local_type))
    blocked_rows = local_blocked[row_local]
    blocked = {
        names[t]: int(c)
        for t, c in enumerate(np.bincount(type_idx[blocked_rows], minlength=n_types))
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

    # universe of nodes: previous map's identifiers first, then this run's new ones
    keep_local = np.flatnonzero(~local_blocked)
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
        local_to_node = np.full(len(local_type), -1, dtype=np.int64)
        local_to_node[keep_local] = codes[len(p_idx) :]
        prev_uid_col = pn["uid"].astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
        prev_uid = np.full(len(node_type), -1, dtype=np.int64)
        prev_uid[prev_to_node[p_idx]] = prev_uid_col[p_idx]
        prev_next_uid = previous.next_uid
        prev_alive = set(np.unique(previous.mapping["uid"].to_numpy()).tolist())
    else:
        node_type = local_type[keep_local]
        node_value = local_value.iloc[keep_local].reset_index(drop=True)
        local_to_node = np.full(len(local_type), -1, dtype=np.int64)
        local_to_node[keep_local] = np.arange(len(keep_local))
        prev_uid = np.full(len(node_type), -1, dtype=np.int64)
        prev_next_uid, prev_alive = 0, set()
    n_nodes = len(node_type)
    lap("encode")

    # 3. links: star per record, merged with previous links
    use = ~blocked_rows
    r_rec, r_node, r_ts = rec[use], local_to_node[row_local[use]], ts[use]
    r_rank = node_type[r_node]
    eu, ev, ets, anchor, order, n_records = _star_edges(r_rec, n_rec, r_rank, r_node, r_ts)
    ones = np.ones(len(eu), dtype=np.int64)
    parts = [(eu, ev, ets, ets, ones)]
    if previous is not None and len(previous.edges):
        pe = previous.edges
        pu = prev_to_node[pe["u"].to_numpy(dtype=np.int64)]
        pv = prev_to_node[pe["v"].to_numpy(dtype=np.int64)]
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
    u, v, first, last, count = _dedupe_edges(cat[0], cat[1], cat[2], cat[3], cat[4], n_nodes)
    lap("links")

    # 4. hubs; records anchored on a hub are re-linked around it
    hub, degree = _hubs(u, v, node_type, rules)
    if hub.any():
        r_sorted = r_rec[order]
        affected = hub[anchor]
        if affected.any():
            rec_hit = np.unique(r_sorted[affected])
            sel = np.isin(r_rec, rec_hit) & ~hub[r_node]
            hu, hv, hts, *_ = _star_edges(r_rec[sel], n_rec, r_rank[sel], r_node[sel], r_ts[sel])
            if len(hu):
                u, v, first, last, count = _dedupe_edges(
                    np.concatenate([u, hu]), np.concatenate([v, hv]),
                    np.concatenate([first, hts]), np.concatenate([last, hts]),
                    np.concatenate([count, np.ones(len(hu), dtype=np.int64)]), n_nodes,
                )  # fmt: skip
    hub_edge = hub[u] | hub[v]
    lap("hubs")

    # 5. components + ordered conflict replay
    link = np.flatnonzero(~hub_edge)
    lu, lv = u[link], v[link]
    if rules.order == "recency":
        keys = [lv, lu, -count[link], -last[link]]
    else:
        keys = [lv, lu, -last[link], -count[link]]
    labels, reason = _graph.resolve_components(lu, lv, keys, node_type, limits)
    lap("components")

    # 6. people and stable ids
    alive = np.flatnonzero(~hub)
    person, _ = dense_factorize(labels[alive], 2 * n_nodes + 1)
    now = np.datetime64(pd.Timestamp.now("UTC").tz_localize(None), "ns")
    as_of = np.datetime64(int(ts.max()), "ns") if len(ts) else now
    p_uid, next_uid, hist, stats = _assign_ids(
        person, node_type[alive], prev_uid[alive], prev_next_uid, prev_alive, now, as_of
    )
    if next_uid > np.iinfo(np.uint32).max:
        raise DataError(f"resolve: uid space exhausted (next_uid={next_uid:,} > 2**32-1)")
    node_uid = np.full(n_nodes, -1, dtype=np.int64)
    node_uid[alive] = p_uid[person]
    # mapping rows grouped by uid, strongest type first: two stable counting sorts
    srt = counting_sort(node_type, n_types, alive.astype(np.int64))
    if len(alive):
        lo = int(node_uid[alive].min())
        srt = counting_sort(node_uid - lo, int(node_uid[alive].max()) - lo + 1, srt)
    np.asarray(names, dtype=object)
    mapping = pd.DataFrame(
        {
            "id_type": type_column(node_type[srt], names),
            "id_value": node_value.iloc[srt].reset_index(drop=True),
            "global_id": format_global_ids(node_uid[srt]),
            "uid": node_uid[srt].astype(np.uint32),
        }
    )
    nodes = pd.DataFrame(
        {
            "id_type": type_column(node_type, names),
            "id_value": node_value.reset_index(drop=True),
            "uid": pd.arrays.IntegerArray(np.maximum(node_uid, 0).astype(np.uint32), node_uid < 0),
        }
    )
    edges = pd.DataFrame(
        {"u": u, "v": v, "first_ts": first.view(_NS), "last_ts": last.view(_NS), "n_records": count}
    )
    lap("ids")

    # audit, excluded, history, report
    refused_idx = link[reason >= 0]
    why = np.array(
        [("single_valued:" if lim == 1 else "limit:") + n for n, lim in zip(names, limits)]
        + ["hub"],
        dtype=object,
    )
    code = np.concatenate(
        [reason[reason >= 0].astype(np.int64), np.full(int(hub_edge.sum()), n_types)]
    )
    a_idx = np.concatenate([refused_idx, np.flatnonzero(hub_edge)])
    audit = pd.DataFrame(
        {
            "id_type_a": type_column(node_type[u[a_idx]], names),
            "id_value_a": node_value.iloc[u[a_idx]].reset_index(drop=True),
            "id_type_b": type_column(node_type[v[a_idx]], names),
            "id_value_b": node_value.iloc[v[a_idx]].reset_index(drop=True),
            "first_ts": first[a_idx].view(_NS),
            "last_ts": last[a_idx].view(_NS),
            "n_records": count[a_idx],
            "reason": _str_col(why[code]),
        }
    )
    hub_nodes = np.flatnonzero(hub)
    n_obs_node = np.bincount(r_node, minlength=n_nodes)
    excluded = pd.concat(
        [
            excluded_blocked,
            pd.DataFrame(
                {
                    "id_type": type_column(node_type[hub_nodes], names),
                    "id_value": node_value.iloc[hub_nodes].reset_index(drop=True),
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
        history = (
            pd.concat([previous.history, hist], ignore_index=True)
            if len(hist)
            else previous.history
        )
    else:
        history = hist

    sizes = np.bincount(person) if len(person) else np.zeros(0, dtype=np.int64)
    dist = {}
    for lo, hi in SIZE_BUCKETS:
        m = (sizes >= lo) if hi is None else ((sizes >= lo) & (sizes <= hi))
        dist[size_label(lo, hi)] = int(m.sum())
    top = hub_nodes[np.argsort(-degree[hub_nodes])[:5]]
    refused_counts = pd.Series(why[code]).value_counts()
    report = IdentityReport(
        n_observations=len(observations),
        n_quarantined=len(quarantine),
        n_records=n_records,
        n_identifiers=len(mapping),
        n_people=len(sizes),
        n_links=len(u),
        order=rules.order,
        refused={str(k): int(c) for k, c in refused_counts.items()},
        blocked=blocked,
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
        previous_people=len(prev_alive),
        next_uid=int(next_uid),
        **stats,
    )
    lap("report")
    report.seconds = secs
    return IdentityMap(
        mapping=mapping,
        nodes=nodes,
        edges=edges,
        rules=rules,
        next_uid=next_uid,
        report=report,
        audit=audit,
        history=history,
        quarantine=quarantine,
        excluded=excluded,
    )
