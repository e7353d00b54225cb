"""AMQP plumbing of the RabbitMQ event bus: error mapping and a batch-confirming publisher.

pika's ``BlockingChannel`` waits for each publisher confirm on its own (one round trip per
message). :class:`Publisher` publishes a whole batch through the asynchronous channel under
it and then processes the connection until the broker confirmed (or refused) every message:
one wait per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pika
import pika.exceptions as px
from pika.spec import Basic, BasicProperties

from mktlab.errors import ConfigError

__all__ = ["PERSISTENT", "PIKA_ERRORS", "Lost", "Publisher", "guard", "is_open"]

PERSISTENT = BasicProperties(delivery_mode=2, content_type="application/json")


class Lost(Exception):
    """The connection or channel is gone (or a confirm never came): reconnect and repeat."""


def _classify(exc: BaseException) -> BaseException:
    """Map a pika error to :class:`Lost` (transient) or :class:`ConfigError` (not)."""
    if isinstance(exc, px.ProbableAuthenticationError | px.AuthenticationError):
        return ConfigError(f"RabbitMQ refused the credentials: {exc}")
    if isinstance(exc, px.ProbableAccessDeniedError):
        return ConfigError(f"RabbitMQ denied access to the virtual host: {exc}")
    if isinstance(exc, px.ChannelClosedByBroker) and exc.reply_code in (403, 404, 406):
        return ConfigError(f"RabbitMQ refused the bus topology: {exc.reply_text}")
    if isinstance(exc, px.AMQPConnectionError | px.AMQPChannelError | OSError):
        return Lost(f"{type(exc).__name__}: {exc}")
    return exc  # a protocol or programming error: repeating it would not help


PIKA_ERRORS = (px.AMQPError, OSError)


def guard(fn):
    """Run ``fn`` turning pika failures into :class:`Lost` / :class:`ConfigError`."""
    try:
        return fn()
    except PIKA_ERRORS as exc:
        mapped = _classify(exc)
        if mapped is exc:
            raise
        raise mapped from exc


def is_open(conn, ch) -> bool:
    """True when both the connection and the channel are usable."""
    return conn is not None and conn.is_open and ch is not None and ch.is_open


class Publisher:
    """A connection and a channel in confirm mode with one confirm wait per batch."""

    def __init__(self, params: pika.URLParameters, declare: Callable, confirm_timeout: float):
        self.params = params
        self.declare = declare
        self.confirm_timeout = confirm_timeout
        self.conn: pika.BlockingConnection | None = None
        self.ch = None

    def open(self) -> None:
        if is_open(self.conn, self.ch):
            return
        self.drop()
        conn = pika.BlockingConnection(self.params)
        try:
            ch = conn.channel()
            self.declare(ch)
            impl = ch._impl  # the asynchronous channel under the blocking one
            self._tag = 0
            self._low = 1  # lowest tag a multiple confirm may still cover
            self._outstanding: set[int] = set()
            self._failed: list[str] = []
            ready: list[bool] = []
            impl.add_on_return_callback(self._on_return)
            impl.confirm_delivery(
                ack_nack_callback=self._on_confirm, callback=lambda _f: ready.append(True)
            )
            self._wait(conn, lambda: bool(ready), "confirm.select")
        except BaseException:
            if conn.is_open:
                conn.close()
            raise
        self.conn, self.ch = conn, ch

    def _on_confirm(self, frame) -> None:
        m = frame.method
        before = len(self._outstanding)
        if m.multiple:  # every tag up to this one; each tag is visited once overall
            for t in range(self._low, m.delivery_tag + 1):
                self._outstanding.discard(t)
            self._low = max(self._low, m.delivery_tag + 1)
        else:
            self._outstanding.discard(m.delivery_tag)
        if isinstance(m, Basic.Nack):
            self._failed.append(f"broker nacked {before - len(self._outstanding)} message(s)")

    def _on_return(self, _ch, method, _props, _body) -> None:
        self._failed.append(f"unroutable: exchange={method.exchange!r} key={method.routing_key!r}")

    def _wait(self, conn, done, what: str) -> None:
        deadline = time.monotonic() + self.confirm_timeout
        while not done():
            if time.monotonic() > deadline:
                raise Lost(f"no {what} within {self.confirm_timeout:g} s")
            conn.process_data_events(time_limit=0.05)

    def publish(self, items: Sequence[tuple[str, str, bytes, BasicProperties]]) -> None:
        """Publish ``(exchange, routing_key, body, properties)`` items; return once confirmed."""
        self.open()
        assert self.conn is not None  # open() succeeded or raised
        assert self.ch is not None
        impl = self.ch._impl
        self._failed.clear()
        for exchange, key, body, props in items:
            impl.basic_publish(exchange, key, body, props, mandatory=True)
            self._tag += 1
            self._outstanding.add(self._tag)
        self._wait(self.conn, lambda: not self._outstanding, "publisher confirm")
        if self._failed:
            problems = "; ".join(sorted(set(self._failed)))
            if any(p.startswith("unroutable") for p in self._failed):
                raise ConfigError(
                    f"RabbitMQ could not route the batch ({problems}): is a consumer group "
                    "declared? (open the bus with groups=...)"
                )
            raise Lost(problems)

    def drop(self) -> None:
        conn, self.conn, self.ch = self.conn, None, None
        if conn is not None:
            try:
                if conn.is_open:
                    conn.close()
            except PIKA_ERRORS:
                pass
