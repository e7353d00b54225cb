"""Stable ids: people keep their ``global_id`` / ``uid`` from one run to the next.

Against a previous map, each old person continues in the part holding its strongest
identifier, a merge keeps the oldest uid, a split part gets a fresh one, and uids are
never reused. Every change is a history row (merge, split, move, retire).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mktlab.identity._encode import format_global_ids
from mktlab.identity.map import empty_history

_NS = "datetime64[ns]"


def assign_ids(person, node_type, prev_uid, prev_next_uid, prev_uids_alive, now, as_of):
    """uid per person; history of merges / splits / moves / retirements vs the previous map."""
    n_people = int(person.max()) + 1 if len(person) else 0
    has_prev = prev_uid >= 0
    if not has_prev.any():
        uid = prev_next_uid + np.arange(n_people, dtype=np.int64)
        retired = np.asarray(sorted(prev_uids_alive), dtype=np.int64)
        hist = history_rows("retire", retired, retired, now, as_of)
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
            history_rows("merge", uid[merged["p"].to_numpy()], merged["g"].to_numpy(), now, as_of),
            history_rows("split", uid[split["p"].to_numpy()], split["g"].to_numpy(), now, as_of),
            history_rows("move", uid[moved["p"].to_numpy()], moved["g"].to_numpy(), now, as_of),
            history_rows("retire", retired, retired, now, as_of),
        ],
        ignore_index=True,
    )
    n_split_people = len(split)
    stats = dict(
        merges=len(merged), splits=n_split_people, retired=len(retired),
        new_people=len(fresh) - n_split_people,
    )  # fmt: skip
    return uid, next_uid, hist, stats


def history_rows(event, uid, other, now, as_of) -> pd.DataFrame:
    uid = np.asarray(uid, dtype=np.int64)
    other = np.asarray(other, dtype=np.int64)
    if len(uid) == 0:
        return empty_history()
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
