"""The event bus of the live loop: one interface (:mod:`~mktlab.live.bus_base`), two backends.

>>> from mktlab.live.bus import open_bus
>>> bus = open_bus()                       # MKTLAB_BUS: Redis Streams (default) or RabbitMQ

See :mod:`mktlab.live.bus_base` for the guarantees both backends give.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mktlab.errors import ConfigError
from mktlab.live.bus_base import (
    DEFAULT_GROUP,
    Consumer,
    DeadLetter,
    Delivery,
    EventBus,
    PublishReport,
)

__all__ = [
    "DEFAULT_GROUP",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "EventBus",
    "PublishReport",
    "open_bus",
]


def open_bus(
    backend: str | None = None,
    *,
    partitions: int | None = None,
    namespace: str = "mktlab:live",
    groups: Sequence[str] = (DEFAULT_GROUP,),
    **options: Any,
) -> EventBus:
    """Open the event bus the settings name.

    Parameters
    ----------
    backend : {"redis", "rabbitmq"}, optional
        Defaults to ``settings().bus`` (``MKTLAB_BUS``).
    partitions : int, optional
        Defaults to ``settings().bus_partitions`` (``MKTLAB_BUS_PARTITIONS``, 8). Every
        process of one namespace must use the same number.
    namespace : str, default "mktlab:live"
        Prefix of every key / queue name.
    groups : sequence of str, default ("live",)
        Consumer groups to declare up front: RabbitMQ keeps only events published after a
        group's queues exist, so declare the groups before publishing.
    **options
        Passed to the backend (``retry_s``, ``max_bytes``, ``known_events``, ...).

    Returns
    -------
    EventBus
        Redis: Streams on ``mktlab.coupons.connection.get_redis()``. RabbitMQ: ``settings().amqp_url``.
    """
    from mktlab.config import settings

    s = settings()
    backend = (backend or s.bus).strip().lower()
    parts = s.bus_partitions if partitions is None else partitions
    if backend == "redis":
        from mktlab.coupons.connection import get_redis
        from mktlab.live.bus_redis import RedisBus

        return RedisBus(
            get_redis(s.redis_url), partitions=parts, namespace=namespace, groups=groups, **options
        )
    if backend == "rabbitmq":
        from mktlab.live.bus_rabbitmq import RabbitMQBus

        return RabbitMQBus(
            s.amqp_url, partitions=parts, namespace=namespace, groups=groups, **options
        )
    raise ConfigError(f"backend={backend!r}: expected 'redis' or 'rabbitmq'")
