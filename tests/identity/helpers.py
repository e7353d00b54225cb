"""Small builders for hand-made identity graphs."""

from __future__ import annotations

import pandas as pd


def obs(*rows: tuple) -> pd.DataFrame:
    """Observations from ``(record_id, day, id_type, id_value)`` tuples (day = day of 2026)."""
    df = pd.DataFrame(rows, columns=["record_id", "day", "id_type", "id_value"])
    df["ts"] = pd.Timestamp("2026-01-01") + pd.to_timedelta(df["day"], unit="D")
    return df[["record_id", "ts", "id_type", "id_value"]]


def record(rid: int, day: int, **ids: str) -> list[tuple]:
    """Rows of one record: ``record(1, 5, user_id="A", phone="P")``."""
    return [(rid, day, t, v) for t, v in ids.items()]


def people_of(imap) -> set[frozenset[tuple[str, str]]]:
    """The resolved partition as a set of frozensets of (id_type, id_value)."""
    m = imap.mapping
    return {frozenset(zip(g["id_type"], g["id_value"])) for _, g in m.groupby("uid", sort=False)}


def same_person(imap, a: tuple[str, str], b: tuple[str, str]) -> bool:
    return imap.lookup(*a).uid == imap.lookup(*b).uid
