"""Event windows: "did X in the last N days" and "count(X, Nd) >= K" as bitmaps.

Events ``(uid, ts, event)`` are kept as one ``uint32`` uid array sorted by
``(event, day, uid)``, so the events of one type inside any window of days are a
contiguous slice: ``did`` is a bitmap of that slice, and ``count`` is a ``np.unique``
over it. Results are cached per (event, window) because the same window tags
(``active_7d``, ``purchased_30d``) appear in many audiences.

Windows end at ``as_of`` (inclusive) and cover ``days`` calendar days; a window that
would start before the first day of data, or an ``as_of`` after the last day, is refused
rather than silently counting missing days as zero.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyroaring import BitMap

from mktlab.audience._bitmaps import bitmap_from_uids
from mktlab.errors import SchemaError, ValidationError

EPOCH = dt.date(1970, 1, 1)
ANY = "any"
#: window-tag prefixes -> event: ``active_7d`` = ``did(any, 7d)``, ``purchased_30d`` = ...
DEFAULT_EVENT_ALIASES: dict[str, str] = {
    "active": ANY,
    "purchased": "order",
    "ordered": "order",
    "viewed": "view",
    "carted": "cart",
    "redeemed": "coupon_redeem",
}


def to_day(value) -> int:
    """Days since 1970-01-01 of a date, timestamp or ISO string."""
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value[:10])
        except ValueError:
            raise ValidationError(
                f"as_of: cannot read {value!r} as a date (use YYYY-MM-DD)"
            ) from None
    if isinstance(value, np.datetime64):
        return int(value.astype("datetime64[D]").astype(np.int64))
    if hasattr(value, "date") and callable(value.date):  # datetime, pandas Timestamp
        value = value.date()
    if isinstance(value, dt.date):
        return (value - EPOCH).days
    raise ValidationError(f"as_of: expected a date, got {value!r}")


def from_day(day: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(day))


class EventIndex:
    """Per-event, per-day uid lists that answer window conditions with bitmaps.

    Build with :meth:`from_arrow`; the store owns one.
    """

    def __init__(
        self, names: list[str], uids: np.ndarray, keys: np.ndarray, first_day: int, last_day: int
    ):
        self.names = names
        self.uids = uids  # uint32, sorted by (event, day, uid)
        self.keys = keys  # int64 event_code * n_days + (day - first_day), same order
        self.first_day = first_day
        self.last_day = last_day
        self._cache: dict[tuple, object] = {}

    @property
    def n_days(self) -> int:
        return self.last_day - self.first_day + 1

    @classmethod
    def from_arrow(cls, table: pa.Table, uid_values: np.ndarray, data_range=None) -> EventIndex:
        """Build from an Arrow table with ``ts`` and ``event`` columns and validated uids."""
        names, codes, day, first, last = event_days(table, data_range)
        n_days = last - first + 1
        keys = codes * n_days + (day - first)
        order = np.lexsort((uid_values, keys))
        return cls(names, np.ascontiguousarray(uid_values[order]), keys[order], first, last)

    # ------------------------------------------------------------------ windows
    def window(self, days: int, as_of: int, text: str = "") -> tuple[int, int]:
        """Return (first_day, last_day) of the ``days``-day window ending at ``as_of``."""
        start = as_of - days + 1
        if as_of > self.last_day or as_of < self.first_day:
            raise ValidationError(
                f"as_of {from_day(as_of)} is outside the event data "
                f"({from_day(self.first_day)} .. {from_day(self.last_day)})"
            )
        if start < self.first_day:
            longest = as_of - self.first_day + 1
            raise ValidationError(
                f"window {days}d ending {from_day(as_of)} starts {from_day(start)}, before the first "
                f"day of event data {from_day(self.first_day)}; the longest window is {longest}d"
                + (f" (in {text!r})" if text else "")
            )
        return start, as_of

    def _codes(self, event: str) -> list[int]:
        if event == ANY:
            return list(range(len(self.names)))
        return [self.names.index(event)]

    def _slices(self, event: str, start: int, end: int) -> list[np.ndarray]:
        out = []
        for code in self._codes(event):
            base = code * self.n_days
            lo = np.searchsorted(self.keys, base + start - self.first_day, side="left")
            hi = np.searchsorted(self.keys, base + end - self.first_day, side="right")
            out.append(self.uids[lo:hi])
        return out

    def did(self, event: str, start: int, end: int) -> BitMap:
        """Users with at least one ``event`` on days ``start .. end``."""
        key = ("did", event, start, end)
        if key not in self._cache:
            parts = [bitmap_from_uids(s) for s in self._slices(event, start, end)]
            self._cache[key] = BitMap.union(*parts) if parts else BitMap()
        return self._cache[key]  # type: ignore[return-value]

    def counts(self, event: str, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """(uids, counts) of users with at least one ``event`` on days ``start .. end``."""
        key = ("count", event, start, end)
        if key not in self._cache:
            parts = self._slices(event, start, end)
            allu = np.concatenate(parts) if parts else np.empty(0, dtype=np.uint32)
            self._cache[key] = np.unique(allu, return_counts=True)
        return self._cache[key]  # type: ignore[return-value]


def event_days(
    table: pa.Table, data_range=None
) -> tuple[list[str], np.ndarray, np.ndarray, int, int]:
    """Validate ``ts`` / ``event`` and return (sorted names, codes, day numbers, first, last).

    Shared by :class:`EventIndex` and the ClickHouse engine, so both read the same days
    (local wall-clock dates of timestamps) and refuse the same bad input.
    """
    ts = table.column("ts")
    if pa.types.is_timestamp(ts.type):
        ts = (
            pc.cast(ts, pa.timestamp("us"))
            if ts.type.tz is None
            else pc.cast(pc.local_timestamp(ts), pa.timestamp("us"))
        )
        days = pc.cast(pc.cast(ts, pa.date32()), pa.int32())
    elif pa.types.is_date(ts.type):
        days = pc.cast(pc.cast(ts, pa.date32()), pa.int32())
    else:
        raise SchemaError(f"events: column 'ts' must be a timestamp or date, got {ts.type}")
    if days.null_count or table.column("event").null_count:
        raise SchemaError("events: 'ts' and 'event' must not be null")
    day = days.to_numpy().astype(np.int64)
    ev = pc.dictionary_encode(pc.cast(table.column("event"), pa.string())).combine_chunks()
    names_raw = [str(x) for x in ev.dictionary.to_pylist()]
    order_names = sorted(range(len(names_raw)), key=lambda i: names_raw[i])
    remap = np.empty(len(names_raw), dtype=np.int64)
    remap[order_names] = np.arange(len(names_raw))
    codes = remap[ev.indices.to_numpy()] if len(names_raw) else np.empty(0, dtype=np.int64)
    names = [names_raw[i] for i in order_names]
    if ANY in names:
        raise SchemaError(f"events: {ANY!r} is reserved (it means every event); rename that event")
    if data_range is not None:
        first, last = to_day(data_range[0]), to_day(data_range[1])
        if first > last:
            raise ValidationError(f"data_range: start {data_range[0]} is after end {data_range[1]}")
        outside = (day < first) | (day > last)
        if outside.any():
            raise ValidationError(
                f"events: {int(outside.sum())} event(s) fall outside data_range {data_range}; "
                f"e.g. {from_day(int(day[outside][0]))}"
            )
    elif day.size:
        first, last = int(day.min()), int(day.max())
    else:
        raise ValidationError("events: the table is empty; pass data_range to declare its days")
    return names, codes, day, int(first), int(last)
