"""Execute what the deciders asked for: coupons, messages, profile updates.

:class:`EffectExecutor` batches effects by kind: coupons go to the Redis issuer
(``issue_many`` per campaign, the effect key as request id), messages to the gateway
(``send_many``, the effect key as idempotency key), updates to a Redis hash per user.
Every path is idempotent by the effect key, so executing a batch again after a crash
issues, sends and counts nothing twice. Outcomes come back as short labels for metrics.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from mktlab.errors import NotFoundError, ValidationError


def request_id_for(key: str) -> str:
    """The issuer request id of an effect key (hashed when too long for one)."""
    from mktlab.coupons.campaign import REQUEST_ID_RE

    if len(key) <= 128 and REQUEST_ID_RE.fullmatch(key):
        return key
    return "fx:" + hashlib.sha1(key.encode()).hexdigest()


class EffectExecutor:
    """Send effects to the issuer, the gateway and the profile store.

    Parameters
    ----------
    issuer : CouponIssuer, optional
        Without one, coupon effects are counted as ``coupon_unrouted``.
    gateway : mktlab.messaging.Gateway, optional
        Without one, message effects are counted as ``message_unrouted``.
    redis : redis client, optional
        Where ``update`` effects set fields (``<namespace>:profile:<user>``).
    """

    def __init__(
        self,
        issuer: Any = None,
        gateway: Any = None,
        redis: Any = None,
        namespace: str = "mktlab:live",
        tz: Any = None,
    ):
        self.issuer, self.gateway, self.redis = issuer, gateway, redis
        self.refused: list[str] = []  # messages the gateway refused, with the reason
        self.namespace = namespace
        self.tz = tz

    def execute(self, effects: Sequence[Any]) -> list[str]:
        """Execute ``effects``; return one outcome label per effect, in the order given.

        Effects of a kind go together (one ``issue_many`` per campaign, one
        ``send_many``, one pipeline of updates).
        """
        by_kind: dict[str, list[int]] = defaultdict(list)
        for i, e in enumerate(effects):
            by_kind[e.kind].append(i)
        for kind in set(by_kind) - {"coupon", "message", "update"}:
            raise ValidationError(f"effect kind {kind!r}: expected coupon, message or update")
        out: list[str] = [""] * len(effects)
        for kind, run in (("coupon", self._coupons), ("message", self._messages),
                          ("update", self._updates)):  # fmt: skip
            idx = by_kind.get(kind)
            if idx:
                for i, label in zip(idx, run([effects[i] for i in idx]), strict=True):
                    out[i] = label
        return out

    def _coupons(self, effects: list[Any]) -> list[str]:
        if self.issuer is None:
            return ["coupon_unrouted"] * len(effects)
        by_campaign: dict[str, list[int]] = defaultdict(list)
        for i, e in enumerate(effects):
            cid = e.payload.get("campaign_id") or e.payload.get("campaign")
            by_campaign[str(cid)].append(i)
        out = [""] * len(effects)
        for cid, idx in by_campaign.items():
            try:
                res = self.issuer.issue_many(
                    cid, [(effects[i].user_id, request_id_for(effects[i].key)) for i in idx]
                )
            except NotFoundError:
                res = None
            for j, i in enumerate(idx):
                if res is None:
                    out[i] = "coupon_unknown_campaign"
                else:
                    r = res[j]
                    out[i] = "coupon_issued" if r.issued else f"coupon_denied_{r.reason}"
        return out

    def _messages(self, effects: list[Any]) -> list[str]:
        if self.gateway is None:
            return ["message_unrouted"] * len(effects)
        from mktlab.errors import MktlabError
        from mktlab.messaging import Message

        msgs, out, bad = [], [], {}
        for e in effects:
            p = e.payload
            tz = self.tz(e.user_id) if callable(self.tz) else self.tz
            msgs.append(
                Message(
                    key=e.key,
                    user_id=e.user_id,
                    template=p["template"],
                    channels=tuple(p.get("channels") or ("push",)),
                    ts=float(e.ts),
                    campaign_id=p.get("campaign_id"),
                    params=dict(p.get("params") or {}),
                    tz=tz,
                )
            )
        # a message the gateway refuses (unknown template, a parameter the event lacks) is
        # counted as failed; it must not take the rest of the batch, or the worker, with it
        good = []
        for i, m in enumerate(msgs):
            try:
                self.gateway.templates.get(m.template).render(m.params)
                good.append(m)
            except MktlabError as exc:
                bad[i] = exc
        sent = iter(self.gateway.send_many(good)) if good else iter(())
        for i in range(len(msgs)):
            out.append("message_refused" if i in bad else f"message_{next(sent).status}")
        self.refused.extend(f"{msgs[i].key}: {exc}" for i, exc in bad.items())
        return out

    def _updates(self, effects: list[Any]) -> list[str]:
        if self.redis is None:
            return ["update_unrouted"] * len(effects)
        pipe = self.redis.pipeline(transaction=False)
        for e in effects:
            p = e.payload
            if "set" in p or "tag" in p:  # a journey's update node
                fields = {str(k): str(v) for k, v in dict(p.get("set") or {}).items()}
                fields |= {f"tag:{k}": str(v) for k, v in dict(p.get("tag") or {}).items()}
            else:  # a rule's set_lifecycle
                fields = {str(k): str(v) for k, v in p.items() if k != "source"}
            if fields:
                pipe.hset(f"{self.namespace}:profile:{e.user_id}", mapping=fields)
        pipe.execute()
        return ["update_ok"] * len(effects)
