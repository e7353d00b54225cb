"""Per-campaign counters in Redis, and how the live loop feeds them exactly once.

One hash per campaign, ``<namespace>:metrics:{<id>}`` (:class:`CampaignCounters`), holds
``decisions``, ``treated``, ``holdout``, ``conv_treated``, ``conv_holdout``,
``redeemed`` and ``errors``; the watcher (:mod:`mktlab.campaigns.watch`) reads it every
tick and its breakers judge the campaign on it.

The live engine feeds it through :class:`LiveTally`, one per bus partition:

- **decisions** — coupon and message decisions of a managed campaign's strategy or
  journey (rows refused by the campaign's own gate, ``campaign_paused`` and
  ``not_in_rollout``, are not the campaign's traffic and are not counted);
- **treated / holdout** — *users*, not decisions: the first time a user of the gray
  traffic is decided for, their arm (the strategy's holdout hash, or a journey's holdout
  split) is written to ``<namespace>:metrics:{<id>}:arm`` and the arm's count goes up
  once. Holdout users outside the rollout are left out, so both arms are drawn from the
  same traffic (the strategy checks the holdout before the rollout);
- **conv_treated / conv_holdout** — the first ``outcome_event`` (default ``purchase``) of
  a user who has an arm, after the arm was set (intention to treat);
- **redeemed** — ``redeem_event`` events (default ``coupon_redeem``) whose
  ``campaign_id`` (or ``campaign``) property names the campaign;
- **errors** — effects that failed: an unknown campaign at the issuer, a message the
  gateway refused or failed to deliver on every channel.

Exactly once: the tally is written by one Lua call per campaign *inside the engine's
checkpoint transaction*, next to the ids of the events it came from. A worker that dies
before the checkpoint leaves neither; the events are redelivered, decided again and
counted then. Arms and conversions are also idempotent by user (``HSETNX``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mktlab.campaigns.rollout import ACTIVE, in_rollout
from mktlab.errors import ValidationError

COUNTERS = ("decisions", "treated", "holdout", "conv_treated", "conv_holdout", "redeemed", "errors")
GATED = ("campaign_paused", "not_in_rollout")  # the campaign's own gate refused: not its traffic
ACTED = ("coupon", "message")
ERROR_OUTCOMES = frozenset({"coupon_unknown_campaign", "message_refused", "message_failed"})


def metrics_key(namespace: str, campaign_id: str) -> str:
    return f"{namespace}:metrics:{{{campaign_id}}}"


class CampaignCounters:
    """The per-campaign counters in Redis (``<namespace>:metrics:{<campaign id>}``)."""

    def __init__(self, redis: Any, namespace: str):
        self.redis, self.namespace = redis, namespace

    def key(self, campaign_id: str) -> str:
        return metrics_key(self.namespace, campaign_id)

    def add(self, campaign_id: str, **counts: int) -> None:
        """Add to counters by hand (tests, replays of counts kept elsewhere)."""
        bad = sorted(set(counts) - set(COUNTERS))
        if bad:
            raise ValidationError(f"counters {bad}: expected some of {COUNTERS}")
        pipe = self.redis.pipeline(transaction=False)
        for k, v in counts.items():
            pipe.hincrby(self.key(campaign_id), k, int(v))
        pipe.execute()

    def read(self, campaign_id: str) -> dict[str, int]:
        raw = self.redis.hgetall(self.key(campaign_id))
        got = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        return {k: got.get(k, 0) for k in COUNTERS}

    def arm(self, campaign_id: str, user_id: str) -> str | None:
        """The arm a user was counted in (``treated`` / ``holdout``), or None."""
        v = self.redis.hget(self.key(campaign_id) + ":arm", user_id)
        return v.decode() if isinstance(v, bytes) else v


# KEYS: metrics hash, arm hash (user -> arm), converted hash (user -> 1), all of one
# campaign (one hash tag). ARGV: decisions, errors, redeemed, then (op, user, arm) triples in event
# order: op "a" sets the user's arm once, op "c" counts the user's first conversion once.
_TALLY_LUA = """
local m, arms, conv = KEYS[1], KEYS[2], KEYS[3]
if tonumber(ARGV[1]) > 0 then redis.call('HINCRBY', m, 'decisions', ARGV[1]) end
if tonumber(ARGV[2]) > 0 then redis.call('HINCRBY', m, 'errors', ARGV[2]) end
if tonumber(ARGV[3]) > 0 then redis.call('HINCRBY', m, 'redeemed', ARGV[3]) end
for i = 4, #ARGV, 3 do
  local user = ARGV[i + 1]
  if ARGV[i] == 'a' then
    if redis.call('HSETNX', arms, user, ARGV[i + 2]) == 1 then
      redis.call('HINCRBY', m, ARGV[i + 2], 1)
    end
  else
    local arm = redis.call('HGET', arms, user)
    if arm and redis.call('HSETNX', conv, user, 1) == 1 then
      redis.call('HINCRBY', m, 'conv_' .. arm, 1)
    end
  end
end
return 1
"""


class LiveTally:
    """What one partition's decisions, events and effect outcomes add to the counters.

    Parameters
    ----------
    states : CampaignStates
        The lifecycle's published states (a campaign with none is not managed: not counted).
    campaign_of : mapping
        Strategy or journey name -> campaign id.
    journeys : iterable of str
        Which of those names are journeys (their arm is their holdout split's).
    namespace : str
        The lifecycle's namespace (the issuer's), where the counters live.
    outcome_event : str
        The event type that counts as a conversion.
    redeem_event : str
        The event type that reports a coupon redeemed (its ``campaign_id`` property).
    """

    def __init__(self, states: Any, campaign_of: Mapping[str, str], namespace: str, *,
                 journeys: Iterable[str] = (), outcome_event: str = "purchase",
                 redeem_event: str = "coupon_redeem"):  # fmt: skip
        self.states = states
        self.journeys = frozenset(journeys)
        self.campaign_of = {k: v for k, v in campaign_of.items() if v}
        self.campaigns = sorted(set(self.campaign_of.values()))
        self.namespace = namespace
        self.outcome_event = outcome_event
        self.redeem_event = redeem_event
        self._counts: dict[str, list[int]] = {}  # campaign -> [decisions, errors, redeemed]
        # campaign -> (ts, tie, op, user, arm): conversions after decisions of the same instant
        self._ops: dict[str, list[tuple[float, int, str, str, str]]] = {}
        # conversions once per event, not per campaign: (campaigns managed then, [(ts, user)])
        self._conv: list[tuple[frozenset[str], list[tuple[float, str]]]] = []
        # the managed campaigns, kept while the states' cache gives the same answers
        self._act: dict[str, dict] = {}
        self._act_ids: frozenset[str] = frozenset()
        self._act_key: tuple[int, float] = (-1, float("-inf"))  # (states generation, until)

    def __bool__(self) -> bool:
        return bool(self._counts or self._ops or self._conv)

    def _active(self) -> dict[str, dict]:
        """Managed campaigns (published state gray or full) -> state, as ``states.get`` says."""
        gen, until = self._act_key
        if getattr(self.states, "generation", None) == gen and time.monotonic() < until:
            return self._act
        if hasattr(self.states, "get_many"):
            got, until = self.states.get_many(self.campaigns)
        else:  # any reader with get(): asked every time
            got, until = {c: self.states.get(c) for c in self.campaigns}, float("-inf")
        self._act = {c: st for c, st in got.items() if st is not None and st["state"] in ACTIVE}
        self._act_ids = frozenset(self._act)
        self._act_key = (getattr(self.states, "generation", -1), until)
        return self._act

    def _managed(self, cid: str) -> dict | None:
        return self._active().get(cid)

    def decisions(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Count decision-log rows (:data:`mktlab.strategy.DECISION_COLUMNS`)."""
        active: dict[str, dict] | None = None
        for r in rows:
            cid = self.campaign_of.get(r["source"])
            if cid is None or r["status"] in GATED:
                continue
            if active is None:  # once per call, and only when a row may count
                active = self._active()
            action, user, journey = r["action"], r["user_id"], r["source"] in self.journeys
            if action in ACTED:
                st = active.get(cid)
                if st is None:
                    continue
                arm = None  # a journey's arm comes from its holdout split
                if not journey and r["status"] == "holdout":
                    if not in_rollout(user, st["salt"], st["rollout"]):
                        continue  # held out, but not in the gray traffic: not comparable
                    arm = "holdout"
                elif not journey:
                    arm = "treated"
                self._counts.setdefault(cid, [0, 0, 0])[0] += 1
                if arm is not None:
                    self._ops.setdefault(cid, []).append((float(r["ts"]), 0, "a", user, arm))
            elif (action == "split" and r.get("arm") in ("treated", "holdout")
                  and cid in active):  # fmt: skip
                self._ops.setdefault(cid, []).append((float(r["ts"]), 0, "a", user, r["arm"]))

    def on_event(self, ev: Any, rows: Sequence[Mapping[str, Any]], start: int = 0) -> None:
        """One handled event: its decision rows (``rows[start:]``), then the event itself."""
        if len(rows) > start:
            self.decisions(rows[start:])
        if ev.event == self.outcome_event or ev.event == self.redeem_event:
            self.event(ev)

    def event(self, ev: Any) -> None:
        """One event of the stream: a conversion, a redemption, or nothing the counters want."""
        if ev.event == self.outcome_event:
            self.conversion(ev.user_id, ev.ts)
        elif ev.event == self.redeem_event:
            props = ev.props or {}
            self.redemption(props.get("campaign_id") or props.get("campaign"))

    def conversion(self, user_id: str, ts: float) -> None:
        """An ``outcome_event`` of ``user_id`` at ``ts``: a conversion wherever they have an arm.

        Counted after the decisions of the same instant; the user's arm must have been set
        first (by this tally or an earlier one).
        """
        self._active()
        ids = self._act_ids
        if not ids:
            return
        if not self._conv or self._conv[-1][0] is not ids:
            self._conv.append((ids, []))
        self._conv[-1][1].append((float(ts), user_id))

    def error(self, campaign_id: str | None, n: int = 1) -> None:
        """``n`` failed effects of ``campaign_id`` (ignored when it is not managed)."""
        if campaign_id in self.campaigns and self._managed(campaign_id) is not None:
            self._counts.setdefault(campaign_id, [0, 0, 0])[1] += n

    def redemption(self, campaign_id: Any) -> None:
        """A coupon of ``campaign_id`` was redeemed (a ``redeem_event`` naming it)."""
        if (
            isinstance(campaign_id, str)
            and campaign_id in self.campaigns
            and self._managed(campaign_id)
        ):
            self._counts.setdefault(campaign_id, [0, 0, 0])[2] += 1

    def queue(self, pipe: Any) -> int:
        """Add the tally to ``pipe`` (the checkpoint's transaction); :meth:`reset` once it ran.

        The tally is kept until then, so a checkpoint that failed and is tried again
        queues the same counts. Returns the number of campaigns it touched.
        """
        convs: dict[str, list[tuple[float, int, str, str, str]]] = {}
        for ids, rows in self._conv:
            for cid in ids:
                convs.setdefault(cid, []).extend((ts, 1, "c", u, "") for ts, u in rows)
        n = 0
        for cid in sorted(set(self._counts) | set(self._ops) | set(convs)):
            d, e, r = self._counts.get(cid, (0, 0, 0))
            args: list[Any] = [d, e, r]
            ops = [*self._ops.get(cid, ()), *convs.get(cid, ())]  # a stable sort: event order
            for _, _, op, user, arm in sorted(ops, key=lambda o: (o[0], o[1])):
                args += (op, user, arm)
            m = metrics_key(self.namespace, cid)
            pipe.eval(_TALLY_LUA, 3, m, m + ":arm", m + ":conv", *args)
            n += 1
        return n

    def reset(self) -> None:
        """Start afresh: what :meth:`queue` added was written."""
        self._counts, self._ops, self._conv = {}, {}, []
