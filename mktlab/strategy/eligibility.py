"""Who gets what, how often: the one home of a strategy's eligibility.

Every runtime asks the same :class:`Eligibility` before it acts: the event-time
simulation (:func:`mktlab.strategy.simulate`), the live workers (:mod:`mktlab.live`) and
the service's ``/issue``. The checks run in this order, cheapest and most permanent first:

1. **holdout** — a salted hash of the user (``strategy.assignment_salt``) puts a fixed
   fraction ``strategy.holdout`` out of the campaign for its whole life;
1b. **campaign state** — with a ``gate`` (:class:`mktlab.campaigns.rollout.CampaignStates`),
   a campaign managed by the lifecycle refuses while it is not gray or full
   (``campaign_paused``) and outside its gray rollout (``not_in_rollout``);
2. **audience** — ``strategy.audience`` must contain the user;
3. **policy** — ``all`` passes, ``none`` refuses, ``random`` passes with probability
   ``rate`` by a second salted hash (the same draw in every runtime), ``uplift_threshold``
   passes when the predicted uplift is at least ``threshold``;
4. **caps** — every :class:`~mktlab.rules.model.FrequencyCap` of the strategy and of its
   rule set that applies to the action's channel, counted in a :class:`CapLedger` shared
   by all runtimes (Redis) or in memory (simulation). Recording is keyed by the action's
   idempotency key, so a redelivered event is allowed again and never counted twice.

Each answer is a :class:`Verdict` carrying the propensity of the logged choice, which the
sandbox's off-policy estimators and the uplift learners read back from the decision log.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mktlab.errors import ServiceUnavailableError, ValidationError
from mktlab.experiments._hash import N_BUCKETS, bucket_of, hash_buckets
from mktlab.rules.model import FrequencyCap
from mktlab.strategy.spec import Strategy

STATUSES = (
    "ok",
    "holdout",
    "campaign_paused",
    "not_in_rollout",
    "not_in_audience",
    "not_drawn",
    "policy_none",
    "low_uplift",
    "capped",
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer for one (user, action): allowed or the reason why not.

    ``p_treat`` is the probability that this strategy treats a user like this one
    (holdout and random draw included; 0 or 1 for deterministic refusals), and
    ``propensity`` the probability of what was logged (``p_treat`` when allowed, else
    ``1 - p_treat``).
    """

    allowed: bool
    status: str
    reason: str
    p_treat: float
    holdout: bool
    uplift: float | None = None

    @property
    def propensity(self) -> float:
        return self.p_treat if self.allowed else 1.0 - self.p_treat


class EligibilityContext(Protocol):
    """What eligibility needs to know about a user, whatever the runtime."""

    def in_audience(self, audience: str, user_id: str) -> bool: ...

    def uplift(self, user_id: str) -> float | None: ...


class CapLedger(Protocol):
    """Where allowed actions are counted for frequency caps."""

    def check(
        self, user_id: str, channel: str, ts: float, key: str, caps: Sequence[FrequencyCap]
    ) -> FrequencyCap | None: ...

    def record(self, user_id: str, channel: str, ts: float, key: str) -> None: ...

    def check_and_record(
        self, user_id: str, channel: str, ts: float, key: str, caps: Sequence[FrequencyCap]
    ) -> FrequencyCap | None: ...


def _unit(ids: Sequence[str], salt: str) -> np.ndarray:
    return hash_buckets(list(ids), salt) / float(N_BUCKETS)


def in_holdout(strategy: Strategy, user_ids: Sequence[str]) -> np.ndarray:
    """Which users the strategy keeps out (deterministic; the same in every runtime)."""
    if strategy.holdout <= 0:
        return np.zeros(len(user_ids), dtype=bool)
    return _unit(user_ids, f"{strategy.assignment_salt}:holdout") < strategy.holdout


def random_draw(strategy: Strategy, user_ids: Sequence[str]) -> np.ndarray:
    """The user's uniform draw for a ``random`` policy (independent of the holdout's)."""
    return _unit(user_ids, f"{strategy.assignment_salt}:draw:{strategy.policy.seed}")


class CampaignGate(Protocol):
    """A campaign's live state (:class:`mktlab.campaigns.rollout.CampaignStates`)."""

    def refuse(self, campaign_id: str | None, user_id: str) -> tuple[str, str] | None: ...


class Eligibility:
    """Check actions of one strategy (see the module docstring for the order).

    Parameters
    ----------
    strategy : Strategy
    context : EligibilityContext
        Audience membership and uplift scores.
    caps : CapLedger
        :class:`MemoryCapLedger` for simulations, :class:`RedisCapLedger` live.
    gate : CampaignGate, optional
        The lifecycle's campaign states (live and ``/issue``); None: not gated.
    """

    def __init__(
        self,
        strategy: Strategy,
        context: EligibilityContext,
        caps: CapLedger,
        gate: CampaignGate | None = None,
    ):
        pol = strategy.policy
        if pol.kind == "uplift_threshold" and pol.threshold is None:
            raise ValidationError(
                f"strategy {strategy.name!r}: policy.top_fraction ranks a whole log; a live or "
                "per-request runtime needs policy.threshold (an uplift cut-off)"
            )
        if pol.kind == "logged":
            raise ValidationError(
                f"strategy {strategy.name!r}: policy 'logged' only exists in a replay of logged data"
            )
        self.strategy = strategy
        self.context = context
        self.caps = caps
        self.gate = gate
        self._caps = tuple(strategy.caps) + tuple(strategy.rules.caps if strategy.rules else ())
        self._cache: dict[str, tuple[bool, float]] = {}

    def _user(self, user_id: str) -> tuple[bool, float]:
        hit = self._cache.get(user_id)
        if hit is None:
            if len(self._cache) > 200_000:
                self._cache.clear()
            s = self.strategy  # the scalar twins of in_holdout / random_draw
            hold = (
                s.holdout > 0
                and bucket_of(user_id, f"{s.assignment_salt}:holdout") / N_BUCKETS < s.holdout
            )
            draw = bucket_of(user_id, f"{s.assignment_salt}:draw:{s.policy.seed}") / N_BUCKETS
            hit = self._cache[user_id] = (hold, draw)
        return hit

    def check(
        self, user_id: str, channel: str, ts: float, key: str, *, record: bool = True
    ) -> Verdict:
        """Decide one action (``channel`` is ``"coupon"`` or a message channel).

        With ``record`` (the live loop), an allowed action counts towards the caps at
        once; ``/issue`` checks with ``record=False`` and records only what the issuer
        actually issued (:meth:`record`).
        """
        s, pol = self.strategy, self.strategy.policy
        hold, draw = self._user(user_id)
        keep = 1.0 - s.holdout
        p = keep * (pol.rate if pol.kind == "random" else 1.0)
        if hold:
            return Verdict(False, "holdout", f"in the {s.holdout:.0%} holdout", p, True)
        if self.gate is not None:
            shut = self.gate.refuse(s.campaign_id, user_id)
            if shut is not None:
                return Verdict(False, shut[0], shut[1], 0.0, False)
        if s.audience is not None and not self.context.in_audience(s.audience, user_id):
            return Verdict(False, "not_in_audience", f"not in audience {s.audience!r}", 0.0, False)
        uplift = None
        if pol.kind == "none":
            return Verdict(False, "policy_none", "policy 'none' treats nobody", 0.0, False)
        if pol.kind == "random" and draw >= pol.rate:
            return Verdict(False, "not_drawn", f"not drawn at rate {pol.rate:g}", p, False)
        if pol.kind == "uplift_threshold":
            uplift = self.context.uplift(user_id)
            if uplift is None or not math.isfinite(uplift) or uplift < pol.threshold:
                shown = "no score" if uplift is None else f"{uplift:.4g}"
                return Verdict(
                    False, "low_uplift", f"uplift {shown} < {pol.threshold:g}", 0.0, False, uplift
                )
        if record:
            cap = self.caps.check_and_record(user_id, channel, ts, key, self._caps)
        else:
            cap = self.caps.check(user_id, channel, ts, key, self._caps)
        if cap is not None:
            return Verdict(
                False, "capped", f"cap {cap.channel} {cap.max}/{cap.per}s", p, False, uplift
            )
        return Verdict(True, "ok", "", p, False, uplift)


RETENTION = 40 * 86400  # history kept per user and channel: the longest usual cap, and then some


class MemoryCapLedger:
    """Frequency caps counted in memory (the simulation's ledger; same rule as Redis's).

    Every allowed action is recorded in the user's history of its channel and in the
    user's all-channel history (``"*"``); a cap counts the history it names within its
    window ``(ts - per, ts]``, whichever strategy or campaign made the touches.
    """

    def __init__(self) -> None:
        self._hist: dict[tuple[str, str], list[tuple[float, str]]] = {}
        self._keys: set[tuple[str, str]] = set()

    def check(self, user_id, channel, ts, key, caps) -> FrequencyCap | None:
        if (user_id, key) in self._keys:
            return None  # already recorded: a replay of an allowed action
        for c in caps:
            if not c.applies_to(channel):
                continue
            if c.max == 0:
                return c
            lst = self._hist.get((user_id, c.channel), [])
            lo = bisect.bisect_right(lst, (ts - c.per, "\uffff"))
            hi = bisect.bisect_right(lst, (ts, "\uffff"))
            if hi - lo >= c.max:
                return c
        return None

    def record(self, user_id: str, channel: str, ts: float, key: str) -> None:
        if (user_id, key) in self._keys:
            return
        self._keys.add((user_id, key))
        for ch in {channel, "*"}:
            bisect.insort(self._hist.setdefault((user_id, ch), []), (ts, key))

    def check_and_record(self, user_id, channel, ts, key, caps) -> FrequencyCap | None:
        cap = self.check(user_id, channel, ts, key, caps)
        if cap is None:
            self.record(user_id, channel, ts, key)
        return cap


_CAPS_LUA = """
-- KEYS[1]: the user's history of this channel, KEYS[2]: of all channels
-- ARGV: ts, member, record (0/1), retention, then (key index, max, per) per cap
local ts = tonumber(ARGV[1])
local member = ARGV[2]
if redis.call('ZSCORE', KEYS[2], member) then return 0 end  -- every record is in the all-channel history
local n = (#ARGV - 4) / 3
for i = 1, n do
  local k = KEYS[tonumber(ARGV[2 + 3 * i])]
  local max = tonumber(ARGV[3 + 3 * i])
  local per = tonumber(ARGV[4 + 3 * i])
  if max == 0 then return i end
  if redis.call('ZCOUNT', k, '(' .. (ts - per), ts) >= max then return i end
end
if ARGV[3] == '1' then
  local keep = tonumber(ARGV[4])
  for _, k in ipairs(KEYS) do
    redis.call('ZADD', k, ts, member)
    redis.call('ZREMRANGEBYSCORE', k, '-inf', '(' .. (ts - keep))
    redis.call('EXPIRE', k, keep + 3600)
  end
end
return 0
"""


class RedisCapLedger:
    """Frequency caps counted in Redis: shared by every worker, the service and restarts.

    The same rule as :class:`MemoryCapLedger`: per user, one sorted set per channel and
    one for all channels hold the idempotency keys of allowed actions, scored by event
    time; a Lua script checks (and records) atomically. A key already recorded is
    allowed again (a redelivered event), so nothing is counted twice.
    """

    def __init__(self, redis_client: Any, namespace: str = "mktlab", retention: int = RETENTION):
        self.redis = redis_client
        self.namespace = namespace
        self.retention = int(retention)
        self._script: Callable | None = None

    def keys_of(self, user_id: str, channel: str) -> list[str]:
        """The sorted sets holding ``user_id``'s history of ``channel`` and of all channels."""
        return self._keys(user_id, channel)

    def _keys(self, user_id: str, channel: str) -> list[str]:
        base = f"{self.namespace}:touch:{{{user_id}}}"
        return [f"{base}:{channel}", f"{base}:*"]

    def _call(self, user_id, channel, ts, key, caps, record: bool, pipe=None) -> FrequencyCap | None:
        live = [c for c in caps if c.applies_to(channel)]
        if self._script is None:
            self._script = self.redis.register_script(_CAPS_LUA)
        keep = max([self.retention, *(c.per for c in live)])
        args: list[Any] = [repr(float(ts)), key, "1" if record else "0", keep]
        for c in live:
            args += [2 if c.channel == "*" else 1, c.max, c.per]
        import redis

        if pipe is not None:  # recording only, queued with the caller's commands: no script,
            for k in self._keys(user_id, channel):  # (a pipeline with one checks it exists first)
                pipe.zadd(k, {key: float(ts)})  # re-adding a key only rewrites its same score
                pipe.zremrangebyscore(k, "-inf", f"({float(ts) - keep}")
                pipe.expire(k, int(keep) + 3600)
            return None
        try:
            hit = int(self._script(keys=self._keys(user_id, channel), args=args))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise ServiceUnavailableError(
                f"Redis is unreachable for frequency caps: {exc}"
            ) from exc
        return live[hit - 1] if hit else None

    def check(self, user_id, channel, ts, key, caps) -> FrequencyCap | None:
        return self._call(user_id, channel, ts, key, caps, record=False)

    def record(self, user_id: str, channel: str, ts: float, key: str, *, pipe: Any = None) -> None:
        """Count an allowed action (queued on ``pipe`` when given)."""
        self._call(user_id, channel, ts, key, (), record=True, pipe=pipe)

    def check_and_record(self, user_id, channel, ts, key, caps) -> FrequencyCap | None:
        return self._call(user_id, channel, ts, key, caps, record=True)


class BatchCapLedger(MemoryCapLedger):
    """The Redis ledger's histories, read once per batch and written back once per batch.

    A live worker owns its users' partitions, so it can decide a whole batch against a
    copy of their histories: :meth:`prefetch` reads the batch's users (one pipeline),
    decisions run in memory with :class:`MemoryCapLedger`'s rule, and :meth:`flush`
    writes the new records (one pipeline). A crash between the two loses nothing: the
    redelivered batch is decided again against the same histories. Touches the service
    records for the same users while a batch is in flight are seen by the next batch.
    """

    def __init__(self, redis_ledger: RedisCapLedger, channels: Sequence[str]):
        super().__init__()
        self.ledger = redis_ledger
        self.channels = sorted(set(channels) | {"*"})
        self._new: list[tuple[str, str, float, str]] = []
        self._horizon = redis_ledger.retention

    def prefetch(self, users: Sequence[str], ts_min: float) -> None:
        """Load the histories of ``users`` from ``ts_min - retention`` on (forgetting the last batch's)."""
        self._hist.clear()
        self._keys.clear()
        self._new.clear()
        users = list(dict.fromkeys(users))
        if not users:
            return
        r = self.ledger.redis
        pipe = r.pipeline(transaction=False)
        for u in users:
            for ch in self.channels:
                pipe.zrangebyscore(
                    self.ledger.keys_of(u, ch)[0], ts_min - self._horizon, "+inf", withscores=True
                )
        got = pipe.execute()
        i = 0
        for u in users:
            for ch in self.channels:
                rows = got[i]
                i += 1
                if rows:
                    lst = sorted(
                        (float(sc), m.decode() if isinstance(m, bytes) else m) for m, sc in rows
                    )
                    self._hist[(u, ch)] = lst
                    self._keys.update((u, k) for _, k in lst)

    def record(self, user_id: str, channel: str, ts: float, key: str) -> None:
        if (user_id, key) in self._keys:
            return
        super().record(user_id, channel, ts, key)
        self._new.append((user_id, channel, ts, key))

    def flush(self) -> int:
        """Write this batch's new records to Redis; return how many."""
        if not self._new:
            return 0
        keep = self._horizon
        by_key: dict[str, dict[str, float]] = {}
        latest: dict[str, float] = {}
        for u, ch, ts, key in self._new:
            for k in self.ledger.keys_of(u, ch):
                by_key.setdefault(k, {})[key] = ts
                latest[k] = max(latest.get(k, ts), ts)
        pipe = self.ledger.redis.pipeline(transaction=False)
        for k, members in by_key.items():  # one add, one trim, one expiry per sorted set
            pipe.zadd(k, members)
            pipe.zremrangebyscore(k, "-inf", f"({latest[k] - keep}")
            pipe.expire(k, int(keep) + 3600)
        pipe.execute()
        n = len(self._new)
        self._new.clear()
        return n
