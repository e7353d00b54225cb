"""Rule-based attribution: first touch, last touch, linear, time decay, position based.

Every rule gives each touch of a journey a share of that journey's conversions (the
shares of one journey sum to 1), then sums shares per channel, weighted by the path's
conversions and value. All of it is numpy reductions over the flat touch arrays of
:class:`~mktlab.attribution.paths.Paths`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mktlab.attribution.paths import Paths, as_paths
from mktlab.errors import ValidationError

HEURISTICS = ("first_touch", "last_touch", "linear", "time_decay", "position_based")


def touch_shares(
    paths: Paths,
    method: str,
    *,
    half_life: float = 7.0,
    first_weight: float = 0.4,
    last_weight: float = 0.4,
) -> np.ndarray:
    """Share of its journey's conversion each touch receives (sums to 1 per journey).

    Parameters
    ----------
    paths : Paths
    method : {"first_touch", "last_touch", "linear", "time_decay", "position_based"}
    half_life : float
        Time decay: a touch ``half_life`` older than the journey's end gets half the weight
        of one at the end: ``w = 2 ** (-age / half_life)``. In days when ``paths`` came
        from timestamped touches (``paths.age_unit == "days"``), else in touches from the
        end of the path.
    first_weight, last_weight : float
        Position based (U-shape): shares of the first and last touch; the middle touches
        split the rest equally. One touch gets 1; two touches split by the ratio of the
        two weights.
    """
    n = len(paths.touches)
    lengths = paths.lengths
    pidx = paths.path_index
    pos = paths.position
    length_t = lengths[pidx]
    if method == "first_touch":
        return (pos == 0).astype(np.float64)
    if method == "last_touch":
        return (pos == length_t - 1).astype(np.float64)
    if method == "linear":
        return 1.0 / length_t
    if method == "time_decay":
        if not half_life > 0:
            raise ValidationError(f"half_life: must be > 0, got {half_life!r}")
        w = np.exp2(-paths.touch_age() / half_life)
        return w / np.bincount(pidx, weights=w, minlength=paths.n_paths)[pidx]
    if method == "position_based":
        if first_weight < 0 or last_weight < 0 or first_weight + last_weight > 1:
            raise ValidationError(
                f"first_weight, last_weight: need both >= 0 and sum <= 1, got "
                f"{first_weight}, {last_weight}"
            )
        out = np.empty(n)
        middle = (1.0 - first_weight - last_weight) / np.maximum(length_t - 2, 1)
        out[:] = middle
        out[pos == 0] = first_weight
        out[pos == length_t - 1] = last_weight
        two = length_t == 2
        ends = first_weight + last_weight
        if ends > 0:
            out[two & (pos == 0)] = first_weight / ends
            out[two & (pos == 1)] = last_weight / ends
        else:
            out[two] = 0.5
        out[length_t == 1] = 1.0
        return out
    raise ValidationError(f"method: {method!r} is not one of {HEURISTICS}")


def heuristic_attribution(paths: Any, method: str = "linear", **kwargs: Any) -> pd.DataFrame:
    """Credit conversions and value to channels with a rule-based model.

    Parameters
    ----------
    paths : Paths or DataFrame
        Journeys (see :func:`~mktlab.attribution.paths.as_paths`).
    method : str
        One of :data:`HEURISTICS`; ``kwargs`` go to :func:`touch_shares`.

    Returns
    -------
    DataFrame
        Indexed by channel, columns ``conversions`` and ``value``; each sums to the
        paths' totals.

    Raises
    ------
    DataError
        When the journeys hold no conversions at all.
    """
    paths = as_paths(paths)
    paths.require_conversions(method)
    share = touch_shares(paths, method, **kwargs)
    pidx = paths.path_index
    k = paths.n_channels
    conv = np.bincount(paths.touches, weights=share * paths.conversions[pidx], minlength=k)
    val = np.bincount(paths.touches, weights=share * paths.value[pidx], minlength=k)
    return pd.DataFrame(
        {"conversions": conv, "value": val}, index=pd.Index(paths.channels, name="channel")
    )
