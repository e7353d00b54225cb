"""Small hand-checkable tables for the audience tests."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from mktlab.audience import AudienceCatalog, AudienceStore

TIERS = ["bronze", "silver", "gold"]


def profiles_frame() -> pd.DataFrame:
    """Eight users; nulls in city, age, spend and vip on purpose."""
    return pd.DataFrame(
        {
            "uid": np.array([1, 2, 3, 5, 8, 13, 21, 34], dtype=np.uint32),
            "city": ["SH", "BJ", "SH", "GZ", None, "BJ", "SH", "CD"],
            "age": pd.array([25, 31, None, 40, 18, 65, 34, 25], dtype="Int64"),
            "spend": [10.5, 200.0, 55.25, np.nan, 0.0, 999.99, 500.0, 55.25],
            "vip": pd.array([True, False, False, True, False, None, True, False], dtype="boolean"),
            "tier": pd.Categorical(
                ["bronze", "silver", "gold", "silver", "bronze", "gold", "gold", "bronze"],
                categories=TIERS,
                ordered=True,
            ),
            "signup": [dt.date(2024, m, 1) for m in (1, 2, 3, 4, 5, 6, 7, 8)],
        }
    )


def events_frame() -> pd.DataFrame:
    """Events over 2026-06-01 .. 2026-06-30; uid 99 has events but no profile."""
    rows = [
        (1, "2026-06-30 10:00", "view"),
        (1, "2026-06-29 09:00", "order"),
        (1, "2026-06-20 09:00", "order"),
        (2, "2026-06-25 12:00", "view"),
        (3, "2026-06-01 00:00", "order"),
        (3, "2026-06-15 00:00", "order"),
        (3, "2026-06-16 00:00", "order"),
        (5, "2026-06-24 23:59", "cart"),
        (99, "2026-06-28 08:00", "view"),
        (99, "2026-06-28 09:00", "order"),
    ]
    return pd.DataFrame(
        {
            "uid": np.array([r[0] for r in rows], dtype=np.uint32),
            "ts": pd.to_datetime([r[1] for r in rows]),
            "event": [r[2] for r in rows],
        }
    )


@pytest.fixture
def catalog(tmp_path) -> AudienceCatalog:
    return AudienceCatalog(tmp_path / "audiences.duckdb")


@pytest.fixture(params=["roaring", "dense"])
def store(request, catalog) -> AudienceStore:
    """The small store, once per engine (results must not depend on the engine)."""
    return AudienceStore.build(
        profiles_frame(), events_frame(), engine=request.param, catalog=catalog
    )
