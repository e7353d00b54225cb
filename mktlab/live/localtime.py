"""Local time for journeys: time zones by name and the next opening of a daily window."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except Exception:  # an unknown zone in user data falls back to the next source
        return None


def next_local(t: float, window: tuple[int, int | None], tz: ZoneInfo) -> float:
    """``t`` itself inside an open window, else the next window start strictly after ``t``."""
    start, end = window
    local = datetime.fromtimestamp(t, tz)
    minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
    if end is not None and (
        start <= minute < end if start < end else minute >= start or minute < end
    ):
        return t
    h, m = divmod(start, 60)
    day = local.date()
    for _ in range(3):  # today, tomorrow, or the day after across a DST gap
        cand = datetime(day.year, day.month, day.day, h, m, tzinfo=tz).timestamp()
        if cand > t:
            return cand
        day += timedelta(days=1)
    raise AssertionError("unreachable: a local time recurs within three days")
