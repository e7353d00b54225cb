"""The live loop: app events on a partitioned bus, consumed by workers in per-user order.

* :mod:`~mktlab.live.events` — the :class:`Event` value object, :func:`parse_event` (the one
  parser of raw input, refusing with a machine reason) and :func:`partition_of`.
* :mod:`~mktlab.live.bus` — :class:`EventBus` with two backends behind one interface: Redis
  Streams (default, the issuer's Redis) and RabbitMQ; :func:`open_bus` picks one from
  :func:`mktlab.config.settings`.
"""

from mktlab.live.bus import (
    Consumer,
    DeadLetter,
    Delivery,
    EventBus,
    PublishReport,
    open_bus,
)
from mktlab.live.events import REASONS, BadEvent, Event, parse_event, partition_of

__all__ = [
    "REASONS",
    "BadEvent",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "Event",
    "EventBus",
    "PublishReport",
    "open_bus",
    "parse_event",
    "partition_of",
]
