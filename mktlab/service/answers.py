"""Small helpers that shape the service's answers (numbers, first values, /issue bodies)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _first(pred: Any, column: str) -> Any:
    if isinstance(pred, pd.DataFrame):
        return pred[column].iloc[0] if column in pred.columns else pred.iloc[0, 0]
    if isinstance(pred, pd.Series):
        return pred.iloc[0]
    arr = np.asarray(pred)
    return arr.reshape(-1)[0].item() if arr.size else None


def _answer(
    campaign_id: str,
    user_id: str,
    request_id: str,
    status: str,
    reason: str | None,
    *,
    coupon_code: str | None = None,
    seq: int | None = None,
    uplift: float | None = None,
    replayed: bool = False,
) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "user_id": user_id,
        "request_id": request_id,
        "status": status,
        "reason": reason,
        "coupon_code": coupon_code,
        "seq": seq,
        "uplift": uplift,
        "replayed": replayed,
    }
