"""Per-channel rate limits: token buckets in process, or shared through Redis.

A bucket holds at most ``max(rate, 1)`` tokens (one second of burst) and refills at
``rate`` tokens per wall-clock second. The gateway takes tokens in bulk, once per
channel per batch, and gives back what it did not use, so a 10,000-message batch costs
two round trips per channel, not 10,000.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time

import redis as redis_lib

from mktlab.errors import ServiceUnavailableError, ValidationError

# KEYS[1] bucket hash; ARGV rate, capacity, n (n < 0 returns -n tokens).
# Redis's own clock, so every process sharing the bucket agrees on "now".
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(v[1]) or cap
local ts = tonumber(v[2]) or now
if now > ts then tokens = math.min(cap, tokens + (now - ts) * rate) end
local got
if n >= 0 then
  got = math.min(n, math.floor(tokens))
  tokens = tokens - got
else
  got = n
  tokens = math.min(cap, tokens - n)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate * 1000) + 60000)
return got
"""


def check_rate(channel: str, rate) -> float:
    if (
        isinstance(rate, bool)
        or not isinstance(rate, int | float)
        or not (math.isfinite(rate) and rate > 0)
    ):
        raise ValidationError(
            f"rate_limits[{channel!r}]: expected messages per second > 0, got {rate!r}"
        )
    return float(rate)


class TokenBucket:
    """An in-process token bucket (thread safe), refilled by :func:`time.monotonic`."""

    def __init__(self, rate: float, clock=time.monotonic):
        self.rate = float(rate)
        self.capacity = max(self.rate, 1.0)
        self._clock = clock
        self._tokens = self.capacity
        self._ts = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        if now > self._ts:
            self._tokens = min(self.capacity, self._tokens + (now - self._ts) * self.rate)
        self._ts = now

    def take(self, n: int) -> int:
        """Take up to ``n`` whole tokens; return how many were granted."""
        with self._lock:
            self._refill()
            got = min(n, int(self._tokens))
            self._tokens -= got
            return got

    def give_back(self, n: int) -> None:
        """Return ``n`` unused tokens."""
        if n > 0:
            with self._lock:
                self._refill()
                self._tokens = min(self.capacity, self._tokens + n)


class RedisTokenBucket:
    """A token bucket in Redis (one hash per channel), shared by every process using it."""

    def __init__(self, redis, key: str, rate: float):
        self.redis = redis
        self.key = key
        self.rate = float(rate)
        self.capacity = max(self.rate, 1.0)
        self._script = redis.register_script(_LUA)

    def _call(self, n: int) -> int:
        return int(self._script(keys=[self.key], args=[repr(self.rate), repr(self.capacity), n]))

    def take(self, n: int) -> int:
        """Take up to ``n`` tokens from the shared bucket.

        Raises
        ------
        ServiceUnavailableError
            Redis does not answer (the batch is not sent: its transaction rolls back).
        """
        if n <= 0:
            return 0
        try:
            return self._call(int(n))
        except redis_lib.exceptions.RedisError as exc:
            raise ServiceUnavailableError(
                f"rate limit bucket {self.key!r}: Redis is unreachable: {exc}"
            ) from exc

    def give_back(self, n: int) -> None:
        """Return unused tokens; best effort (if Redis is gone, the bucket refills anyway)."""
        if n > 0:
            with contextlib.suppress(redis_lib.exceptions.RedisError):
                self._call(-int(n))
