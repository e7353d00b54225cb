"""The live loop: events -> rules and journeys -> coupons and messages, logged for the sandbox.

* :mod:`~mktlab.live.events` — the :class:`Event` value object, :func:`parse_event` (the one
  parser of raw input, refusing with a machine reason) and :func:`partition_of`.
* :mod:`~mktlab.live.bus` — :class:`EventBus` with two backends behind one interface: Redis
  Streams (default, the issuer's Redis) and RabbitMQ; :func:`open_bus` picks one from
  :func:`mktlab.config.settings`. :mod:`~mktlab.live.producer` publishes frames and files.
* :mod:`~mktlab.live.journey` — journeys as data and their validation;
  :mod:`~mktlab.live.journey_runtime` the pure step function; :mod:`~mktlab.live.journey_sim`
  the in-memory simulation; :mod:`~mktlab.live.diagram` the pictures.
* :mod:`~mktlab.live.engine` — :class:`LiveEngine`: strategies (:mod:`mktlab.strategy`) and
  journeys per bus partition, checkpointed in Redis; :mod:`~mktlab.live.effects` executes
  coupons (Redis issuer), messages (:mod:`mktlab.messaging`) and updates;
  :mod:`~mktlab.live.worker` runs N workers; :mod:`~mktlab.live.runner` builds one from a spec.
* :mod:`~mktlab.live.decisions` — the :class:`DecisionLog`, read back as sandbox logged data.
"""

from mktlab.live.bus import (
    Consumer,
    DeadLetter,
    Delivery,
    EventBus,
    PublishReport,
    open_bus,
)
from mktlab.live.context import LiveContext
from mktlab.live.decisions import DecisionLog
from mktlab.live.events import REASONS, BadEvent, Event, parse_event, partition_of
from mktlab.live.journey import Journey, JourneyError, validate
from mktlab.live.journey_sim import SimpleContext, SimResult, simulate
from mktlab.live.producer import publish_frame, read_events, tick_events
from mktlab.live.synth import synthetic_events

__all__ = [
    "REASONS",
    "BadEvent",
    "Consumer",
    "DeadLetter",
    "DecisionLog",
    "Delivery",
    "Event",
    "EventBus",
    "Journey",
    "JourneyError",
    "LiveContext",
    "PublishReport",
    "SimResult",
    "SimpleContext",
    "open_bus",
    "parse_event",
    "partition_of",
    "publish_frame",
    "read_events",
    "simulate",
    "synthetic_events",
    "tick_events",
    "validate",
]
