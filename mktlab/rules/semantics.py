"""What a rule's tests mean, shared by the batch and the online execution.

One scalar definition (:func:`test_value`) and its vector twin over float columns, the
event-time context fields, time conversion, audience membership and the profile table.
Both executions call these, which is what keeps their decisions identical.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mktlab.errors import SchemaError, ValidationError
from mktlab.rules.caps import NS


# ------------------------------------------------------------------- scalar semantics
def is_null(x: Any) -> bool:
    """Missing: ``None``, NaN, ``pd.NA`` or ``NaT``."""
    if x is None or x is pd.NA or x is pd.NaT:
        return True
    return isinstance(x, float) and math.isnan(x)


def test_value(op: str, x: Any, v: Any) -> bool:
    """Evaluate ``x op v`` for one value; missing values fail every op but ``is_null``."""
    if op == "is_null":
        return is_null(x)
    if op == "not_null":
        return not is_null(x)
    if is_null(x):
        return False
    try:
        if op == "==":
            return bool(x == v)
        if op == "!=":
            return bool(x != v)
        if op == "<":
            return bool(x < v)
        if op == "<=":
            return bool(x <= v)
        if op == ">":
            return bool(x > v)
        if op == ">=":
            return bool(x >= v)
        if op == "in":
            return any(bool(x == e) for e in v)
        if op == "not_in":
            return not any(bool(x == e) for e in v)
        if op == "between":
            return bool(v[0] <= x <= v[1])
    except TypeError:  # e.g. a string compared with a number: no match
        return False
    raise ValidationError(f"unknown op {op!r}")


def _num(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating)  # bool is an int


def vector_numeric(op: str, x: np.ndarray, v: Any) -> np.ndarray:
    """``test_value`` over a float array (NaN = missing), with identical results."""
    notnull = ~np.isnan(x)
    if op == "is_null":
        return ~notnull
    if op == "not_null":
        return notnull
    if op in ("in", "not_in"):
        nums = [float(e) for e in v if _num(e)]
        hit = np.isin(x, nums) if nums else np.zeros(len(x), bool)
        return hit if op == "in" else notnull & ~hit
    if op == "between":
        if not (_num(v[0]) and _num(v[1])):
            return np.zeros(len(x), bool)
        return (x >= v[0]) & (x <= v[1])
    if not _num(v):
        return notnull.copy() if op == "!=" else np.zeros(len(x), bool)
    if op == "==":
        return x == v
    if op == "!=":
        return notnull & (x != v)
    if op == "<":
        return x < v
    if op == "<=":
        return x <= v
    if op == ">":
        return x > v
    if op == ">=":
        return x >= v
    raise ValidationError(f"unknown op {op!r}")


def context_value(name: str, ts_ns: int) -> int | bool:
    """Context derived from the event time (naive clock): hour, weekday (Mon=0), ..."""
    if name == "hour":
        return (ts_ns // (3600 * NS)) % 24
    if name == "minute_of_day":
        return (ts_ns // (60 * NS)) % 1440
    weekday = (ts_ns // (86400 * NS) + 3) % 7  # 1970-01-01 was a Thursday
    if name == "weekday":
        return weekday
    if name == "is_weekend":
        return weekday >= 5
    raise ValidationError(f"unknown context field {name!r}")


def ts_ns_array(values: Any) -> np.ndarray:
    """Naive-clock nanoseconds since the epoch for a column of times."""
    s = pd.to_datetime(pd.Series(values) if not isinstance(values, pd.Series) else values)
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_localize(None)
    return s.astype("datetime64[ns]").to_numpy().view(np.int64)


def scalar_ts_ns(ts: Any) -> int:
    """Naive-clock nanoseconds since the epoch for one time (same clock as :func:`ts_ns_array`)."""
    if type(ts) is int:  # already nanoseconds (the live loop's fast path)
        return ts
    t = pd.Timestamp(ts)
    if t.tzinfo is not None:
        t = t.tz_localize(None)
    return int(t.as_unit("ns").value)


# --------------------------------------------------------------------- audiences
class Membership:
    """An audience's members in a form both executions can test quickly.

    Accepts a set / frozenset / list / ndarray of user keys, a pyroaring ``BitMap`` of
    integer uids, or a pandas boolean Series indexed by user.
    """

    def __init__(self, members: Any):
        if hasattr(members, "bitmap") and not callable(members.bitmap):  # an audience result
            members = members.bitmap
        if isinstance(members, pd.Series) and members.dtype == bool:
            members = members.index[members.to_numpy()]
        if hasattr(members, "to_array") or type(members).__name__ in (
            "BitMap",
            "FrozenBitMap",
            "BitMap64",
        ):
            self._contains = members.__contains__
            self._array = np.fromiter(members, dtype=np.int64, count=len(members))
        else:
            arr = list(members)
            self._set = frozenset(arr)
            self._contains = self._set.__contains__
            self._array = (
                np.asarray(arr, dtype=object)
                if arr and isinstance(arr[0], str)
                else np.asarray(arr)
            )

    @property
    def integer_keys(self) -> bool:
        """Members are integers (uids), e.g. from a bitmap."""
        return self._array.dtype.kind in "iu"

    def __contains__(self, user: Any) -> bool:
        try:
            return bool(self._contains(user))
        except (TypeError, OverflowError):
            return False

    def mask(self, users: np.ndarray) -> np.ndarray:
        if len(self._array) == 0:
            return np.zeros(len(users), bool)
        if users.dtype.kind in "iu" and self._array.dtype.kind in "iu":
            return np.isin(users, self._array)
        return pd.Series(users).isin(pd.Series(self._array, dtype=object)).to_numpy()


def as_memberships(audiences: Mapping[str, Any] | None) -> dict[str, Membership]:
    out = {}
    for name, m in (audiences or {}).items():
        out[name] = m if isinstance(m, Membership) else Membership(m)
    return out


def profile_frame(profiles: pd.DataFrame | None, user_col: str) -> pd.DataFrame:
    """``profiles`` indexed by a unique user key (``user_col`` moved to the index if a column)."""
    if profiles is None:
        raise SchemaError("profiles: rules read profile.* fields but no profiles were supplied")
    if user_col in profiles.columns:
        profiles = profiles.set_index(user_col)
    if not profiles.index.is_unique:
        dup = profiles.index[profiles.index.duplicated()][:5].tolist()
        raise SchemaError(f"profiles: user key is not unique, e.g. {dup}")
    return profiles
