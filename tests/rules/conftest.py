from __future__ import annotations

import pandas as pd
import pytest


def frame(rows):
    """Events from (user, minute, event, category, amount) tuples, starting 2026-08-03 10:00 (a Monday)."""
    t0 = pd.Timestamp("2026-08-03 10:00")
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "ts": [t0 + pd.Timedelta(minutes=r[1]) for r in rows],
            "event": [r[2] for r in rows],
            "category": [r[3] for r in rows],
            "amount": [float(r[4]) for r in rows],
        }
    )


@pytest.fixture
def profiles():
    return pd.DataFrame(
        {"user_id": ["a", "b", "c"], "tier_level": [1, 3, 5], "city": ["SH", "BJ", "SH"]}
    )
