"""The omnichannel gateway: one message in, at most one delivery out, everything recorded.

For each :class:`~mktlab.messaging.Message` the gateway

1. returns the stored result as ``"duplicate"`` if the key was seen before (no provider
   called, nothing counted);
2. defers it to the end of the user's quiet hours;
3. tries ``msg.channels`` left to right, skipping a channel the template does not allow,
   whose frequency cap is exhausted or whose rate limit is spent, and falling back when a
   provider fails; the first success is ``"sent"``;
4. records the result and every channel attempt in the :class:`DeliveryLog`.

A batch (:meth:`Gateway.send_many`) is one database transaction, which is what makes it
fast and what makes local delivery exactly-once (see :mod:`mktlab.messaging.log`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.exc import IntegrityError

from mktlab.errors import ServiceUnavailableError, ValidationError
from mktlab.messaging.log import DeliveryLog, dumps_attempts, finite_or_none, loads_attempts
from mktlab.messaging.model import CHANNELS, DeliveryResult, Message, check_text, check_ts, zone
from mktlab.messaging.providers import Delivery, LocalProvider, Provider, ProviderResult
from mktlab.messaging.quiet import QuietHours
from mktlab.messaging.ratelimit import RedisTokenBucket, TokenBucket, check_rate
from mktlab.messaging.templates import Template, TemplateCatalog
from mktlab.rules.model import FrequencyCap, format_duration

_FLUSH_BATCH = 1000
_RETRIES = 3  # batches re-run after losing a key race to another writer


@dataclass
class _Item:
    """A message ready to decide: rendered, with its effective time and history."""

    key: str
    user_id: str
    template: str
    channels: tuple[str, ...]
    ts: float  # when it is decided (event clock): msg.ts, or flush_due's now
    msg_ts: float
    campaign_id: str | None
    tz: str | None
    body: str
    title: str | None
    allowed: Template | None
    prior: tuple = ()  # attempts made before (a deferred message being flushed)
    stored: bool = False  # already a row (deferred): update it, don't insert


class _Tokens:
    """Rate-limit tokens for one batch: taken per channel on first use, rest given back."""

    def __init__(self, buckets: Mapping[str, Any], demand: Counter):
        self.buckets = buckets
        self.demand = demand
        self.left: dict[str, int] = {}

    def take(self, channel: str) -> bool:
        bucket = self.buckets.get(channel)
        if bucket is None:
            return True
        if channel not in self.left:
            self.left[channel] = bucket.take(self.demand[channel])
        if self.left[channel] > 0:
            self.left[channel] -= 1
            return True
        return False

    def release(self) -> None:
        for channel, n in self.left.items():
            self.buckets[channel].give_back(n)
        self.left.clear()


def _cap_reason(cap: FrequencyCap) -> str:
    return f"cap {cap.channel} {cap.max}/{format_duration(cap.per)} reached"


class Gateway:
    """Send templated messages over the best allowed channel, at most once per key.

    Parameters
    ----------
    log : DeliveryLog
        Where results, attempts, local deliveries and deferred messages live.
    templates : TemplateCatalog
        (A mapping is accepted and read with :meth:`TemplateCatalog.from_dict`.)
    providers : mapping of channel -> Provider, optional
        Default: a :class:`LocalProvider` for every channel but ``webhook``.
    caps : sequence of mktlab.rules.model.FrequencyCap
        Per user, counting *sent* deliveries in the event-time window ``(ts - per, ts]``;
        channel ``"*"`` counts every channel (as :meth:`FrequencyCap.applies_to` says).
    quiet_hours : QuietHours, optional
        Messages inside the user's quiet window are deferred to its end.
    rate_limits : mapping of channel -> messages per second, optional
        Wall-clock limits, shared through ``redis`` when given, else per process. A spent
        limit moves on to the next channel, or defers the message by 1 s.
    default_tz : str
        Time zone of messages whose ``tz`` is ``None``.
    redis : redis.Redis, optional
        Shares the rate-limit buckets between processes.
    namespace : str
        Prefix of the Redis keys.

    Notes
    -----
    Caps are counted from the delivery log, not from Redis: the count and the record of
    the send happen in one writer transaction (SQLite's write lock, PostgreSQL advisory
    locks per user bucket), so they cannot disagree, hold across processes and restarts,
    and a crash cannot leave a counted-but-unsent (or sent-but-uncounted) message. A Redis
    counter would be a second copy of the log's truth that a crash between the two
    writes could split. A message is judged by the window ending at its own ``ts``, as
    :class:`FrequencyCap` defines it; one arriving late (older ``ts`` than messages
    already sent) does not see those later sends.

    Local providers deliver exactly once per key (their write commits with the record).
    External providers such as :class:`WebhookProvider` are called inside the batch's
    transaction but outside the database, so a crash after the call and before the
    commit repeats the call on redelivery: at least once, with the key as
    ``Idempotency-Key``. While a batch runs it holds the log's writer lock (SQLite) or its
    users' locks (PostgreSQL), webhook calls included; keep webhook timeouts short.

    Examples
    --------
    >>> gw = Gateway.default(TemplateCatalog.from_dict({"hi": "Hello {name}"}),
    ...                      caps=[FrequencyCap("push", 1, "1d")])
    >>> gw.send(Message("k1", "u1", "hi", ("push", "sms"), ts=1.7e9, params={"name": "Ada"}))
    DeliveryResult(key='k1', status='sent', channel='push', ...)
    """

    def __init__(
        self,
        log: DeliveryLog,
        templates: TemplateCatalog,
        *,
        providers: Mapping[str, Provider] | None = None,
        caps: Sequence[FrequencyCap] = (),
        quiet_hours: QuietHours | None = None,
        rate_limits: Mapping[str, float] | None = None,
        default_tz: str = "UTC",
        redis=None,
        namespace: str = "mktlab:msg",
    ):
        if not isinstance(log, DeliveryLog):
            raise ValidationError(f"log: expected a DeliveryLog, got {log!r}")
        if isinstance(templates, Mapping):
            templates = TemplateCatalog.from_dict(templates)
        if not isinstance(templates, TemplateCatalog):
            raise ValidationError(f"templates: expected a TemplateCatalog, got {templates!r}")
        if providers is None:
            providers = {c: LocalProvider(c) for c in CHANNELS if c != "webhook"}
        for ch, p in providers.items():
            if ch not in CHANNELS:
                raise ValidationError(
                    f"providers: unknown channel {ch!r}; expected one of {CHANNELS}"
                )
            if not isinstance(p, Provider):
                raise ValidationError(f"providers[{ch!r}]: expected a Provider, got {p!r}")
            served = getattr(p, "channel", ch)
            if served != ch:
                raise ValidationError(f"providers[{ch!r}]: {p!r} serves channel {served!r}")
        caps = tuple(caps)
        for cap in caps:
            if not isinstance(cap, FrequencyCap):
                raise ValidationError(f"caps: expected FrequencyCap objects, got {cap!r}")
        if quiet_hours is not None and not isinstance(quiet_hours, QuietHours):
            raise ValidationError(f"quiet_hours: expected QuietHours, got {quiet_hours!r}")
        rates = {}
        for ch, rate in (rate_limits or {}).items():
            if ch not in CHANNELS:
                raise ValidationError(
                    f"rate_limits: unknown channel {ch!r}; expected one of {CHANNELS}"
                )
            rates[ch] = check_rate(ch, rate)
        zone(default_tz)
        check_text(namespace, "namespace")
        self.log = log
        self.templates = templates
        self.providers = dict(providers)
        self.caps = caps
        self.quiet_hours = quiet_hours
        self.rate_limits = rates
        self.default_tz = default_tz
        self.redis = redis
        self.namespace = namespace
        # which caps bind each channel, decided once rather than per message
        self._caps_for = {c: tuple(k for k in caps if k.applies_to(c)) for c in CHANNELS}
        self._max_per = max((k.per for k in caps), default=0)
        if redis is not None:
            self._buckets: dict[str, Any] = {
                ch: RedisTokenBucket(redis, f"{namespace}:rate:{ch}", r) for ch, r in rates.items()
            }
        else:
            self._buckets = {ch: TokenBucket(r) for ch, r in rates.items()}
        self._owns_log = False

    @classmethod
    def default(cls, templates, **kw) -> Gateway:
        """A gateway on the default delivery log with local providers for all channels but webhook.

        Parameters
        ----------
        templates : TemplateCatalog, mapping or path / YAML text
        **kw
            ``url`` (the delivery log's SQLAlchemy URL, default
            ``settings().default_delivery_url``), ``providers`` (added to / replacing the
            local ones, e.g. ``{"webhook": WebhookProvider(...)}``) and any other
            :class:`Gateway` keyword.
        """
        if not isinstance(templates, TemplateCatalog | Mapping):
            templates = TemplateCatalog.from_yaml(templates)
        providers: dict[str, Provider] = {c: LocalProvider(c) for c in CHANNELS if c != "webhook"}
        providers.update(kw.pop("providers", None) or {})
        gw = cls(DeliveryLog(kw.pop("url", None)), templates, providers=providers, **kw)
        gw._owns_log = True
        return gw

    def __repr__(self) -> str:
        return f"Gateway({self.log!r}, channels={sorted(self.providers)})"

    def close(self) -> None:
        """Close the providers (and the log when :meth:`default` created it)."""
        for p in self.providers.values():
            p.close()
        if self._owns_log:
            self.log.dispose()

    # -- public entry points -----------------------------------------------------------
    def send(self, msg: Message) -> DeliveryResult:
        """Send one message (its own transaction). See :meth:`send_many`."""
        return self.send_many([msg])[0]

    def send_many(self, msgs: Sequence[Message]) -> list[DeliveryResult]:
        """Send a batch in one transaction; results in input order.

        Every message is validated and rendered before anything is written: an unknown
        template raises :class:`~mktlab.errors.NotFoundError`, a missing parameter
        :class:`~mktlab.errors.ValidationError`, and nothing of the batch is sent. A key
        repeated inside the batch is a duplicate of its first occurrence.

        Raises
        ------
        ServiceUnavailableError
            The delivery log (or the rate limits' Redis) is unreachable; nothing of the
            batch was recorded and no local delivery happened.
        """
        msgs = list(msgs)
        items = []
        for i, m in enumerate(msgs):
            if not isinstance(m, Message):
                raise ValidationError(f"send_many: item {i} is not a Message: {m!r}")
            tpl = self.templates.get(m.template)
            body, title = tpl.render(m.params)
            items.append(_Item(m.key, m.user_id, m.template, m.channels, m.ts, m.ts,
                               m.campaign_id, m.tz, body, title, tpl))  # fmt: skip
        if not items:
            return []
        return self._run(lambda tx: items)

    def flush_due(self, now: float) -> list[DeliveryResult]:
        """Send the deferred messages whose ``not_before`` is ``<= now`` (same keys).

        They are decided as if sent at ``now`` (event clock): caps count at ``now``, and a
        message that lands in quiet hours or a spent rate limit again is deferred again.

        Returns
        -------
        list of DeliveryResult
            One per message taken, oldest ``not_before`` first; ``attempts`` include
            those made before it was deferred.
        """
        now = check_ts(now, "now")
        out: list[DeliveryResult] = []
        while True:
            batch = self._run(lambda tx: self._due_items(tx, now))
            out.extend(batch)
            if len(batch) < _FLUSH_BATCH:
                return out

    # -- the batch ---------------------------------------------------------------------
    def _due_items(self, tx, now: float) -> list[_Item]:
        items = []
        for r in tx.due(now, _FLUSH_BATCH):
            items.append(_Item(
                r.key, r.user_id, r.template, tuple(json.loads(r.channels)), now, r.ts,
                r.campaign_id, r.tz, r.body or "", r.title,
                # the catalog may have changed since; what was rendered is what goes out
                self.templates.get(r.template) if r.template in self.templates else None,
                loads_attempts(r.attempts), True,
            ))  # fmt: skip
        return items

    def _run(self, get_items) -> list[DeliveryResult]:
        for attempt in range(_RETRIES):
            tokens = None
            try:
                with self.log.writer() as tx:
                    items = get_items(tx)
                    if not items:
                        return []
                    tokens = _Tokens(self._buckets, Counter(c for it in items for c in it.channels))
                    results = self._decide_all(tx, items, tokens)
                return results
            except IntegrityError as exc:
                # another process recorded one of these keys between our read and write
                # (PostgreSQL: same key under a different user); re-run: it is a duplicate now
                if attempt == _RETRIES - 1:
                    raise ServiceUnavailableError(
                        f"delivery log {self.log!r}: batch kept conflicting with concurrent writers: {exc}"
                    ) from exc
            finally:
                if tokens is not None:
                    tokens.release()
        raise AssertionError("unreachable")  # pragma: no cover

    def _decide_all(self, tx, items: list[_Item], tokens: _Tokens) -> list[DeliveryResult]:
        users = {it.user_id for it in items}
        tx.lock_users(users)
        stored = tx.existing(it.key for it in items if not it.stored)
        hist: dict[str, list] = {}
        if self.caps:  # from the log, under the writer lock taken above (see the class Notes)
            lo = min(it.ts for it in items) - self._max_per
            hist = tx.history(users, lo, max(it.ts for it in items))
        seen: dict[str, DeliveryResult] = {}
        out = []
        for it in items:
            first = seen.get(it.key)
            if first is None and it.key in stored:
                r = stored[it.key]
                first = DeliveryResult(r.key, r.status, r.channel, r.reason,
                                       loads_attempts(r.attempts), finite_or_none(r.not_before))  # fmt: skip
            if first is not None:
                note = f"duplicate of a {first.status} delivery"
                out.append(replace(first, status="duplicate",
                                   reason=f"{note}: {first.reason}" if first.reason else note))  # fmt: skip
                continue
            res = self._decide(tx, it, hist.setdefault(it.user_id, []), tokens)
            seen[it.key] = res
            out.append(res)
        return out

    def _capped(self, sent: list, channel: str, ts: float) -> FrequencyCap | None:
        for cap in self._caps_for[channel]:
            if cap.max == 0:
                return cap
            lo = ts - cap.per
            n = 0
            for ch, s in sent:
                if lo < s <= ts and cap.applies_to(ch):
                    n += 1
            if n >= cap.max:
                return cap
        return None

    def _decide(self, tx, it: _Item, sent: list, tokens: _Tokens) -> DeliveryResult:
        t = it.ts
        if self.quiet_hours is not None:
            tz = it.tz or self.default_tz
            end = self.quiet_hours.window_end(t, zone(tz))
            if end is not None:
                q = self.quiet_hours
                return self._record(tx, it, "deferred", None, f"quiet hours {q.start}-{q.end} {tz}",
                                    [], end, None)  # fmt: skip
        att: list[tuple[str, str, str | None, str | None]] = []  # channel, outcome, detail, id
        reasons: list[str] = []
        status, channel, provider_id = None, None, None
        limited = failed = False
        for ch in it.channels:
            if it.allowed is not None and not it.allowed.allows(ch):
                why = f"template {it.template!r} does not allow {ch}"
                att.append((ch, "not_allowed", why, None))
            elif (prov := self.providers.get(ch)) is None:
                why = f"no provider for {ch}"
                att.append((ch, "no_provider", why, None))
                failed = True
            elif (cap := self._capped(sent, ch, t)) is not None:
                why = _cap_reason(cap)
                att.append((ch, "capped", why, None))
            elif not tokens.take(ch):
                why = f"rate limit {ch} {self.rate_limits[ch]:g}/s"
                att.append((ch, "rate_limited", why, None))
                limited = True
            else:
                pr = self._call(prov, Delivery(it.key, it.user_id, ch, it.template, it.body,
                                               it.title, it.campaign_id, t, tx))  # fmt: skip
                if pr.ok:
                    att.append((ch, "sent", None, pr.provider_id))
                    status, channel, provider_id = "sent", ch, pr.provider_id
                    sent.append((ch, t))
                    break
                why = f"{ch}: {pr.error}"
                att.append((ch, "failed", pr.error, None))
                failed = True
            reasons.append(why)
        reason = "; ".join(reasons) or None
        if status == "sent":
            return self._record(tx, it, "sent", channel, reason, att, None, provider_id)
        if limited:
            return self._record(tx, it, "deferred", None, reason, att, t + 1.0, None)
        return self._record(
            tx, it, "failed" if failed else "suppressed", None, reason, att, None, None
        )

    @staticmethod
    def _call(prov: Provider, delivery: Delivery) -> ProviderResult:
        try:
            res = prov.send(delivery)
        except Exception as exc:  # a provider bug must not lose the rest of the batch
            return ProviderResult(False, None, f"{prov.name} raised {type(exc).__name__}: {exc}")
        if not isinstance(res, ProviderResult):
            return ProviderResult(
                False, None, f"{prov.name} returned {res!r}, not a ProviderResult"
            )
        return res

    def _record(self, tx, it: _Item, status, channel, reason, att, not_before, provider_id):
        pairs = it.prior + tuple((a[0], a[1]) for a in att)
        base = len(it.prior)
        for i, (ch, outcome, detail, pid) in enumerate(att):
            tx.attempt_rows.append({"key": it.key, "seq": base + i, "channel": ch, "outcome": outcome,
                                    "detail": detail, "provider_id": pid, "ts": it.ts,
                                    "at": tx.now})  # fmt: skip
        deferred = status == "deferred"
        row = {
            "status": status, "channel": channel, "reason": reason,
            "attempts": dumps_attempts(pairs), "not_before": not_before,
            "sent_ts": it.ts if status == "sent" else None, "provider_id": provider_id,
            "title": it.title if deferred else None, "body": it.body if deferred else None,
            "updated_at": tx.now,
        }  # fmt: skip
        if it.stored:
            row["b_key"] = it.key
            tx.updates.append(row)
        else:
            row.update({
                "key": it.key, "user_id": it.user_id, "campaign_id": it.campaign_id,
                "template": it.template, "channels": json.dumps(list(it.channels)), "tz": it.tz,
                "ts": it.msg_ts, "created_at": tx.now,
            })  # fmt: skip
            tx.inserts.append(row)
        return DeliveryResult(it.key, status, channel, reason, pairs, not_before)
