"""What the live loop knows about a user: audiences, uplift, time zone, rate limits.

:class:`LiveContext` answers the questions eligibility (:mod:`mktlab.strategy`) and
journeys (:mod:`mktlab.live.journey_runtime`) ask. Each part is a plain argument, so a
notebook can pass sets and dicts and a deployment passes the saved audiences and the
uplift champion.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from mktlab.errors import ValidationError

_RATE_LUA = """
local now, per, max = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - per)
if redis.call('ZCARD', KEYS[1]) >= max then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('EXPIRE', KEYS[1], per + 3600)
return 1
"""


class LiveContext:
    """Audience membership, uplift scores, time zones and shared rate limits.

    Parameters
    ----------
    audiences : mapping of str to a set of user ids, or an object with ``in_audience``
        E.g. :class:`mktlab.audience.membership.SavedAudiences` (saved bitmaps through the
        identity map). ``None``: no audience is known (naming one is an error).
    uplift : mapping of user id to float, or callable ``user_id -> float | None``
        Predicted uplift for ``uplift_threshold`` policies and uplift splits.
    tz : str or mapping of user id to str
        IANA time zone(s) for local-time delays and quiet hours (default ``UTC``).
    redis : redis client, optional
        Rate-limit counters shared by every worker (in-process counters when absent).
    """

    def __init__(
        self,
        *,
        audiences: Any = None,
        uplift: Mapping[str, float] | Callable[[str], float | None] | None = None,
        tz: str | Mapping[str, str] = "UTC",
        redis: Any = None,
        namespace: str = "mktlab:live",
    ):
        self._audiences = audiences
        self._uplift = uplift
        self._tz = tz
        self.redis = redis
        self.namespace = namespace
        self._local: dict[str, deque] = {}
        self._rate: Any = None
        self._seq = 0

    def in_audience(self, audience: str, user_id: str) -> bool:
        a = self._audiences
        if a is None:
            raise ValidationError(f"audience {audience!r}: the live context was given no audiences")
        if hasattr(a, "in_audience"):
            return bool(a.in_audience(audience, user_id))
        if audience not in a:
            raise ValidationError(f"audience {audience!r}: unknown; known: {sorted(a)}")
        return user_id in a[audience]

    def uplift(self, user_id: str) -> float | None:
        u = self._uplift
        if u is None:
            return None
        v = u(user_id) if callable(u) else u.get(user_id)
        return None if v is None or not math.isfinite(float(v)) else float(v)

    def user_tz(self, user_id: str) -> str | None:
        if isinstance(self._tz, str) or self._tz is None:
            return self._tz
        return self._tz.get(user_id)

    def allow_rate(self, key: str, max: int, per: int, now: float) -> bool:
        """At most ``max`` passes in any ``(now - per, now]`` of event time under ``key``.

        The same sliding window as :class:`mktlab.live.journey_sim.SimpleContext`; with
        Redis the count is shared by every worker (a sorted set, checked atomically).
        """
        if self.redis is None:
            q = self._local.setdefault(key, deque())
            while q and q[0] <= now - per:
                q.popleft()
            if len(q) >= max:
                return False
            q.append(now)
            return True
        if self._rate is None:
            self._rate = self.redis.register_script(_RATE_LUA)
        self._seq += 1
        member = f"{now!r}:{os.getpid()}:{self._seq}"
        return bool(
            int(
                self._rate(
                    keys=[f"{self.namespace}:rate:{key}"],
                    args=[repr(float(now)), int(per), int(max), member],
                )
            )
        )


def wall_clock() -> float:
    return time.time()
