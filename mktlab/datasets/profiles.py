"""Feature rows by ``user_id`` from the world's ``profiles.parquet``, for request-time scoring.

``/issue`` and the live loop score a user's uplift from their stored profile when a
request carries no features; this keeps the table loaded and reloads it when rewritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mktlab.config import settings
from mktlab.io import FileBacked


class ProfileLookup:
    """Look up one user's features (``None`` when the user or a column is unknown).

    Parameters
    ----------
    path : str or Path, optional
        A Parquet table with a ``user_id`` column (default: the world's profiles).
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self._table = FileBacked(self._path, self._load, every=5.0)

    def _path(self) -> Path:
        return self.path or settings().world_dir / "profiles.parquet"

    def _load(self) -> pd.DataFrame:
        df = pd.read_parquet(self._path())
        return df.drop_duplicates("user_id").set_index("user_id")

    def features(self, user_id: str, columns: Sequence[str]) -> dict[str, Any] | None:
        df = self._table.get()
        if df is None or user_id not in df.index:
            return None
        if any(c not in df.columns for c in columns):
            return None
        row = df.loc[user_id, list(columns)]
        return {c: (v.item() if hasattr(v, "item") else v) for c, v in row.items()}
