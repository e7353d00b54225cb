"""Quiet hours: a daily local-time window in which nothing is sent, only deferred."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from mktlab.errors import ValidationError

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _parse(value: str, what: str) -> time:
    m = _HHMM.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise ValidationError(f"quiet_hours.{what}: expected 'HH:MM' (00:00-23:59), got {value!r}")
    return time(int(m.group(1)), int(m.group(2)))


def _wall(ts: float, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ts, tz).replace(tzinfo=None)


def first_instant_at(day: date, at: time, tz: ZoneInfo, after: float) -> float:
    """The first epoch second ``>= after`` whose wall clock in ``tz`` reads ``day at``.

    The two DST edge cases: a wall time that happens twice (autumn) gives its first
    occurrence still ``>= after``; a wall time that never happens (inside the spring gap)
    gives the instant the clocks jump, the first moment whose wall time is past it.
    """
    wall = datetime.combine(day, at)
    candidates = []
    for fold in (0, 1):
        t = wall.replace(tzinfo=tz, fold=fold).timestamp()
        if _wall(t, tz) == wall:
            candidates.append(t)
    ok = [t for t in candidates if t >= after]
    if ok:
        return min(ok)
    if candidates:  # every occurrence is already past
        return max(candidates)
    # In the gap: fold=1 maps to before the jump, fold=0 after; bisect to the jump.
    lo = wall.replace(tzinfo=tz, fold=1).timestamp()
    hi = wall.replace(tzinfo=tz, fold=0).timestamp()
    lo, hi = min(lo, hi), max(lo, hi)
    while hi - lo > 0.5:
        mid = (lo + hi) / 2
        if _wall(mid, tz) >= wall:
            hi = mid
        else:
            lo = mid
    return float(round(hi))


@dataclass(frozen=True)
class QuietHours:
    """Do not send between ``start`` and ``end`` (user's local time, ``[start, end)``).

    ``start > end`` means the window crosses midnight (the usual ``21:00``-``08:00``).
    Local time is computed with :mod:`zoneinfo`, so the window follows daylight-saving
    changes: a 21:00-08:00 night is 10 or 12 hours long on the nights clocks change.

    Parameters
    ----------
    start, end : str
        ``"HH:MM"``; they must differ.

    Examples
    --------
    >>> from zoneinfo import ZoneInfo
    >>> q = QuietHours("21:00", "08:00")
    >>> q.window_end(1_700_000_000.0, ZoneInfo("UTC"))  # 22:13 UTC: quiet until 08:00
    1700035200.0
    """

    start: str = "21:00"
    end: str = "08:00"

    def __post_init__(self) -> None:
        s, e = _parse(self.start, "start"), _parse(self.end, "end")
        if s == e:
            raise ValidationError(
                f"quiet_hours: start and end are both {self.start!r}; give a non-empty window"
            )
        object.__setattr__(self, "_s", s)
        object.__setattr__(self, "_e", e)

    @property
    def crosses_midnight(self) -> bool:
        return self._s > self._e  # type: ignore[attr-defined]

    def window_end(self, ts: float, tz: ZoneInfo) -> float | None:
        """Epoch seconds at which the quiet window holding ``ts`` ends, else ``None``.

        Parameters
        ----------
        ts : float
            Epoch seconds.
        tz : zoneinfo.ZoneInfo
            The user's time zone.
        """
        s, e = self._s, self._e  # type: ignore[attr-defined]
        local = datetime.fromtimestamp(ts, tz)
        t = local.time().replace(tzinfo=None)
        day = local.date()
        if s < e:
            if not (s <= t < e):
                return None
            end_day = day
        elif t >= s:  # evening part of a window that crosses midnight
            end_day = day + timedelta(days=1)
        elif t < e:  # morning part
            end_day = day
        else:
            return None
        return first_instant_at(end_day, e, tz, ts)

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end}
