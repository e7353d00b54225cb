"""The event bus interface: value types, the abstract bus and consumer, shared helpers.

The backends (:mod:`~mktlab.live.bus_redis`, :mod:`~mktlab.live.bus_rabbitmq`) build on
this module; :mod:`mktlab.live.bus` re-exports it and adds :func:`~mktlab.live.bus.open_bus`.

The event bus of the live loop: one interface, two backends.

>>> from mktlab.live.bus import open_bus
>>> bus = open_bus()                       # MKTLAB_BUS: Redis Streams (default) or RabbitMQ
>>> bus.publish([{"user_id": "u1", "event": "view", "ts": 1.8e9}])
PublishReport(published=1, dead_lettered=0)
>>> c = bus.consumer("live", "w1")
>>> batch = c.poll()                       # list[Delivery]; one user's events in publish order
>>> c.ack(batch)                           # after handling: at-least-once

Guarantees (both backends)
--------------------------
* A user's events land in partition :func:`~mktlab.live.events.partition_of` and every
  partition is read by at most one consumer of a group at a time, so one user's events are
  handled in publish order by one consumer.
* At-least-once: an event is delivered until a consumer acks it. A consumer that dies
  (or stops polling for ``lease_ms``) loses its partitions to the others, and its unacked
  events are delivered again (``Delivery.redelivered``) before newer ones. Handlers should
  be idempotent by ``event_id``.
* A payload that does not parse is never returned: it goes to the dead-letter store with its
  reason and is acked, so one poison message cannot stall or kill a consumer.
* Broker outages: every call retries with exponential backoff for ``retry_s`` seconds,
  then raises :class:`~mktlab.errors.ServiceUnavailableError` naming the URL. A publish
  retried after an outage may store part of its batch twice (at-least-once, never lost).

Backends: :class:`~mktlab.live.bus_redis.RedisBus` and
:class:`~mktlab.live.bus_rabbitmq.RabbitMQBus`.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from mktlab.errors import ServiceUnavailableError, ValidationError
from mktlab.live.events import BadEvent, Event, _parse

__all__ = [
    "DEFAULT_GROUP",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "EventBus",
    "PublishReport",
]

DEFAULT_GROUP = "live"
NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PublishReport:
    """What one :meth:`EventBus.publish` call did."""

    published: int
    dead_lettered: int

    def __post_init__(self) -> None:
        if self.published < 0 or self.dead_lettered < 0:
            raise ValidationError(f"PublishReport: counts must be >= 0, got {self}")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A payload refused by the bus or a worker: ``reason`` (short), the raw bytes, when."""

    reason: str
    payload: bytes
    ts: float
    detail: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.reason, str) or not self.reason:
            raise ValidationError(f"DeadLetter.reason={self.reason!r}: expected a non-empty string")
        if not isinstance(self.payload, bytes):
            raise ValidationError(
                f"DeadLetter.payload: expected bytes, got {type(self.payload).__name__}"
            )


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event handed to a consumer; pass it back to :meth:`Consumer.ack` once handled."""

    event: Event
    partition: int
    msg_id: str
    redelivered: bool


def check_name(value: Any, what: str) -> str:
    """Return ``value`` if it is a valid group/consumer name (it becomes part of key names)."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ValidationError(f"{what}={value!r}: expected 1-64 characters of letters, digits, _.-")
    return value


def check_poll_args(max_events: Any, block_ms: Any, lease_ms: int) -> None:
    """Validate :meth:`Consumer.poll` arguments (shared by both backends)."""
    if isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 1:
        raise ValidationError(f"max_events={max_events!r}: expected an integer >= 1")
    if isinstance(block_ms, bool) or not isinstance(block_ms, int) or block_ms < 0:
        raise ValidationError(f"block_ms={block_ms!r}: expected an integer >= 0")
    if block_ms * 2 > lease_ms:
        # the lease is renewed once per poll: a longer wait would let it lapse mid-poll
        raise ValidationError(f"block_ms={block_ms}: must be at most half of lease_ms={lease_ms}")


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for error messages and logs)."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)


def with_retry(
    fn: Callable[[], T],
    *,
    errors: tuple[type[BaseException], ...],
    url: str,
    what: str,
    retry_s: float,
    on_error: Callable[[BaseException], None] | None = None,
) -> T:
    """Call ``fn`` until it succeeds, backing off on ``errors`` for at most ``retry_s`` seconds.

    Parameters
    ----------
    fn : callable
        The operation; it must be safe to repeat (at-least-once).
    errors : tuple of exception types
        Transient failures (connection lost or refused, timeouts).
    url : str
        Broker URL for the final error (password redacted).
    what : str
        The operation, for the message, e.g. ``"publish"``.
    retry_s : float
        Total time budget; 0 tries once.
    on_error : callable, optional
        Called with each failure before sleeping (to drop a broken connection).

    Raises
    ------
    ServiceUnavailableError
        The budget ran out; names the URL and the last error.
    """
    deadline = time.monotonic() + retry_s
    delay = 0.05
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except errors as exc:
            if on_error is not None:
                on_error(exc)
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServiceUnavailableError(
                    f"event bus at {redact(url)} is unreachable: {what} failed "
                    f"{attempt} time(s) over {retry_s:g} s ({type(exc).__name__}: {exc})"
                ) from exc
            time.sleep(min(delay, left))
            delay = min(delay * 2, 2.0)


def split_batch(
    events: Iterable[Event | Mapping | bytes | str],
    *,
    invalid: str,
    known_events: Collection[str] | None,
    max_bytes: int,
) -> tuple[list[Event], list[bytes], list[tuple[bytes, str, str]]]:
    """Validate a publish batch: (good events, their payloads, dead letters).

    With ``invalid="raise"`` the first bad event raises :class:`BadEvent` (with its index)
    before anything is published; with ``"dead_letter"`` bad ones become
    ``(payload, reason, detail)`` triples.
    """
    if invalid not in ("raise", "dead_letter"):
        raise ValidationError(f"invalid={invalid!r}: expected 'raise' or 'dead_letter'")
    if isinstance(events, bytes | str | Mapping | Event):
        raise ValidationError("events: expected an iterable of events, got a single event")
    good: list[Event] = []
    payloads: list[bytes] = []
    bad: list[tuple[bytes, str, str]] = []
    for i, raw in enumerate(events):
        try:
            ev = _parse(raw, known_events, max_bytes, False)
            payload = ev.to_json()
            if len(payload) > max_bytes:  # consumers refuse what exceeds it: never store it
                raise BadEvent(
                    f"event of {len(payload)} bytes exceeds max_bytes={max_bytes}",
                    reason="oversized",
                )
        except BadEvent as exc:
            if invalid == "raise":
                raise BadEvent(
                    f"event #{i}: {exc}", reason=exc.reason, field=exc.field, index=i
                ) from None
            bad.append((raw_bytes(raw), exc.reason, str(exc)))
            continue
        good.append(ev)
        payloads.append(payload)
    return good, payloads, bad


def raw_bytes(raw: Any) -> bytes:
    """Best-effort bytes of a refused input, kept in the dead-letter store for inspection."""
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, bytearray | memoryview):
        return bytes(raw)
    if isinstance(raw, str):
        return raw.encode("utf-8", "replace")
    if isinstance(raw, Event):
        try:
            return raw.to_json()
        except BadEvent:
            return repr(raw).encode("utf-8", "replace")
    try:
        import json

        return json.dumps(raw, default=repr, ensure_ascii=False).encode("utf-8", "replace")
    except (TypeError, ValueError):
        return repr(raw).encode("utf-8", "replace")


class Consumer(ABC):
    """A member of a consumer group: polls the partitions it holds, acks what it handled."""

    @abstractmethod
    def poll(self, max_events: int = 1000, block_ms: int = 100) -> list[Delivery]:
        """Up to ``max_events`` deliveries, waiting up to ``block_ms`` when there are none.

        Events of one partition come in publish order; a payload that fails
        :func:`~mktlab.live.events.parse_event` is dead-lettered and acked, never returned.
        Each poll renews this consumer's hold on its partitions.
        """

    @abstractmethod
    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Mark ``deliveries`` handled (they will not be delivered again)."""

    @abstractmethod
    def partitions_held(self) -> set[int]:
        """Partitions this consumer currently reads."""

    @abstractmethod
    def close(self) -> None:
        """Leave the group; unacked deliveries go to the next holder of their partitions."""

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EventBus(ABC):
    """A partitioned, at-least-once event bus (see the module docstring)."""

    partitions: int
    namespace: str

    @abstractmethod
    def publish(
        self, events: Iterable[Event | Mapping | bytes], *, invalid: str = "raise"
    ) -> PublishReport:
        """Publish a batch (validated first; one broker round trip per chunk).

        Parameters
        ----------
        events : iterable of Event, Mapping, bytes or str
            Raw events (see :func:`~mktlab.live.events.parse_event`).
        invalid : {"raise", "dead_letter"}
            ``"raise"``: the first bad event raises :class:`~mktlab.live.events.BadEvent`
            naming it and nothing of the batch is published. ``"dead_letter"``: good events
            are published, each bad one goes to the dead-letter store with its reason.

        Returns
        -------
        PublishReport
        """

    @abstractmethod
    def consumer(self, group: str, name: str, *, lease_ms: int = 10_000) -> Consumer:
        """Join consumer group ``group`` as ``name``; see :class:`Consumer`."""

    @abstractmethod
    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters, oldest first (they stay in the store)."""

    @abstractmethod
    def dead_letter(self, payload: bytes, reason: str) -> None:
        """Store a poison message (workers call this for events they cannot handle)."""

    @abstractmethod
    def stats(self, group: str) -> dict:
        """``{"group", "partitions": {i: {"length", "pending", "lag"}}, "dead_letters"}``."""

    @abstractmethod
    def close(self) -> None:
        """Close the bus and every consumer it made."""

    def trim(self) -> int:
        """Delete events every group has acked; return how many (0 where the broker does it,
        as RabbitMQ does on ack). Redis Streams keep acked entries until trimmed."""
        return 0

    def __enter__(self) -> EventBus:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_dead_letter_args(payload: Any, reason: Any) -> bytes:
    """Validate :meth:`EventBus.dead_letter` arguments; return the payload as bytes."""
    if isinstance(payload, bytearray | memoryview):
        payload = bytes(payload)
    if not isinstance(payload, bytes):
        raise ValidationError(f"payload: expected bytes, got {type(payload).__name__}")
    if not isinstance(reason, str) or not reason or len(reason) > 64:
        raise ValidationError(f"reason={reason!r}: expected a non-empty string of <= 64 characters")
    return payload
