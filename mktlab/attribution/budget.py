"""Turn attributed value into budget advice: ROI per channel and a proposed spend split.

Assumption (stated in every result): each channel's return follows a concave power curve
through its current point,

    value_c(s) = a_c · s^β,   a_c = attributed_value_c / spend_c^β,   0 ≤ β < 1,

i.e. every channel has the same spend elasticity β (diminishing returns), and attributed
value is the value the channel causes. Maximising ``Σ value_c(s_c)`` under
``Σ s_c = budget`` gives the closed form ``s_c ∝ a_c^{1/(1−β)}``. ``β = 0`` splits the
budget in proportion to attributed value; ``β → 1`` moves everything to the best ROI.
Channels without spend (e.g. direct, organic) cannot be scaled and keep zero spend.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from mktlab.errors import ValidationError


def _series(x: pd.Series | Mapping[str, float], name: str) -> pd.Series:
    s = pd.Series(x, dtype=np.float64) if not isinstance(x, pd.Series) else x.astype(np.float64)
    if s.isna().any() or not np.isfinite(s.to_numpy()).all():
        raise ValidationError(
            f"{name}: missing or non-finite value for {list(s.index[~np.isfinite(s.to_numpy())])}"
        )
    if (s < 0).any():
        raise ValidationError(f"{name}: negative value for {list(s.index[s < 0])}")
    return s


def reallocate_budget(
    attributed_value: pd.Series | Mapping[str, float],
    spend: pd.Series | Mapping[str, float],
    *,
    total_budget: float | None = None,
    elasticity: float = 0.5,
) -> pd.DataFrame:
    """ROI per channel and a proposed spend split under ``total_budget``.

    Parameters
    ----------
    attributed_value : Series or mapping
        Per channel, the value (or conversions) attributed by a method.
    spend : Series or mapping
        Per channel, the current spend. Channels missing here count as zero spend.
    total_budget : float, optional
        Budget to split; defaults to the current total spend.
    elasticity : float
        β in ``value = a · spend^β`` (0 ≤ β < 1); see the module docstring.

    Returns
    -------
    DataFrame
        Per channel: ``spend``, ``attributed_value``, ``roi`` (value / spend, NaN-free:
        0 where there is no spend), ``proposed_spend``, ``change``,
        ``expected_value`` (under the assumption). ``attrs["assumption"]`` states it.
    """
    if not 0 <= elasticity < 1:
        raise ValidationError(f"elasticity: must be in [0, 1), got {elasticity!r}")
    val = _series(attributed_value, "attributed_value")
    sp = _series(spend, "spend")
    idx = val.index.union(sp.index, sort=False)
    val = val.reindex(idx, fill_value=0.0)
    sp = sp.reindex(idx, fill_value=0.0)
    budget = float(sp.sum()) if total_budget is None else float(total_budget)
    if not np.isfinite(budget) or budget < 0:
        raise ValidationError(f"total_budget: must be a finite number >= 0, got {total_budget!r}")
    paid = sp > 0
    if not paid.any():
        raise ValidationError("spend: no channel has spend > 0; nothing to reallocate")
    roi = np.divide(val.to_numpy(), sp.to_numpy(), out=np.zeros(len(idx)), where=paid.to_numpy())
    a = np.zeros(len(idx))
    a[paid.to_numpy()] = val[paid].to_numpy() / sp[paid].to_numpy() ** elasticity
    weight = a ** (1.0 / (1.0 - elasticity))
    if weight.sum() > 0:
        proposed = budget * weight / weight.sum()
    else:  # nothing earns: keep the current split, scaled to the budget
        proposed = budget * sp.to_numpy() / sp.sum()
    expected = a * proposed**elasticity
    out = pd.DataFrame(
        {
            "spend": sp.to_numpy(),
            "attributed_value": val.to_numpy(),
            "roi": roi,
            "proposed_spend": proposed,
            "change": proposed - sp.to_numpy(),
            "expected_value": np.where(paid.to_numpy(), expected, val.to_numpy()),
        },
        index=pd.Index(idx, name="channel"),
    )
    out.attrs["assumption"] = (
        f"value_c(spend) = a_c * spend^{elasticity:g} through each channel's current "
        "(spend, attributed value); same elasticity for all channels; attributed value is "
        "causal; channels without spend keep zero spend"
    )
    return out
