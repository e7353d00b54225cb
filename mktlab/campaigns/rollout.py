"""Gradual launch: who is in a campaign's gray traffic, and the state every runtime reads.

A user is in a campaign's rollout when the salted hash of their id
(:func:`mktlab.experiments._hash.bucket_of`, salt ``"<strategy salt>:rollout"``) falls
below the rollout fraction. Ramping from 5% to 25% only raises the cut-off, so every
user in at 5% is still in at 25%: ramping only adds users and never switches anyone's
arm. The holdout is the strategy's own (salt ``"<strategy salt>:holdout"``, an
independent hash), fixed for the campaign's whole life whatever the rollout: at every
stage holdout and treated users are comparable, which is what the harmful-effect
breaker and the retrospective measure.

The lifecycle publishes each launched campaign's state to one Redis hash,
``<namespace>:campaign:{<id>}:state`` (``state``, ``rollout``, ``version``, ``salt``);
:class:`CampaignStates` reads it with a short cache, and
:class:`mktlab.strategy.Eligibility` refuses a managed campaign's users with
``campaign_paused`` (not gray or full) or ``not_in_rollout`` (outside the gray traffic).
A campaign nobody manages (no hash) is not gated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from mktlab.experiments._hash import N_BUCKETS, bucket_of

ACTIVE = ("gray", "full")


def in_rollout(user_id: str, salt: str, rollout: float) -> bool:
    """True when ``user_id`` is in a campaign's gray traffic at ``rollout`` (0..1)."""
    if rollout >= 1.0:
        return True
    if rollout <= 0.0:
        return False
    return bucket_of(user_id, f"{salt}:rollout") < rollout * N_BUCKETS


def state_key(namespace: str, campaign_id: str) -> str:
    return f"{namespace}:campaign:{{{campaign_id}}}:state"


def publish_state(redis: Any, namespace: str, campaign_id: str, *, state: str, rollout: float,
                  version: int, salt: str) -> None:  # fmt: skip
    """Write a campaign's live state (what workers and ``/issue`` gate on)."""
    redis.hset(
        state_key(namespace, campaign_id),
        mapping={
            "state": state,
            "rollout": repr(float(rollout)),
            "version": int(version),
            "salt": salt,
        },
    )


def read_state(redis: Any, namespace: str, campaign_id: str) -> dict | None:
    return _state(redis.hgetall(state_key(namespace, campaign_id)))


def _state(raw: Any) -> dict | None:
    if not raw:
        return None
    d = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
         for k, v in raw.items()}  # fmt: skip
    return {
        "state": d.get("state", ""),
        "rollout": float(d.get("rollout", 0.0)),
        "version": int(d.get("version", 0)),
        "salt": d.get("salt", ""),
    }


class CampaignStates:
    """Cached reader of the published campaign states (``ttl`` seconds, default 1).

    A pause therefore reaches every worker and service process within ``ttl``; the
    issuer's own pause (done by the lifecycle at the same time) stops coupons at once.
    """

    def __init__(self, redis: Any, namespace: str = "mktlab:cp", ttl: float = 1.0):
        self.redis = redis
        self.namespace = namespace
        self.ttl = float(ttl)
        self._cache: dict[str, tuple[float, dict | None]] = {}
        self._lock = threading.Lock()
        self.generation = 0  # moves on whenever a cached answer may change (read or dropped)

    def get(self, campaign_id: str) -> dict | None:
        now = time.monotonic()
        hit = self._cache.get(campaign_id)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        # the other campaigns read so far expire about together: one round trip for all
        others = [c for c, (at, _) in list(self._cache.items()) if now - at >= self.ttl]
        return self.get_many([campaign_id, *others])[0][campaign_id]

    def get_many(self, campaign_ids: Iterable[str]) -> tuple[dict[str, dict | None], float]:
        """:meth:`get` of several campaigns (the expired ones read in one round trip).

        Also returns the monotonic time until which :meth:`get` gives these same answers
        (while :attr:`generation` stays), so a caller may keep them until then.
        """
        ids = list(dict.fromkeys(campaign_ids))
        now = time.monotonic()
        stale = [c for c in ids if (h := self._cache.get(c)) is None or now - h[0] >= self.ttl]
        if stale:
            pipe = self.redis.pipeline(transaction=False)
            for c in stale:
                pipe.hgetall(state_key(self.namespace, c))
            got = pipe.execute()
            with self._lock:
                for c, raw in zip(stale, got, strict=True):
                    self._cache[c] = (now, _state(raw))
                self.generation += 1
        out, until = {}, float("inf")
        for c in ids:
            at, st = self._cache[c]
            out[c] = st
            until = min(until, at + self.ttl)
        return out, until

    def refuse(self, campaign_id: str | None, user_id: str) -> tuple[str, str] | None:
        """``(status, reason)`` when the campaign's state keeps ``user_id`` out, else None."""
        if campaign_id is None:
            return None
        st = self.get(campaign_id)
        if st is None:
            return None
        if st["state"] not in ACTIVE:
            return "campaign_paused", f"campaign {campaign_id!r} is {st['state']}"
        if not in_rollout(user_id, st["salt"], st["rollout"]):
            return (
                "not_in_rollout",
                f"outside the {st['rollout']:.0%} gray rollout of {campaign_id!r}",
            )
        return None

    def invalidate(self) -> None:
        with self._lock:
            self._cache.clear()
            self.generation += 1
