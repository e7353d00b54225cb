from __future__ import annotations

import pandas as pd
import pytest

from mktlab.sandbox import LoggedData, simulate_bandit


class ColumnUplift:
    """A stand-in uplift model: ``predict`` returns one feature as the uplift."""

    def __init__(self, column: str):
        self.column = column

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"uplift": X[self.column].to_numpy(dtype=float)}, index=X.index)


@pytest.fixture
def sim() -> LoggedData:
    data, mu = simulate_bandit(3000, seed=5)
    data.meta["mu"] = mu
    return data


@pytest.fixture
def tiny() -> LoggedData:
    """Six decisions, two users twice, hand-checkable."""
    frame = pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "a", "b", "d"],
            "ts": pd.to_datetime(
                ["2026-08-01", "2026-08-02", "2026-08-03", "2026-08-04", "2026-09-20", "2026-08-05"]
            ),
            "tier_level": [1, 3, 5, 1, 3, 4],
            "treatment": [0, 1, 1, 1, 0, 0],
            "propensity": [0.5] * 6,
            "converted": [0, 1, 1, 0, 0, 1],
            "revenue": [0.0, 100.0, 50.0, 0.0, 0.0, 80.0],
        }
    )
    return LoggedData(frame, features=("tier_level",), name="tiny")


@pytest.fixture
def models():
    return {"by_x2": ColumnUplift("x2")}
