"""What the live loop knows about a user: audiences, uplift, time zone, rate limits.

:class:`LiveContext` answers the questions eligibility (:mod:`mktlab.strategy`) and
journeys (:mod:`mktlab.live.journey_runtime`) ask. Each part is a plain argument, so a
notebook can pass sets and dicts and a deployment passes the saved audiences and the
uplift champion.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from mktlab.errors import ValidationError


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
        self._local: dict[tuple[str, int], int] = {}

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
        """At most ``max`` passes per ``per`` seconds of event time under ``key`` (fixed windows)."""
        bucket = int(now // per) if per > 0 else 0
        if self.redis is None:
            k = (key, bucket)
            self._local[k] = n = self._local.get(k, 0) + 1
            return n <= max
        rk = f"{self.namespace}:rate:{key}:{bucket}"
        pipe = self.redis.pipeline(transaction=False)
        pipe.incr(rk)
        pipe.expire(rk, int(per) + 3600)
        n = pipe.execute()[0]
        return int(n) <= max


def wall_clock() -> float:
    return time.time()
