"""The live engine: events in, decisions and effects out, state checkpointed per partition.

A worker owns some partitions of the event bus at a time. For each partition the engine
keeps, in memory, every strategy's rule-window state, every active (user, journey)
state and the journey timers; :meth:`LiveEngine.checkpoint` writes what changed to Redis
in one transaction, then the worker acks the events. If a worker dies, the next owner of
the partition loads the checkpoint and the bus redelivers the events after it; events
already handled (the last 200,000 ids of each partition, kept with the checkpoint) are
recognised by id and skipped, which also drops a publisher's duplicate after a retry.

Per batch the order is: decide (pure: :class:`~mktlab.strategy.StrategyRuntime` and
:mod:`~mktlab.live.journey_runtime`) → execute effects (coupons through the Redis issuer,
messages through the gateway; both idempotent by the effect's key, so a replay issues
and sends nothing twice) → checkpoint (decision log segment, then Redis state) → ack.

Timers run on the event clock by default: before an event at time ``t`` is handled, the
partition's timers due by ``t`` fire in time order, exactly as
:func:`mktlab.live.journey_sim.simulate` does; :meth:`LiveEngine.advance` fires timers up
to a given time (the wall clock in production, the end of a replayed file otherwise).
"""

from __future__ import annotations

import heapq
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mktlab.campaigns.counters import ERROR_OUTCOMES, LiveTally
from mktlab.errors import MktlabError, ValidationError
from mktlab.live.decisions import DecisionLog
from mktlab.live.effects import EffectExecutor
from mktlab.live.producer import TICK_EVENT
from mktlab.strategy.eligibility import BatchCapLedger, RedisCapLedger
from mktlab.strategy.runtime import RunResult, StrategySet
from mktlab.strategy.spec import Strategy

SEP = "\x1f"
RECENT_IDS = 200_000  # event ids remembered per partition: redeliveries and duplicate publishes


@dataclass
class _Partition:
    index: int
    rules: StrategySet  # its network also counts the windowed journey entries (markers)
    jstates: dict[tuple[str, str], Any] = field(default_factory=dict)
    timers: list[tuple[float, str, str]] = field(default_factory=list)  # heap (wake, user, journey)
    dirty: set[tuple[str, str]] = field(default_factory=set)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    processed: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    order: deque = field(default_factory=deque)

    active: dict[str, set[str]] = field(default_factory=dict)  # user -> journeys they are in
    legacy_windows: bool = False  # a ``win:entries`` key may be left from an older checkpoint
    tally: Any = None  # LiveTally: the campaign counters this partition adds at its checkpoint

    def track(self, user: str, journey: str, state: Any) -> None:
        if state is not None and not state.done:
            self.active.setdefault(user, set()).add(journey)
        elif user in self.active:
            self.active[user].discard(journey)
            if not self.active[user]:
                del self.active[user]

    def remember(self, event_id: str) -> None:
        """Keep the last :data:`RECENT_IDS` event ids (a set for lookups, a queue for age)."""
        self.seen.add(event_id)
        self.order.append(event_id)
        if len(self.order) > RECENT_IDS:
            self.seen.discard(self.order.popleft())

    watermark: float = float("-inf")


@dataclass
class BatchReport:
    events: int = 0
    skipped: int = 0
    decisions: int = 0
    effects: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


class LiveEngine:
    """Strategies and journeys over bus deliveries (see the module docstring).

    Parameters
    ----------
    strategies : sequence of Strategy
        Each needs a ``rules`` section (its triggers).
    journeys : sequence of Journey
        Validated :class:`mktlab.live.journey.Journey` objects.
    context : LiveContext
    redis : redis client
        Checkpoints, journey state, timers and caps live here.
    executor : EffectExecutor, optional
        Issues coupons and sends messages (default: effects are only recorded).
    decisions : DecisionLog, optional
    namespace : str
    gate : CampaignStates, optional
        The campaign lifecycle's published states (:mod:`mktlab.campaigns.rollout`): a
        paused campaign's rules and journey actions act for nobody, a gray one's for its
        rollout only (journeys: only users in the rollout enter). With a gate, each
        checkpoint also adds the managed campaigns' decisions, users per arm, conversions
        and failed effects to their watcher counters, in the checkpoint's own transaction
        (:class:`mktlab.campaigns.counters.LiveTally`).
    outcome_event : str
        The event type the campaign counters count as a conversion (default ``purchase``);
        ``coupon_redeem`` events naming a campaign (``campaign_id``) count as redemptions.
    """

    def __init__(
        self,
        strategies: Sequence[Strategy] = (),
        journeys: Sequence[Any] = (),
        *,
        context: Any,
        redis: Any,
        executor: EffectExecutor | None = None,
        decisions: DecisionLog | None = None,
        namespace: str = "mktlab:live",
        gate: Any = None,
        outcome_event: str = "purchase",
    ):
        jr: Any = None
        if journeys:
            from mktlab.live import journey_runtime as jr
        self.strategies = list(strategies)
        names = [s.name for s in self.strategies] + [j.name for j in journeys]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValidationError(
                f"live engine: strategy/journey names must be unique; repeated: {dup}"
            )
        self.journeys = {j.name: jr.compile_journey(j) for j in journeys}
        # windowed entries are counted by the rules' network, next to the rules' own windows
        self._markers = {n: cj.entry.trigger for n, cj in self.journeys.items() if cj.windowed}
        self._order = list(
            self.journeys
        )  # journeys step in definition order, as the simulation does
        self._entry_by_event: dict[str, list[str]] = {}
        self._entry_any = [n for n, cj in self.journeys.items() if cj.entry_events is None]
        for n, cj in self.journeys.items():
            for e in cj.entry_events or ():
                self._entry_by_event.setdefault(e, []).append(n)
        for e, names in self._entry_by_event.items():  # + any-event entries, in definition order
            self._entry_by_event[e] = [n for n in self._order if n in names or n in self._entry_any]
        # An entry `where` that asks a string field for one of some values is necessary for
        # entering: index those journeys by (event type, field, value), a dict lookup per
        # event instead of one step call per journey.
        self._entry_index: dict[str, tuple[list[str], dict[str, dict[str, list[str]]]]] = {}
        for e, names in self._entry_by_event.items():
            always: list[str] = []
            by_field: dict[str, dict[str, list[str]]] = {}
            for n in names:
                key = _entry_key(self.journeys[n])
                if key is None:
                    always.append(n)
                else:
                    field_name, values = key
                    table = by_field.setdefault(field_name, {})
                    for v in values:
                        table.setdefault(v, []).append(n)
            self._entry_index[e] = (always, by_field)
        # the longest a user can be held: timers up to last event + horizon settle everyone
        self.horizon = float(max((cj.horizon for cj in self.journeys.values()), default=0))
        # what ran: window state checkpointed under other definitions is not reused
        import hashlib

        defs = sorted(
            [s.fingerprint() for s in self.strategies] + [j.fingerprint() for j in journeys]
        )
        self.fingerprint = hashlib.sha256("|".join(defs).encode()).hexdigest()[:16]
        self._jr = jr
        self.context = context
        self.gate = gate  # campaign states of the lifecycle (mktlab.campaigns.rollout)
        self.outcome_event = outcome_event
        self._campaign_of = {s.name: s.campaign_id for s in self.strategies if s.campaign_id}
        self._campaign_of |= {j.name: j.campaign_id for j in journeys if j.campaign_id}
        self._tallied = gate is not None and bool(self._campaign_of)
        self._batch_parts: dict[str, _Partition] = {}  # user -> partition, for failed effects
        self.redis = binary_client(redis)
        self.namespace = namespace
        self._sent: list[float] = []
        self._network: Any = None
        cap_channels = {
            c.channel
            for st in self.strategies
            for c in (*st.caps, *(st.rules.caps if st.rules else ()))
        }
        self.caps = BatchCapLedger(RedisCapLedger(self.redis, namespace), cap_channels)
        self.executor = executor or EffectExecutor()
        self.decision_log = decisions or DecisionLog()
        self.parts: dict[int, _Partition] = {}
        self.latencies: list[float] = []
        self.totals: Counter = Counter()

    # ------------------------------------------------------------------ state
    def _k(self, what: str, p: int) -> str:
        return f"{self.namespace}:{what}:p{p}"

    def _window_engines(self, part: _Partition) -> list[tuple[str, Any]]:
        """(name, OnlineEngine) pairs holding per-user window state in this partition.

        One engine counts the rules' windows and the journeys' windowed entries (it used
        to be two, ``rules`` and ``entries``: see :meth:`_load_windows`).
        """
        return [("rules", part.rules.engine)] if part.rules.engine is not None else []

    def _load_windows(self, part: _Partition, p: int) -> None:
        """Restore the partition's window state, merging a checkpoint's older ``entries`` key.

        A checkpoint written while the journeys' entries had an engine of their own holds
        their windows under ``win:entries``: each user's counts join the rules' (a pattern
        both counted has the same counts in both), and the old key goes at the next
        checkpoint.
        """
        eng = part.rules.engine
        if eng is None:
            return
        for user, blob in self.redis.hgetall(self._k("win:rules", p)).items():
            eng.restore_user(user.decode() if isinstance(user, bytes) else user, _bytes(blob))
        for user, blob in self.redis.hgetall(self._k("win:entries", p)).items():
            eng.merge_user(user.decode() if isinstance(user, bytes) else user, _bytes(blob))

    def partition(self, p: int) -> _Partition:
        """The in-memory state of partition ``p``, loaded from its checkpoint on first use."""
        part = self.parts.get(p)
        if part is not None:
            return part
        rules = StrategySet(self.strategies, self.context, self.caps, network=self._network,
                            gate=self.gate, markers=self._markers)  # fmt: skip
        self._network = rules.network  # compiled once, shared by every partition
        part = _Partition(p, rules)
        if self._tallied:
            part.tally = LiveTally(self.gate, self._campaign_of, self.gate.namespace,
                                   journeys=self.journeys, outcome_event=self.outcome_event)  # fmt: skip
        ck = self.redis.hgetall(self._k("ckpt", p))
        ck = {(k.decode() if isinstance(k, bytes) else k): v for k, v in ck.items()}
        same_defs = "defs" not in ck or _bytes(ck["defs"]).decode() == self.fingerprint
        if same_defs:  # windows counted for other definitions would mislead these rules
            self._load_windows(part, p)
        part.legacy_windows = True  # the first checkpoint removes a ``win:entries`` key
        for eid in self.redis.zrange(self._k("seen", p), -RECENT_IDS, -1):
            part.remember(eid.decode() if isinstance(eid, bytes) else eid)
        if ck and "watermark" in ck:
            part.watermark = float(_bytes(ck["watermark"]))
        for field_, blob in self.redis.hgetall(self._k("journeys", p)).items():
            f = field_.decode() if isinstance(field_, bytes) else field_
            user, jname = f.split(SEP, 1)
            cj = self.journeys.get(jname)
            if cj is not None:
                st = part.jstates[(user, jname)] = self._jr.JourneyState.decode(_bytes(blob))
                part.track(user, jname, st)
        for member, score in self.redis.zrange(self._k("timers", p), 0, -1, withscores=True):
            m = member.decode() if isinstance(member, bytes) else member
            user, jname = m.split(SEP, 1)
            heapq.heappush(part.timers, (float(score), user, jname))
        self.parts[p] = part
        return part

    def release(self, p: int) -> None:
        """Forget partition ``p`` (another worker owns it now; its checkpoint is the truth)."""
        self.parts.pop(p, None)

    # ------------------------------------------------------------------ deciding
    def _journey_step(
        self, part: _Partition, res: Any, user: str, jname: str, out: RunResult
    ) -> None:
        key = (user, jname)
        if res.state is None:
            part.jstates.pop(key, None)
        else:
            part.jstates[key] = res.state
        part.track(user, jname, res.state)
        part.dirty.add(key)
        if self._tallied and res.effects:
            self._batch_parts[user] = part
        st = res.state
        if st is not None and not st.done and st.wake_at:
            heapq.heappush(part.timers, (float(st.wake_at), user, jname))
        out.effects.extend(res.effects)
        out.decisions.extend(d.to_row() for d in res.decisions)

    def _fire_timers(self, part: _Partition, until: float, out: RunResult) -> None:
        while part.timers and part.timers[0][0] <= until:
            wake, user, jname = heapq.heappop(part.timers)
            state = part.jstates.get((user, jname))
            cj = self.journeys.get(jname)
            if state is None or cj is None or state.done or state.wake_at != int(wake):
                continue  # stale timer: the user moved on (an event resumed or ended the wait)
            res = self._jr.on_timer(cj, state, wake, self.context, user_id=user, gate=self.gate)
            self._journey_step(part, res, user, jname, out)

    def _on_event(self, part: _Partition, ev: Any, out: RunResult) -> Any:
        """Timers, journeys, and the rules matched (decided later, see :meth:`decide`)."""
        self._fire_timers(part, ev.ts, out)
        part.watermark = max(part.watermark, ev.ts)
        if ev.event == TICK_EVENT:  # a watermark: timers only (mktlab.live.producer.tick_events)
            return None
        # one pass of the network: the rules matched and the windowed entries it completed
        matched, fired = part.rules.match_all(ev.user_id, ev.ts, ev.event, ev.props)
        if self.journeys:
            self._step_journeys(part, ev, out, fired)
        return matched

    def _step_journeys(self, part: _Partition, ev: Any, out: RunResult, fired) -> None:
        # only the journeys this event type may enter, and those the user is in
        idx = self._entry_index.get(ev.event)
        if idx is None:
            cands = self._entry_any
        else:
            always, by_field = idx
            cands = list(always)
            for field_name, table in by_field.items():
                v = (ev.props or {}).get(field_name)
                if isinstance(v, str):
                    cands.extend(table.get(v, ()))
                elif v is not None:  # not a string: let the journey test it
                    cands.extend(n for ns in table.values() for n in ns)
        active = part.active.get(ev.user_id)
        if active:
            cands = [*cands, *(j for j in self._order if j in active and j not in cands)]
        for jname in cands:
            cj = self.journeys[jname]
            key = (ev.user_id, jname)
            state = part.jstates.get(key)
            if (
                (state is None or state.done)
                and cj.entry_events is not None
                and ev.event not in cj.entry_events
            ):
                continue  # cannot enter on this event type: one set lookup
            trig = (jname in fired) if cj.windowed else None
            res = self._jr.on_event(cj, state, ev, self.context, triggered=trig, gate=self.gate)
            if res.state is state and not res.effects and not res.decisions:
                continue  # nothing happened to this user in this journey
            self._journey_step(part, res, ev.user_id, jname, out)

    def decide(self, deliveries: Iterable[Any]) -> tuple[RunResult, BatchReport]:
        """Decisions and effects of a batch of bus deliveries (nothing executed yet)."""
        out, rep = RunResult(), BatchReport()
        deliveries = list(deliveries)
        pending: list[tuple[_Partition, Any, Any, int]] = []
        for d in deliveries:
            part = self.partition(d.partition)
            ev = d.event
            if ev.event_id in part.seen:  # handled already: a redelivery or a duplicate publish
                rep.skipped += 1
                continue
            before, acted = len(out.decisions), len(out.effects)
            try:
                matched = self._on_event(part, ev, out)
            except MktlabError as exc:  # a bad event never stops the worker
                rep.errors.append(f"{ev.event_id}: {exc}")
                continue
            part.decisions.extend(out.decisions[before:])
            part.processed.append(ev.event_id)
            part.remember(ev.event_id)
            rep.events += 1
            if part.tally is not None:  # counted as decided: the campaign's state now
                part.tally.on_event(ev, out.decisions, before)
            sent = ev.props.get("_sent_at") if ev.props else None
            if matched:
                pending.append((part, ev, matched, -1 if sent is None else 0))
            elif sent is not None and len(out.effects) > acted:  # latency to an action
                self._sent.append(float(sent))
        if pending:  # cap histories of the users a rule fired for, in one round trip
            self.caps.prefetch([ev.user_id for _, ev, _, _ in pending],
                               min(ev.ts for _, ev, _, _ in pending))  # fmt: skip
            for part, ev, matched, timed in pending:
                res = part.rules.decide(matched, ev.user_id, ev.ts, ev.event_id, ev.props)
                out.extend(res)
                part.decisions.extend(res.decisions)
                if part.tally is not None:
                    part.tally.decisions(res.decisions)
                if self._tallied and res.effects:
                    self._batch_parts[ev.user_id] = part
                if timed == 0 and res.effects:
                    self._sent.append(float(ev.props["_sent_at"]))
        rep.decisions = len(out.decisions)
        return out, rep

    def advance(self, now: float) -> tuple[RunResult, BatchReport]:
        """Fire every held partition's timers due by ``now`` (wall clock or end of a replay)."""
        out, rep = RunResult(), BatchReport()
        for part in list(self.parts.values()):
            before = len(out.decisions)
            self._fire_timers(part, now, out)
            part.decisions.extend(out.decisions[before:])
            if part.tally is not None:
                part.tally.decisions(out.decisions[before:])
        rep.decisions = len(out.decisions)
        return out, rep

    # ------------------------------------------------------------------ acting
    def process(self, deliveries: Sequence[Any]) -> BatchReport:
        """Decide and execute a batch (the worker then calls :meth:`checkpoint` and acks)."""
        self._sent = []
        self._batch_parts = {}
        out, rep = self.decide(deliveries)
        self._execute(out, rep)
        return rep

    def _execute(self, out: RunResult, rep: BatchReport) -> None:
        self.caps.flush()  # before the effects: a crash now re-decides against the same histories
        results = self.executor.execute(out.effects)
        for e in out.effects:
            rep.effects[e.kind] += 1
        rep.outcomes.update(r for r in results)
        if self._tallied:  # failed effects count at their partition's checkpoint
            for e, r in zip(out.effects, results, strict=True):
                part = self._batch_parts.get(e.user_id) if r in ERROR_OUTCOMES else None
                if part is not None and part.tally is not None:
                    part.tally.error(e.payload.get("campaign_id") or e.payload.get("campaign"))
            self._batch_parts = {}
        done = time.time()
        self.latencies.extend(done - s for s in self._sent)
        self._sent = []
        self.totals.update(events=rep.events, decisions=rep.decisions, skipped=rep.skipped)
        self.totals.update({f"effect_{k}": v for k, v in rep.effects.items()})
        self.totals.update({f"outcome_{k}": v for k, v in rep.outcomes.items()})

    def flush_timers(self, now: float) -> BatchReport:
        self._batch_parts = {}
        out, rep = self.advance(now)
        self._execute(out, rep)
        return rep

    def checkpoint(
        self, partitions: Iterable[int] | None = None, *, extra: Callable[[Any], None] | None = None
    ) -> int:
        """Write decisions, then state, of the given (default: all held) partitions.

        ``extra(pipe)`` may queue more commands in the state's transaction (the worker's
        metrics). Returns the number of decision rows written.
        """
        todo = [
            p
            for p in (list(partitions) if partitions is not None else list(self.parts))
            if p in self.parts
        ]
        rows = [r for p in todo for r in self.parts[p].decisions]
        if rows:  # one segment per checkpoint, whatever the number of partitions
            self.decision_log.append(rows, partition=todo[0] if len(todo) == 1 else None)
        n = len(rows)
        if not todo and extra is None:
            return n
        # every partition in one transaction (one round trip). What it wrote is marked
        # clean only once it has committed: a failed checkpoint leaves the dirty users,
        # the tallies and the decisions in place, so a retry writes them all again.
        pipe = self.redis.pipeline(transaction=True)
        for p in todo:
            self._queue_partition(pipe, p, self.parts[p])
        if extra is not None:
            extra(pipe)
        pipe.execute()
        for p in todo:
            part = self.parts[p]
            for _, eng in self._window_engines(part):
                eng.clear_dirty()
            if part.tally is not None:
                part.tally.reset()
            part.legacy_windows = False
            part.decisions, part.dirty, part.processed = [], set(), []
        return n

    def _queue_partition(self, pipe: Any, p: int, part: _Partition) -> None:
        """Queue partition ``p``'s checkpoint on ``pipe`` (nothing is marked written yet)."""
        ck: dict[str, Any] = {"defs": self.fingerprint}
        # one command per key and kind (not per field): the same end state, fewer commands
        for name, eng in self._window_engines(part):
            wkey = self._k(f"win:{name}", p)
            wset: dict[Any, bytes] = {}
            wdel: list[Any] = []
            for user in eng.dirty_users():
                blob = eng.user_snapshot(user)
                if blob is None:
                    wdel.append(user)
                else:
                    wset[user] = blob
            if wdel:
                pipe.hdel(wkey, *wdel)
            if wset:
                pipe.hset(wkey, mapping=wset)
        if part.legacy_windows:  # merged into the rules' windows when the partition loaded
            pipe.delete(self._k("win:entries", p))
        if part.processed:  # ids seen, for redeliveries and publisher retries
            skey = self._k("seen", p)
            base = time.time()
            pipe.zadd(skey, {eid: base + i * 1e-6 for i, eid in enumerate(part.processed)})
            pipe.zremrangebyrank(skey, 0, -RECENT_IDS - 1)
        ck["watermark"] = repr(part.watermark).encode()
        pipe.hset(self._k("ckpt", p), mapping=ck)
        if part.tally is not None:  # the watcher's counters, once with the ids they came from
            part.tally.queue(pipe)
        jkey, tkey = self._k("journeys", p), self._k("timers", p)
        # per field, the last write wins (as it did with one command per field)
        jset: dict[str, bytes] = {}
        jdel: dict[str, None] = {}
        tadd: dict[str, float] = {}
        tdel: dict[str, None] = {}
        for user, jname in part.dirty:
            f = f"{user}{SEP}{jname}"
            st = part.jstates.get((user, jname))
            if st is None:
                jset.pop(f, None)
                jdel[f] = None
                tadd.pop(f, None)
                tdel[f] = None
            else:
                jdel.pop(f, None)
                jset[f] = st.encode()
                wake = st.wake_at if (st.wake_at and not st.done) else None
                if wake is None:
                    tadd.pop(f, None)
                    tdel[f] = None
                else:
                    tdel.pop(f, None)
                    tadd[f] = wake
        if jdel:
            pipe.hdel(jkey, *jdel)
        if jset:
            pipe.hset(jkey, mapping=jset)
        if tdel:
            pipe.zrem(tkey, *tdel)
        if tadd:
            pipe.zadd(tkey, tadd)

    # ------------------------------------------------------------------ reading
    def journey_state_bytes(self) -> dict[str, float]:
        """Bytes per active (user, journey) in Redis: value, and value + field (the figure)."""
        total_v = total_f = n = 0
        for p in self.parts:
            for f, v in self.redis.hgetall(self._k("journeys", p)).items():
                n += 1
                total_v += len(_bytes(v))
                total_f += len(_bytes(v)) + len(_bytes(f))
        return {
            "entries": n,
            "value_bytes": total_v / max(n, 1),
            "entry_bytes": total_f / max(n, 1),
        }


def _entry_key(cj: Any) -> tuple[str, tuple[str, ...]] | None:
    """(field, values) of an entry `where` on ``event.<field>`` with ``==`` / ``in`` strings."""
    for p in getattr(cj.entry, "where", ()) or ():
        if getattr(p, "namespace", None) != "event":
            continue
        if p.op == "==" and isinstance(p.value, str):
            return p.name, (p.value,)
        if p.op == "in" and p.value and all(isinstance(v, str) for v in p.value):
            return p.name, tuple(p.value)
    return None


def binary_client(client: Any) -> Any:
    """A client on the same server that returns bytes (checkpoints are binary)."""
    import redis

    pool = client.connection_pool
    if not pool.connection_kwargs.get("decode_responses"):
        return client
    kw = {**pool.connection_kwargs, "decode_responses": False}
    return redis.Redis(
        connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kw)
    )


def _bytes(v: Any) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode()
