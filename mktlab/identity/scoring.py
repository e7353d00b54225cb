"""Scoring a resolution against truth: record-level assignment and pairwise P/R/F1."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mktlab.errors import ValidationError, require_columns
from mktlab.identity._kernels import best_per_group
from mktlab.identity.map import IdentityMap


def assign_records(observations: pd.DataFrame, imap: IdentityMap) -> pd.DataFrame:
    """The person of every record: the uid of its highest-priority resolvable identifier.

    Parameters
    ----------
    observations : DataFrame
        ``record_id, id_type, id_value`` (other columns are ignored).
    imap : IdentityMap

    Returns
    -------
    DataFrame
        ``record_id, uid`` with one row per distinct record; ``uid`` is ``UInt32`` and
        ``<NA>`` for records none of whose identifiers resolve (junk-only records).
    """
    require_columns(observations, ["record_id", "id_type", "id_value"], table="observations")
    obs = observations[["record_id", "id_type", "id_value"]].reset_index(drop=True)
    u = imap._uids_for(obs["id_type"], None, obs["id_value"])
    names = imap.rules.names
    tcodes, tuniq = pd.factorize(obs["id_type"])
    lut = np.array(
        [names.index(c) if (c := imap.rules.canonical(t)) else len(names) for t in tuniq]
        + [len(names)],
        dtype=np.int64,
    )
    rank = np.where(u >= 0, lut[tcodes], len(names) + 1)  # unresolved rows lose to resolved ones
    rid = obs["record_id"]
    if pd.api.types.is_integer_dtype(rid.dtype) and len(rid) and not rid.isna().any():
        ids = rid.to_numpy(dtype=np.int64)
        lo, hi = int(ids.min()), int(ids.max())
        dense = hi - lo < 4 * len(ids) + 1024
    else:
        dense = False
    if dense:  # record ids index the groups directly; output sorted by record_id
        best, present = best_per_group(ids - lo, hi - lo + 1, rank, u)
        keep = np.flatnonzero(present)
        record_id: pd.Series | np.ndarray = keep + lo
        uid = best[keep]
    else:
        codes, uniques = pd.factorize(rid)
        ok = codes >= 0
        best, _ = best_per_group(codes[ok].astype(np.int64), len(uniques), rank[ok], u[ok])
        record_id, uid = pd.Series(uniques), best
    return pd.DataFrame(
        {
            "record_id": record_id,
            "uid": pd.arrays.IntegerArray(np.maximum(uid, 0).astype(np.uint32), uid < 0),
        }
    )


def _labels(x: Any, name: str) -> np.ndarray:
    codes, _ = pd.factorize(pd.Series(x, copy=False).reset_index(drop=True))
    codes = codes.astype(np.int64)
    na = codes < 0
    if na.any():  # an unassigned item is a cluster of its own
        codes[na] = codes.max(initial=-1) + 1 + np.arange(int(na.sum()))
    return codes


def pairwise_scores(pred: Any, truth: Any) -> dict[str, float]:
    """Pairwise precision / recall / F1 of "same cluster", without enumerating pairs.

    With contingency counts :math:`n_{ij}` (items in predicted cluster *i* and true
    cluster *j*), row sums :math:`a_i` and column sums :math:`b_j`:
    :math:`TP=\\sum_{ij}\\binom{n_{ij}}{2}`, precision :math:`=TP/\\sum_i\\binom{a_i}{2}`,
    recall :math:`=TP/\\sum_j\\binom{b_j}{2}`. Missing labels count as singletons.

    Parameters
    ----------
    pred, truth : array-like of equal length
        Cluster labels per item (e.g. predicted uid and true person per record).

    Returns
    -------
    dict
        ``precision, recall, f1`` and the pair counts ``tp, pred_pairs, true_pairs``.
    """
    p, t = _labels(pred, "pred"), _labels(truth, "truth")
    if len(p) != len(t):
        raise ValidationError(
            f"pairwise_scores: pred has {len(p):,} items but truth has {len(t):,}"
        )

    def pairs(counts: np.ndarray) -> float:
        c = counts.astype(np.float64)
        return float((c * (c - 1) / 2).sum())

    if len(p) == 0:
        return {
            "precision": 1.0,
            "recall": 1.0,
            "f1": 1.0,
            "tp": 0.0,
            "pred_pairs": 0.0,
            "true_pairs": 0.0,
        }
    nt = int(t.max()) + 1
    _, cell = np.unique(p * nt + t, return_counts=True)
    tp = pairs(cell)
    pp, tt = pairs(np.bincount(p)), pairs(np.bincount(t))
    precision = tp / pp if pp else 1.0
    recall = tp / tt if tt else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "tp": tp,
        "pred_pairs": pp,
        "true_pairs": tt,
    }
