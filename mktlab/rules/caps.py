"""Frequency caps and budgets, online (per event) and in batch (one numba pass).

Both executions share one definition: actions are considered in order (event time,
then rule priority, then action position); an action is refused when

* it is a coupon and ``max_coupons_per_event`` coupons were already issued on the event
  (``stacked``),
* it is a coupon and the budget (count or face value) would be exceeded (``budget``),
* any cap on its channel already counts ``max`` allowed actions of the user in
  ``(t - per, t]`` (``capped``).

Refused actions do not count against caps or budget.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from mktlab.errors import ValidationError
from mktlab.rules.model import ALL_CHANNELS, FrequencyCap

OK, CAPPED, BUDGET, STACKED = 0, 1, 2, 3
STATUS = np.array(["ok", "capped", "budget", "stacked"])
NS = 1_000_000_000


@dataclass(frozen=True)
class Budget:
    """Limits on coupons: a count and/or total face value (``None`` = unlimited)."""

    max_coupons: int | None = None
    max_spend: float | None = None

    def __post_init__(self) -> None:
        if self.max_coupons is not None and (
            isinstance(self.max_coupons, bool)
            or not isinstance(self.max_coupons, int)
            or self.max_coupons < 0
        ):
            raise ValidationError(
                f"budget.max_coupons: expected an integer >= 0, got {self.max_coupons!r}"
            )
        if self.max_spend is not None and (
            isinstance(self.max_spend, bool)
            or not isinstance(self.max_spend, int | float)
            or self.max_spend < 0
        ):
            raise ValidationError(
                f"budget.max_spend: expected a number >= 0, got {self.max_spend!r}"
            )

    @property
    def unlimited(self) -> bool:
        return self.max_coupons is None and self.max_spend is None

    @classmethod
    def from_dict(cls, d) -> Budget:
        if d is None:
            return cls()
        if not isinstance(d, dict) or set(d) - {"max_coupons", "max_spend"}:
            raise ValidationError(f"budget: expected {{max_coupons, max_spend}}, got {d!r}")
        return cls(d.get("max_coupons"), d.get("max_spend"))

    def to_dict(self) -> dict:
        return {"max_coupons": self.max_coupons, "max_spend": self.max_spend}


class CapTracker:
    """Online frequency caps: ask :meth:`check`, then :meth:`record` what was sent.

    Parameters
    ----------
    caps : sequence of FrequencyCap

    Examples
    --------
    >>> t = CapTracker([FrequencyCap("push", 1, "1d")])
    >>> t.check("u1", "push", 0) is None
    True
    >>> t.record("u1", "push", 0); t.check("u1", "push", 3600 * NS)
    FrequencyCap(channel='push', max=1, per=86400)
    """

    def __init__(self, caps: Sequence[FrequencyCap]):
        self.caps = tuple(caps)
        self._sent: dict[tuple, deque] = {}

    def check(self, user, channel: str | None, ts_ns: int) -> FrequencyCap | None:
        """The first cap that would refuse an action now, or ``None`` when allowed."""
        for i, cap in enumerate(self.caps):
            if not cap.applies_to(channel):
                continue
            if cap.max == 0:
                return cap
            q = self._sent.get((user, i))
            # q holds the last ``max`` allowed timestamps; the oldest decides
            if q is not None and len(q) == cap.max and q[0] > ts_ns - cap.per * NS:
                return cap
        return None

    def record(self, user, channel: str | None, ts_ns: int) -> None:
        for i, cap in enumerate(self.caps):
            if cap.applies_to(channel) and cap.max > 0:
                self._sent.setdefault((user, i), deque(maxlen=cap.max)).append(ts_ns)

    def allow(self, user, channel: str | None, ts_ns: int) -> bool:
        """Check and, when allowed, record in one call (the usual online use)."""
        if self.check(user, channel, ts_ns) is not None:
            return False
        self.record(user, channel, ts_ns)
        return True


class BudgetTracker:
    """Online budget: coupons issued and face value spent so far."""

    def __init__(self, budget: Budget | None = None):
        self.budget = budget or Budget()
        self.issued = 0
        self.spent = 0.0

    def check(self, value: float) -> bool:
        b = self.budget
        if b.max_coupons is not None and self.issued + 1 > b.max_coupons:
            return False
        return not (b.max_spend is not None and self.spent + value > b.max_spend + 1e-9)

    def record(self, value: float) -> None:
        self.issued += 1
        self.spent += value


@numba.njit(cache=True)
def _enforce_kernel(
    ev,
    user,
    ts,
    chan,
    is_coupon,
    value,
    cap_chan,
    cap_max,
    cap_per,
    n_users,
    max_per_event,
    max_coupons,
    max_spend,
):  # pragma: no cover - compiled
    n = len(ev)
    n_caps = len(cap_chan)
    status = np.zeros(n, np.int8)
    which = np.full(n, -1, np.int64)
    width = 1
    for c in range(n_caps):
        width = max(width, cap_max[c])
    ring = np.zeros((n_users * max(n_caps, 1), width), np.int64)
    count = np.zeros(n_users * max(n_caps, 1), np.int64)
    issued = 0
    spent = 0.0
    last_ev = -1
    ev_coupons = 0
    for i in range(n):
        if ev[i] != last_ev:
            last_ev = ev[i]
            ev_coupons = 0
        if is_coupon[i]:
            if ev_coupons >= max_per_event:
                status[i] = 3
                continue
            if (max_coupons >= 0 and issued + 1 > max_coupons) or (
                max_spend >= 0 and spent + value[i] > max_spend + 1e-9
            ):
                status[i] = 2
                continue
        if chan[i] >= 0:
            blocked = -1
            for c in range(n_caps):
                if cap_chan[c] != -2 and cap_chan[c] != chan[i]:
                    continue
                m = cap_max[c]
                if m == 0:
                    blocked = c
                    break
                k = user[i] * n_caps + c
                if count[k] >= m:
                    oldest = ring[k, count[k] % m]
                    if oldest > ts[i] - cap_per[c]:
                        blocked = c
                        break
            if blocked >= 0:
                status[i] = 1
                which[i] = blocked
                continue
            for c in range(n_caps):
                if (cap_chan[c] == -2 or cap_chan[c] == chan[i]) and cap_max[c] > 0:
                    k = user[i] * n_caps + c
                    ring[k, count[k] % cap_max[c]] = ts[i]
                    count[k] += 1
        if is_coupon[i]:
            issued += 1
            spent += value[i]
            ev_coupons += 1
    return status, which


def enforce(
    event_rank: np.ndarray,
    user: np.ndarray,
    ts_ns: np.ndarray,
    channel: np.ndarray,
    is_coupon: np.ndarray,
    value: np.ndarray,
    caps: Sequence[FrequencyCap],
    channels: Sequence[str],
    *,
    budget: Budget | None = None,
    max_coupons_per_event: int = 1,
    n_users: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply caps, stacking and budget to candidate actions already in firing order.

    Parameters
    ----------
    event_rank, user, ts_ns : ndarray of int64
        Event position in time order, dense user code (0..U-1), time in ns.
    channel : ndarray of int64
        Index into ``channels``, or -1 for actions that touch nobody (lifecycle).
    is_coupon, value : ndarray
        Whether the action issues a coupon, and its face value.
    n_users : int, optional
        Pass when ``user`` already holds dense codes ``0..n_users-1`` (skips a sort).

    Returns
    -------
    status : ndarray of int8
        ``OK``, ``CAPPED``, ``BUDGET`` or ``STACKED`` per action.
    which : ndarray of int64
        Index of the refusing cap (``-1`` when none).
    """
    budget = budget or Budget()
    if len(event_rank) == 0:
        return np.zeros(0, np.int8), np.zeros(0, np.int64)
    chan_index = {c: i for i, c in enumerate(channels)}
    cap_chan = np.array(
        [-2 if c.channel == ALL_CHANNELS else chan_index.get(c.channel, -3) for c in caps], np.int64
    )
    cap_max = np.array([c.max for c in caps], np.int64)
    cap_per = np.array([c.per * NS for c in caps], np.int64)
    if n_users is None:
        # compact the users to those with candidate actions: the ring buffers stay small
        uniq, ucode = np.unique(np.asarray(user), return_inverse=True)
        n_users = len(uniq)
    else:
        ucode = np.asarray(user)
    return _enforce_kernel(
        np.asarray(event_rank, np.int64),
        ucode.astype(np.int64),
        np.asarray(ts_ns, np.int64),
        np.asarray(channel, np.int64),
        np.asarray(is_coupon, np.bool_),
        np.asarray(value, np.float64),
        cap_chan,
        cap_max,
        cap_per,
        int(n_users),
        int(max_coupons_per_event),
        -1 if budget.max_coupons is None else int(budget.max_coupons),
        -1.0 if budget.max_spend is None else float(budget.max_spend),
    )
