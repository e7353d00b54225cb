"""The RabbitMQ backend of the event bus (pika, ``BlockingConnection``).

Topology (``ns`` = namespace)
-----------------------------
* exchange ``{ns}`` (direct, durable); an event of partition ``i`` is published to it with
  routing key ``p{i}``, persistent (``delivery_mode=2``), ``mandatory``;
* per consumer group and partition a durable queue ``{ns}.{group}.p{i}`` bound with key
  ``p{i}``, declared with ``x-single-active-consumer: true``: every consumer of the group
  subscribes to every queue and the broker lets exactly one of them receive from each queue
  at a time; when it disconnects (a dead process closes its socket; a hung one misses
  heartbeats for ``lease_ms``) its unacked messages return to the queue, in order, and go to
  the next consumer with ``redelivered=True``;
* ``{ns}.dlq``: durable queue of dead letters (headers ``reason``, ``detail``, ``ts``);
* ``{ns}.meta``: one message recording the partition count, checked on connect.

A group's queues keep only what was published after they were declared: declare the
groups before publishing (``groups=`` here or :func:`mktlab.live.bus.open_bus`).

Publishing uses publisher confirms with one wait per batch (see :mod:`mktlab.live._amqp`).

Single-active-consumer does not spread partitions over consumers: the first subscriber of
a queue receives from it until it leaves, so a second consumer is a hot standby.
``partitions_held`` reports the partitions this consumer received from since it connected
(AMQP 0-9-1 does not announce which consumer is active). ``stats`` reports ready messages
only (unacked counts need the management plugin).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pika
import pika.exceptions as px
from pika.spec import BasicProperties

from mktlab.errors import ConfigError, ValidationError
from mktlab.live._amqp import PERSISTENT, PIKA_ERRORS, Lost, Publisher, guard, is_open
from mktlab.live.bus_base import (
    DEFAULT_GROUP,
    Consumer,
    DeadLetter,
    Delivery,
    EventBus,
    PublishReport,
    check_dead_letter_args,
    check_name,
    check_poll_args,
    redact,
    split_batch,
    with_retry,
)
from mktlab.live.events import BadEvent, Event, parse_event, partition_of

__all__ = ["RabbitMQBus", "RabbitMQConsumer"]


class RabbitMQBus(EventBus):
    """Event bus on RabbitMQ (see the module docstring for the topology).

    Parameters
    ----------
    url : str
        AMQP URL, e.g. ``amqp://guest:guest@127.0.0.1:5672/%2F``.
    partitions : int, default 8
    namespace : str, default "mktlab:live"
    groups : sequence of str, default ("live",)
        Consumer groups whose queues are declared now (they keep events from now on).
    retry_s : float, default 30
        How long calls retry a lost broker before :class:`ServiceUnavailableError`.
    max_bytes : int, default 8192
    known_events : collection of str, optional
    confirm_timeout : float, default 30
        Longest wait for the confirms of one batch before reconnecting and publishing again.

    A bus object may be shared by threads (calls are serialised); a consumer belongs to
    the thread that polls it.
    """

    def __init__(
        self,
        url: str,
        *,
        partitions: int = 8,
        namespace: str = "mktlab:live",
        groups: Sequence[str] = (DEFAULT_GROUP,),
        retry_s: float = 30.0,
        max_bytes: int = 8192,
        known_events: Collection[str] | None = None,
        confirm_timeout: float = 30.0,
    ):
        if (
            isinstance(partitions, bool)
            or not isinstance(partitions, int)
            or not 1 <= partitions <= 1024
        ):
            raise ValidationError(f"partitions={partitions!r}: expected an integer in 1..1024")
        if not isinstance(namespace, str) or not namespace or len(namespace) > 128:
            raise ValidationError(f"namespace={namespace!r}: expected 1-128 characters")
        if not isinstance(url, str) or not url.startswith(("amqp://", "amqps://")):
            raise ConfigError(f"amqp url {url!r}: expected amqp:// or amqps://")
        self.url = url
        self.partitions = partitions
        self.namespace = namespace
        self.retry_s = float(retry_s)
        self.max_bytes = int(max_bytes)
        self.known_events = frozenset(known_events) if known_events is not None else None
        self.exchange = namespace
        self.dlq = f"{namespace}.dlq"
        self.meta = f"{namespace}.meta"
        self._groups: list[str] = [check_name(g, "group") for g in groups]
        self._lock = threading.RLock()
        self._consumers: list[RabbitMQConsumer] = []
        self._pub = Publisher(self.params(), self._declare, confirm_timeout)
        self._retry(lambda: self._pub.open(), "connect")

    # --- plumbing ---------------------------------------------------------------------
    def params(self, heartbeat: int | None = None) -> pika.URLParameters:
        """Connection parameters for one attempt (our retry loop does the backing off)."""
        try:
            p = pika.URLParameters(self.url)
        except Exception as exc:  # pika raises several kinds for a malformed URL
            raise ConfigError(f"amqp url {redact(self.url)!r}: {exc}") from None
        p.connection_attempts = 1
        p.retry_delay = 0
        p.socket_timeout = 5
        p.blocked_connection_timeout = 30
        if heartbeat is not None:
            p.heartbeat = heartbeat
        return p

    def queue(self, group: str, partition: int) -> str:
        """Queue name of ``group``'s partition ``partition``."""
        return f"{self.namespace}.{group}.p{partition}"

    def _declare(self, ch, groups: Iterable[str] | None = None) -> None:
        ch.exchange_declare(self.exchange, exchange_type="direct", durable=True)
        ch.queue_declare(self.dlq, durable=True)
        self._check_meta(ch)
        for g in self._groups if groups is None else groups:
            for i in range(self.partitions):
                q = self.queue(g, i)
                ch.queue_declare(q, durable=True, arguments={"x-single-active-consumer": True})
                ch.queue_bind(q, self.exchange, routing_key=f"p{i}")

    def _check_meta(self, ch) -> None:
        ch.queue_declare(self.meta, durable=True)
        method, _props, body = ch.basic_get(self.meta, auto_ack=False)
        if method is None:
            ch.basic_publish(
                "", self.meta, json.dumps({"partitions": self.partitions}).encode(), PERSISTENT
            )
            return
        ch.basic_nack(method.delivery_tag, requeue=True)
        stored = int(json.loads(body).get("partitions", self.partitions))
        if stored != self.partitions:
            raise ConfigError(
                f"namespace {self.namespace!r} has {stored} partitions, got partitions="
                f"{self.partitions}; every process of a namespace needs the same number"
            )

    def _retry(self, fn, what: str):
        def attempt():
            with self._lock:
                return guard(fn)

        return with_retry(
            attempt,
            errors=(Lost,),
            url=self.url,
            what=what,
            retry_s=self.retry_s,
            on_error=lambda _e: self._pub.drop(),
        )

    def ensure_group(self, group: str) -> None:
        """Declare ``group``'s queues (they keep events published from now on)."""
        check_name(group, "group")
        with self._lock:
            if group not in self._groups:
                self._groups.append(group)

        def run() -> None:
            self._pub.open()
            self._declare(self._pub.ch, [group])

        self._retry(run, "declare")

    # --- EventBus ---------------------------------------------------------------------
    def publish(
        self, events: Iterable[Event | Mapping | bytes], *, invalid: str = "raise"
    ) -> PublishReport:
        """Publish a batch with one confirm wait; see :meth:`EventBus.publish`."""
        good, payloads, bad = split_batch(
            events, invalid=invalid, known_events=self.known_events, max_bytes=self.max_bytes
        )
        if len(good) > 32:
            parts = np.asarray(partition_of([e.user_id for e in good], self.partitions)).tolist()
        else:  # a few events: the scalar hash, no compiled kernel to load
            parts = [partition_of(e.user_id, self.partitions) for e in good]
        items = [(self.exchange, f"p{p}", body, PERSISTENT) for p, body in zip(parts, payloads)]
        items += [self._dlq_item(payload, reason, detail) for payload, reason, detail in bad]
        if items:
            # after a reconnect the whole batch goes again: unconfirmed means maybe lost
            self._retry(lambda: self._pub.publish(items), "publish")
        return PublishReport(len(good), len(bad))

    def _dlq_item(self, payload: bytes, reason: str, detail: str):
        props = BasicProperties(
            delivery_mode=2,
            headers={"reason": reason, "detail": detail[:1000], "ts": repr(time.time())},
        )
        return ("", self.dlq, payload, props)

    def consumer(
        self, group: str, name: str, *, lease_ms: int = 10_000, prefetch: int = 1000
    ) -> RabbitMQConsumer:
        """Join ``group`` as ``name`` (see :class:`RabbitMQConsumer`)."""
        self.ensure_group(group)
        c = RabbitMQConsumer(self, group, name, lease_ms=lease_ms, prefetch=prefetch)
        self._consumers.append(c)
        return c

    def dead_letter(self, payload: bytes, reason: str) -> None:
        """Store a poison message in ``{ns}.dlq``."""
        payload = check_dead_letter_args(payload, reason)
        item = self._dlq_item(payload, reason, "")
        self._retry(lambda: self._pub.publish([item]), "dead_letter")

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters, oldest first (read, then returned to the queue)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValidationError(f"limit={limit!r}: expected an integer >= 1")

        def run():
            self._pub.open()
            ch = self._pub.conn.channel()
            out = []
            try:
                for _ in range(limit):
                    method, props, body = ch.basic_get(self.dlq, auto_ack=False)
                    if method is None:
                        break
                    h = props.headers or {}
                    out.append(
                        DeadLetter(
                            reason=_text(h.get("reason", "?")),
                            payload=bytes(body),
                            ts=float(_text(h.get("ts", "0"))),
                            detail=_text(h.get("detail", "")),
                        )
                    )
            finally:
                ch.close()  # unacked: every message goes back to the queue, in order
            return out

        return self._retry(run, "dead_letters")

    def stats(self, group: str) -> dict:
        """Per partition ``length`` (ready messages), ``lag`` (= length), ``consumers``;
        ``pending`` is None (unacked counts need the management plugin); ``dead_letters``."""
        check_name(group, "group")

        def count(q: str) -> tuple[int, int] | None:
            assert self._pub.conn is not None  # run() opened it
            ch = self._pub.conn.channel()
            try:
                m = ch.queue_declare(q, passive=True).method
                return m.message_count, m.consumer_count
            except px.ChannelClosedByBroker as exc:
                if exc.reply_code == 404:
                    return None
                raise
            finally:
                if ch.is_open:
                    ch.close()

        def run():
            self._pub.open()
            parts = {}
            for i in range(self.partitions):
                got = count(self.queue(group, i))
                n, consumers = got or (0, 0)
                parts[i] = {"length": n, "pending": None, "lag": n, "consumers": consumers}
            dlq = count(self.dlq)
            return {
                "group": group,
                "partitions": parts,
                "dead_letters": dlq[0] if dlq else 0,
            }

        return self._retry(run, "stats")

    def destroy(self) -> None:
        """Delete the exchange and every queue of this namespace's known groups (tests, demos)."""

        def run():
            self._pub.open()
            ch = self._pub.ch
            for g in self._groups:
                for i in range(self.partitions):
                    ch.queue_delete(self.queue(g, i))
            ch.queue_delete(self.dlq)
            ch.queue_delete(self.meta)
            ch.exchange_delete(self.exchange)

        self._retry(run, "destroy")

    def close(self) -> None:
        """Close every consumer made by this bus and the publishing connection."""
        for c in self._consumers:
            c.close()
        self._consumers.clear()
        with self._lock:
            self._pub.drop()


@contextlib.contextmanager
def _quiet_pika():
    log = logging.getLogger("pika")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


class RabbitMQConsumer(Consumer):
    """A consumer of a :class:`RabbitMQBus` group: subscribed to every partition queue.

    Parameters
    ----------
    bus : RabbitMQBus
    group, name : str
    lease_ms : int, default 10000
        Sets the AMQP heartbeat (``lease_ms / 2`` seconds, at least 1): a consumer that stops
        polling for about ``lease_ms`` is disconnected and its partitions move on.
    prefetch : int, default 1000
        Unacked messages the broker may send ahead (per channel).
    """

    def __init__(
        self,
        bus: RabbitMQBus,
        group: str,
        name: str,
        *,
        lease_ms: int = 10_000,
        prefetch: int = 1000,
    ):
        check_name(group, "group")
        check_name(name, "name")
        if isinstance(lease_ms, bool) or not isinstance(lease_ms, int) or lease_ms < 100:
            raise ValidationError(f"lease_ms={lease_ms!r}: expected an integer >= 100")
        if (
            isinstance(prefetch, bool)
            or not isinstance(prefetch, int)
            or not 1 <= prefetch <= 65535
        ):
            raise ValidationError(f"prefetch={prefetch!r}: expected an integer in 1..65535")
        self.bus = bus
        self.group = group
        self.name = name
        self.lease_ms = lease_ms
        self.prefetch = prefetch
        self._heartbeat = max(1, math.ceil(lease_ms / 2000))
        self._conn: pika.BlockingConnection | None = None
        self._ch = None
        self._epoch = 0
        self._buf: deque = deque()
        self._unacked: dict[int, int] = {}  # delivery tag -> partition, in arrival order
        self._tag_part: dict[str, int] = {}
        self._active: set[int] = set()
        self._closed = False
        self._dlq_pub = Publisher(bus.params(), lambda ch: None, 30.0)
        self._call(lambda: None, "connect")

    # --- connection -------------------------------------------------------------------
    def _open(self) -> None:
        if is_open(self._conn, self._ch):
            return
        self._drop()
        conn = pika.BlockingConnection(self.bus.params(self._heartbeat))
        try:
            ch = conn.channel()
            self.bus._declare(ch, [self.group])
            ch.basic_qos(prefetch_count=self.prefetch, global_qos=True)
            self._epoch += 1
            for i in range(self.bus.partitions):
                tag = ch.basic_consume(
                    self.bus.queue(self.group, i),
                    on_message_callback=self._on_message,
                    auto_ack=False,
                    consumer_tag=f"{self.name}.{self._epoch}.p{i}",
                )
                self._tag_part[tag] = i
        except BaseException:
            if conn.is_open:
                conn.close()
            raise
        self._conn, self._ch = conn, ch

    def _drop(self, _exc: BaseException | None = None) -> None:
        """Leave without a goodbye; the broker requeues everything unacked, in order.

        A polite close cancels each subscription first, and single-active-consumer then
        activates the standby at once and hands it *newer* messages while ours are still
        unacked here; ours would come back after them, out of order. Dropping the socket
        makes the broker remove the consumer and requeue its messages in one step.
        """
        conn, self._conn, self._ch = self._conn, None, None
        self._buf.clear()
        self._unacked.clear()
        self._tag_part.clear()
        self._active.clear()
        if conn is None or not conn.is_open:
            return
        transport = getattr(getattr(conn, "_impl", None), "_transport", None)
        sock = getattr(transport, "_sock", None)
        try:
            if isinstance(sock, socket.socket):
                sock.shutdown(socket.SHUT_RDWR)
                with _quiet_pika():  # pika logs a lost stream as an error: this one is ours
                    conn.process_data_events(time_limit=0)
            else:  # pragma: no cover - another pika layout: close politely
                conn.close()
        except PIKA_ERRORS:
            pass

    def _on_message(self, _ch, method, _props, body) -> None:
        part = self._tag_part.get(method.consumer_tag)
        if part is None:  # pragma: no cover - a consumer tag of a previous connection
            return
        self._buf.append((part, method.delivery_tag, bool(method.redelivered), body))
        self._unacked[method.delivery_tag] = part
        self._active.add(part)

    def _call(self, fn, what: str):
        def attempt():
            return guard(lambda: (self._open(), fn())[1])

        return with_retry(
            attempt,
            errors=(Lost,),
            url=self.bus.url,
            what=what,
            retry_s=self.bus.retry_s,
            on_error=self._drop,
        )

    # --- Consumer ---------------------------------------------------------------------
    def poll(self, max_events: int = 1000, block_ms: int = 100) -> list[Delivery]:
        """See :meth:`Consumer.poll`."""
        if self._closed:
            raise ValidationError(f"consumer {self.name!r} is closed")
        check_poll_args(max_events, block_ms, self.lease_ms)
        deadline = time.monotonic() + block_ms / 1000
        while True:

            def pump():
                if len(self._buf) < max_events:
                    self._conn.process_data_events(time_limit=0)
                left = deadline - time.monotonic()
                if not self._buf and left > 0:
                    self._conn.process_data_events(time_limit=left)
                    self._conn.process_data_events(time_limit=0)

            self._call(pump, "poll")
            deliveries = self._take(max_events)
            if deliveries or time.monotonic() >= deadline:
                return deliveries

    def _take(self, max_events: int) -> list[Delivery]:
        out: list[Delivery] = []
        dead = []
        known, max_bytes = self.bus.known_events, self.bus.max_bytes
        epoch = self._epoch
        while self._buf and len(out) < max_events:
            part, tag, redelivered, body = self._buf.popleft()
            try:
                ev = parse_event(body, known_events=known, max_bytes=max_bytes)
            except BadEvent as exc:
                dead.append((tag, body, exc))
                continue
            out.append(Delivery(ev, part, f"{epoch}:{tag}", redelivered))
        if dead:
            self._bury(dead)
        return out

    def _bury(self, dead: list) -> None:
        """Dead-letter unparseable messages (confirmed), then ack them."""
        items = [self.bus._dlq_item(bytes(body), exc.reason, str(exc)) for _, body, exc in dead]
        with_retry(
            lambda: guard(lambda: self._dlq_pub.publish(items)),
            errors=(Lost,),
            url=self.bus.url,
            what="dead-letter",
            retry_s=self.bus.retry_s,
            on_error=lambda _e: self._dlq_pub.drop(),
        )
        self._ack_tags(self._epoch, [tag for tag, _, _ in dead])

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Ack ``deliveries``. Those of an earlier connection are skipped: the broker has
        already put them back and will deliver them again."""
        tags = []
        for d in deliveries:
            if not isinstance(d, Delivery):
                raise ValidationError(f"ack: expected Delivery objects, got {type(d).__name__}")
            epoch, _, tag = d.msg_id.partition(":")
            if epoch == str(self._epoch):
                tags.append(int(tag))
        if tags:
            self._ack_tags(self._epoch, tags)

    def _ack_tags(self, epoch: int, tags: list[int]) -> None:
        if epoch != self._epoch or self._ch is None:
            return
        tags = sorted(t for t in set(tags) if t in self._unacked)
        if not tags:
            return
        top, want = tags[-1], set(tags)
        # one multiple-ack when the acked tags are exactly the oldest unacked ones
        prefix = []
        for t in self._unacked:
            if t > top or t not in want:
                break
            prefix.append(t)
        try:
            if len(prefix) == len(tags):
                self._ch.basic_ack(top, multiple=True)
            else:
                for t in tags:
                    self._ch.basic_ack(t)
        except PIKA_ERRORS:
            # connection gone: the broker requeued these; they come back redelivered
            self._drop()
            return
        for t in tags:
            self._unacked.pop(t, None)

    def partitions_held(self) -> set[int]:
        """Partitions this consumer received from on its current connection."""
        return set(self._active)

    def close(self) -> None:
        """Disconnect; the broker hands the partitions and unacked messages to the next consumer."""
        if self._closed:
            return
        self._closed = True
        self._settle()
        self._drop()
        self._dlq_pub.drop()

    def _settle(self) -> None:
        """Make sure the broker has processed our acks before the socket goes.

        ``_drop`` resets the connection, and a TCP reset lets the broker's kernel discard
        frames it has received but not yet read: acks sent just before would be lost and
        their messages redelivered. The broker handles a channel's frames in order, so one
        synchronous call on the channel (re-stating the prefetch) is a barrier for them.
        """
        if self._ch is None or not is_open(self._conn, self._ch):
            return
        # connection gone: the broker requeues, and the acks' messages come back
        with contextlib.suppress(*PIKA_ERRORS):
            self._ch.basic_qos(prefetch_count=self.prefetch, global_qos=True)
