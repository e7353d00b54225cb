"""The Redis Streams backend of the event bus (the default; runs on the embedded Redis 6.2).

Keys (``ns`` = namespace)
-------------------------
``{ns}:p{i}``                       stream of partition ``i``; field ``e`` = the event's JSON
``{ns}:dlq``                        dead letters (fields ``reason``, ``payload``, ``detail``, ``ts``)
``{ns}:meta``                       hash: ``partitions`` (fixed at first use; a mismatch is refused)
``{ns}:g:{group}:lease:{i}``        holder of partition ``i`` in ``group`` (``SET NX PX lease_ms``)
``{ns}:g:{group}:hb:{token}``       heartbeat of one consumer (TTL ``lease_ms``)
``{ns}:g:{group}:members``          tokens of consumers that ever heartbeated (pruned lazily)

One consumer group per bus group reads every stream. Each poll runs one Lua script that,
atomically: refreshes the consumer's heartbeat, counts live consumers (heartbeat keys that
still exist), renews its leases, gives back partitions above its fair share
``ceil(P / live)`` (never one with events in flight), takes free ones up to that share,
XAUTOCLAIMs the pending entries of a partition it just took (they belong to a dead or
previous holder) and reads them before new ones, then reads new entries of the partitions
it holds. Reading inside the same script as the lease check means a consumer can never
read a partition it does not hold. When nothing is there, the consumer waits with a plain
``XREAD BLOCK`` (which consumes nothing) and runs the script again.

Redis Cluster is refused: a poll touches every partition's keys in one script.
"""

from __future__ import annotations

import contextlib
import time
import uuid
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from mktlab.errors import ConfigError, ValidationError
from mktlab.live.bus_base import (
    Consumer,
    DeadLetter,
    Delivery,
    EventBus,
    PublishReport,
    check_dead_letter_args,
    check_name,
    check_poll_args,
    split_batch,
    with_retry,
)
from mktlab.live.events import BadEvent, Event, parse_event, partition_of

__all__ = ["RedisBus", "RedisConsumer"]

TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

_PUBLISH = """
local ng, nb = tonumber(ARGV[1]), tonumber(ARGV[2])
local dlq = KEYS[#KEYS]
local j = 4
for _ = 1, ng do
  redis.call('XADD', KEYS[tonumber(ARGV[j]) + 1], '*', 'e', ARGV[j + 1])
  j = j + 2
end
for _ = 1, nb do
  redis.call('XADD', dlq, '*', 'reason', ARGV[j], 'payload', ARGV[j + 1], 'detail', ARGV[j + 2], 'ts', ARGV[3])
  j = j + 3
end
return ng + nb
"""

# the poll: heartbeat, fair share, leases, takeover and reads in one atomic step
_POLL = resources.files("mktlab.live").joinpath("bus_poll.lua").read_text()

_RELEASE = """
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
redis.call('DEL', ARGV[2] .. ARGV[1])
redis.call('SREM', KEYS[1], ARGV[1])
return 1
"""

_COUNT_AFTER = """
local r = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))
if #r == 0 then return {0, ARGV[1]} end
return {#r, r[#r][1]}
"""


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _id(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class RedisBus(EventBus):
    """Event bus on Redis Streams (see the module docstring for keys and the algorithm).

    Parameters
    ----------
    redis : redis.Redis, str or None
        A client (e.g. :func:`mktlab.coupons.connection.get_redis`) or a URL; None means
        ``get_redis()``. The bus opens its own binary-safe connection pool to that server.
    partitions : int, default 8
        Number of streams; fixed per namespace at first use.
    namespace : str, default "mktlab:live"
    groups : sequence of str
        Consumer groups to create now (a group created later still reads from the start).
    retry_s : float, default 30
        How long calls retry a lost server before :class:`ServiceUnavailableError`.
    max_bytes : int, default 8192
        Largest event accepted by publish and by consumers.
    known_events : collection of str, optional
        Event names accepted (others are ``unknown_event``).
    chunk : int, default 1000
        Events per Lua call when publishing (keeps each call short on the server).
    """

    def __init__(
        self,
        redis_client: Any = None,
        *,
        partitions: int = 8,
        namespace: str = "mktlab:live",
        groups: Sequence[str] = (),
        retry_s: float = 30.0,
        max_bytes: int = 8192,
        known_events: Collection[str] | None = None,
        chunk: int = 1000,
    ):
        from mktlab.coupons.connection import connection_url, get_redis, is_cluster

        if (
            isinstance(partitions, bool)
            or not isinstance(partitions, int)
            or not 1 <= partitions <= 1024
        ):
            raise ValidationError(f"partitions={partitions!r}: expected an integer in 1..1024")
        if not isinstance(namespace, str) or not namespace or any(c.isspace() for c in namespace):
            raise ValidationError(
                f"namespace={namespace!r}: expected a non-empty string without blanks"
            )
        if not isinstance(chunk, int) or chunk < 1:
            raise ValidationError(f"chunk={chunk!r}: expected an integer >= 1")
        if isinstance(redis_client, str):
            url = redis_client
        else:
            client = redis_client if redis_client is not None else get_redis()
            if is_cluster(client):
                raise ConfigError(
                    "the Redis event bus needs one Redis server (a poll reads every partition in "
                    "one script); point it at a single node or use MKTLAB_BUS=rabbitmq"
                )
            url = connection_url(client)
        self.url = url
        self.partitions = partitions
        self.namespace = namespace
        self.retry_s = float(retry_s)
        self.max_bytes = int(max_bytes)
        self.known_events = frozenset(known_events) if known_events is not None else None
        self.chunk = chunk
        # our own pool: payloads are bytes, and retries are ours (a blind client-side retry
        # of a poll script would lose the entries the first attempt read)
        tcp = {} if url.startswith("unix://") else {"socket_keepalive": True}
        self._r = redis.Redis.from_url(  # type: ignore[call-overload]
            url,
            decode_responses=False,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=2,
            socket_timeout=30,
            **tcp,
        )
        self._publish_script = self._r.register_script(_PUBLISH)
        self._poll_script = self._r.register_script(_POLL)
        self._release_script = self._r.register_script(_RELEASE)
        self._count_script = self._r.register_script(_COUNT_AFTER)
        self.stream_keys = [f"{namespace}:p{i}" for i in range(partitions)]
        self.dlq_key = f"{namespace}:dlq"
        self._consumers: list[RedisConsumer] = []
        self._groups: set[str] = set()
        self._retry(self._check_server, "connect")
        for g in groups:
            self.ensure_group(g)

    # --- plumbing ---------------------------------------------------------------------
    def _retry(self, fn, what: str, on_error=None):
        return with_retry(
            fn, errors=TRANSIENT, url=self.url, what=what, retry_s=self.retry_s, on_error=on_error
        )

    def _check_server(self) -> None:
        version = _s(self._r.info("server").get("redis_version", "0"))
        major, minor = (int(x) for x in [*version.split("."), "0"][:2])
        if (major, minor) < (6, 2):
            raise ConfigError(f"Redis {version} at {self.url}: the event bus needs Redis >= 6.2")
        meta = f"{self.namespace}:meta"
        self._r.hsetnx(meta, "partitions", self.partitions)
        stored = int(self._r.hget(meta, "partitions"))
        if stored != self.partitions:
            raise ConfigError(
                f"namespace {self.namespace!r} has {stored} partitions, got partitions="
                f"{self.partitions}; a user's events must stay in one partition, so every "
                "process of a namespace needs the same number"
            )

    def ensure_group(self, group: str) -> None:
        """Create consumer group ``group`` on every partition (reading from the start)."""
        check_name(group, "group")

        def run():
            pipe = self._r.pipeline(transaction=False)
            for key in self.stream_keys:
                pipe.xgroup_create(key, group, id="0", mkstream=True)
            for res in pipe.execute(raise_on_error=False):
                if isinstance(res, Exception) and "BUSYGROUP" not in str(res):
                    raise res

        self._retry(run, f"create group {group!r}")
        self._groups.add(group)

    # --- EventBus ---------------------------------------------------------------------
    def publish(
        self, events: Iterable[Event | Mapping | bytes], *, invalid: str = "raise"
    ) -> PublishReport:
        """Publish a batch; see :meth:`EventBus.publish`. One Lua call per ``chunk`` events."""
        good, payloads, bad = split_batch(
            events, invalid=invalid, known_events=self.known_events, max_bytes=self.max_bytes
        )
        if not good and not bad:
            return PublishReport(0, 0)
        if len(good) > 32:
            parts = np.asarray(partition_of([e.user_id for e in good], self.partitions)).tolist()
        else:  # a few events: the scalar hash, no compiled kernel to load
            parts = [partition_of(e.user_id, self.partitions) for e in good]
        keys = [*self.stream_keys, self.dlq_key]
        now = repr(time.time())
        calls: list[list] = []
        for lo in range(0, len(good), self.chunk):
            args: list = [min(self.chunk, len(good) - lo), 0, now]
            for p, payload in zip(parts[lo : lo + self.chunk], payloads[lo : lo + self.chunk]):
                args += (p, payload)
            calls.append(args)
        if bad:
            args = [0, len(bad), now]
            for payload, reason, detail in bad:
                args += (reason, payload, detail)
            calls.append(args)
        done = [0]

        def run():
            # chunks already stored are not sent again after a reconnect
            while done[0] < len(calls):
                self._publish_script(keys=keys, args=calls[done[0]])
                done[0] += 1

        self._retry(run, "publish")
        return PublishReport(len(good), len(bad))

    def consumer(self, group: str, name: str, *, lease_ms: int = 10_000) -> RedisConsumer:
        """Join ``group`` as ``name``; see :class:`RedisConsumer`."""
        c = RedisConsumer(self, group, name, lease_ms=lease_ms)
        self._consumers.append(c)
        return c

    def dead_letter(self, payload: bytes, reason: str) -> None:
        """Store a poison message in ``{ns}:dlq``."""
        payload = check_dead_letter_args(payload, reason)
        fields = {"reason": reason, "payload": payload, "detail": "", "ts": repr(time.time())}
        self._retry(lambda: self._r.xadd(self.dlq_key, fields), "dead_letter")

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters, oldest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValidationError(f"limit={limit!r}: expected an integer >= 1")
        rows = self._retry(lambda: self._r.xrange(self.dlq_key, count=limit), "dead_letters")
        out = []
        for _, f in rows:
            out.append(
                DeadLetter(
                    reason=_s(f.get(b"reason", b"?")),
                    payload=f.get(b"payload", b""),
                    ts=float(f.get(b"ts", b"0")),
                    detail=_s(f.get(b"detail", b"")),
                )
            )
        return out

    def stats(self, group: str) -> dict:
        """Per partition ``length``, ``pending`` (read, not acked), ``lag`` (not yet read),
        ``holder``; plus ``dead_letters`` and live ``consumers`` of ``group``."""
        check_name(group, "group")
        return self._retry(lambda: self._stats(group), "stats")

    def _stats(self, group: str) -> dict:
        r = self._r
        pipe = r.pipeline(transaction=False)
        for i, key in enumerate(self.stream_keys):
            pipe.xlen(key)
            pipe.xinfo_groups(key)
            pipe.get(f"{self.namespace}:g:{group}:lease:{i}")
        pipe.xlen(self.dlq_key)
        pipe.smembers(f"{self.namespace}:g:{group}:members")
        res = pipe.execute(raise_on_error=False)
        parts: dict[int, dict] = {}
        for i, key in enumerate(self.stream_keys):
            length, groups, holder = res[3 * i : 3 * i + 3]
            length = 0 if isinstance(length, Exception) else int(length)
            info = None
            if not isinstance(groups, Exception):
                for g in groups:
                    if _s(g.get("name")) == group:
                        info = g
            if info is None:
                parts[i] = {"length": length, "pending": 0, "lag": length, "holder": None}
                continue
            lag = info.get("lag")
            if lag is None:  # Redis 6.2 keeps no read counter: count what follows the cursor
                lag, cursor = 0, _s(info["last-delivered-id"])
                while True:
                    n, cursor = self._count_script(keys=[key], args=[cursor, 10_000])
                    lag += int(n)
                    if int(n) < 10_000:
                        break
            parts[i] = {
                "length": length,
                "pending": int(info["pending"]),
                "lag": int(lag),
                "holder": _s(holder).split("#")[0] if holder else None,
            }
        members = res[-1] if not isinstance(res[-1], Exception) else set()
        hb = f"{self.namespace}:g:{group}:hb:"
        live = sum(int(r.exists(hb + _s(m))) for m in members)
        dlq = res[-2]
        return {
            "group": group,
            "partitions": parts,
            "dead_letters": 0 if isinstance(dlq, Exception) else int(dlq),
            "consumers": live,
        }

    def trim(self) -> int:
        """Delete stream entries every consumer group has read and acked; return how many.

        Streams are never trimmed on publish (that could drop unread events). Call this
        now and then (a worker between batches, a cron): per partition it removes entries
        older than the oldest one some group still needs (pending, or not yet read).
        Partitions without any group are left alone.
        """

        def run() -> int:
            removed = 0
            for key in self.stream_keys:
                groups = self._r.xinfo_groups(key) if self._r.exists(key) else []
                floor: str | None = None
                for g in groups:
                    need = _s(g["last-delivered-id"])
                    if int(g["pending"]):
                        oldest = _s(self._r.xpending(key, _s(g["name"]))["min"])
                        need = min(need, oldest, key=_id)
                    floor = need if floor is None else min(floor, need, key=_id)
                if floor is not None and floor != "0-0":
                    # exclusive of the floor itself: it may be the group's last read entry
                    removed += int(self._r.xtrim(key, minid=floor, approximate=False))
            return removed

        return self._retry(run, "trim")

    def destroy(self) -> None:
        """Delete every key of this namespace (tests, demos). Consumers must be closed."""

        def run():
            keys = list(self._r.scan_iter(match=f"{self.namespace}:*", count=1000))
            for lo in range(0, len(keys), 500):
                self._r.delete(*keys[lo : lo + 500])

        self._retry(run, "destroy")

    def close(self) -> None:
        """Close every consumer made by this bus, then the connection pool."""
        for c in self._consumers:
            c.close()
        self._consumers.clear()
        self._r.close()


class RedisConsumer(Consumer):
    """A consumer of a :class:`RedisBus` group (see the module docstring).

    Parameters
    ----------
    bus : RedisBus
    group, name : str
        1-64 characters of letters, digits, ``_.-``. ``name`` is the Redis consumer name
        (reuse it across restarts of one worker); a random suffix tells instances apart.
    lease_ms : int, default 10000
        How long a partition stays held without a poll; a dead consumer's partitions move
        to the others after it. Poll at least twice per lease.
    """

    def __init__(self, bus: RedisBus, group: str, name: str, *, lease_ms: int = 10_000):
        check_name(name, "name")
        if isinstance(lease_ms, bool) or not isinstance(lease_ms, int) or lease_ms < 100:
            raise ValidationError(f"lease_ms={lease_ms!r}: expected an integer >= 100")
        bus.ensure_group(group)
        self.bus = bus
        self.group = group
        self.name = name
        self.lease_ms = lease_ms
        self.token = f"{name}#{uuid.uuid4().hex[:12]}"
        P = bus.partitions
        ns = bus.namespace
        self._keys = [
            f"{ns}:g:{group}:members",
            *(f"{ns}:g:{group}:lease:{i}" for i in range(P)),
            *bus.stream_keys,
        ]
        self._hb_prefix = f"{ns}:g:{group}:hb:"
        self._start = zlib.crc32(self.token.encode()) % P
        self._cursor: dict[int, str] = {}  # held partition -> '' (new entries) or pending cursor
        self._inflight: dict[int, set[str]] = {}
        self._closed = False
        self.live_consumers = 0

    def _recover_all(self, _exc: BaseException | None = None) -> None:
        # a lost reply may have moved entries into our pending list unseen: re-read it
        for p in self._cursor:
            self._cursor[p] = "0-0"

    def _run_script(self, max_events: int) -> list:
        P = self.bus.partitions
        busy = "".join(
            "1" if self._inflight.get(i) or self._cursor.get(i) else "0" for i in range(P)
        )
        cursors = [self._cursor.get(i, "") for i in range(P)]
        args = [
            self.token, self.name, self.group, self.lease_ms, max_events,
            self._hb_prefix, self._start, busy, P, *cursors,
        ]  # fmt: skip
        try:
            return self.bus._poll_script(keys=self._keys, args=args)
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # the server lost its data (restarted without persistence): start the group again
            self.bus.ensure_group(self.group)
            return self.bus._poll_script(keys=self._keys, args=args)

    def poll(self, max_events: int = 1000, block_ms: int = 100) -> list[Delivery]:
        """See :meth:`Consumer.poll`. ``block_ms`` must be at most ``lease_ms / 2``."""
        if self._closed:
            raise ValidationError(f"consumer {self.name!r} is closed")
        check_poll_args(max_events, block_ms, self.lease_ms)
        deadline = time.monotonic() + block_ms / 1000
        while True:
            res = self.bus._retry(
                lambda: self._run_script(max_events), "poll", on_error=self._recover_all
            )
            deliveries, wake = self._absorb(res)
            if deliveries:
                return deliveries
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            if not wake:  # standby: nothing held, look for a free partition again soon
                time.sleep(min(left, 0.05))
                continue
            streams = {self.bus.stream_keys[p]: last for p, last in wake}
            ms = max(1, min(int(left * 1000), 5000))
            with contextlib.suppress(*TRANSIENT):  # the next script call retries with backoff
                self.bus._r.xread(streams, count=1, block=ms)

    def _absorb(self, res: list) -> tuple[list[Delivery], list[tuple[int, bytes]]]:
        live, held, curs, _acquired, out, wake = res
        self.live_consumers = int(live)
        new_cursor = {int(p): _s(c) for p, c in zip(held, curs)}
        for p in set(self._cursor) - set(new_cursor):
            self._inflight.pop(p, None)  # lost or given back: its in-flight set is void
        self._cursor = new_cursor
        deliveries: list[Delivery] = []
        dead: list[tuple[int, bytes, bytes | None, str, str]] = []
        known, max_bytes = self.bus.known_events, self.bus.max_bytes
        for part, redelivered, entries in out:
            part = int(part)
            inflight = self._inflight.setdefault(part, set())
            redelivered = bool(redelivered)
            for msg_id, fields in entries:
                mid = msg_id.decode()
                if redelivered and mid in inflight:
                    continue  # still with the caller, who will ack it
                if not fields:  # deleted (XDEL) while pending: nothing left to handle
                    dead.append((part, msg_id, None, "", ""))
                    continue
                if fields[0] != b"e" or len(fields) != 2:
                    raw = b" ".join(fields)
                    dead.append((part, msg_id, raw, "bad_field", "stream entry without field 'e'"))
                    continue
                try:
                    ev = parse_event(fields[1], known_events=known, max_bytes=max_bytes)
                except BadEvent as exc:
                    dead.append((part, msg_id, fields[1], exc.reason, str(exc)))
                    continue
                inflight.add(mid)
                deliveries.append(Delivery(ev, part, mid, redelivered))
        if dead:
            self._bury(dead)
        return deliveries, [(int(p), last) for p, last in wake]

    def _bury(self, dead: list) -> None:
        """Dead-letter unparseable entries and ack them (one round trip)."""
        now = repr(time.time())

        def run():
            pipe = self.bus._r.pipeline(transaction=False)
            for part, msg_id, payload, reason, detail in dead:
                if payload is not None:
                    fields = {"reason": reason, "payload": payload, "detail": detail, "ts": now}
                    pipe.xadd(self.bus.dlq_key, fields)
                pipe.xack(self.bus.stream_keys[part], self.group, msg_id)
            pipe.execute()

        self.bus._retry(run, "dead-letter", on_error=self._recover_all)

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """XACK ``deliveries`` (one round trip; safe to repeat)."""
        by_part: dict[int, list[str]] = {}
        for d in deliveries:
            if not isinstance(d, Delivery):
                raise ValidationError(f"ack: expected Delivery objects, got {type(d).__name__}")
            by_part.setdefault(d.partition, []).append(d.msg_id)
        if not by_part:
            return
        for p in by_part:
            if not 0 <= p < self.bus.partitions:
                raise ValidationError(f"ack: partition {p} is not in 0..{self.bus.partitions - 1}")

        def run():
            pipe = self.bus._r.pipeline(transaction=False)
            for p, ids in by_part.items():
                pipe.xack(self.bus.stream_keys[p], self.group, *ids)
            pipe.execute()

        self.bus._retry(run, "ack")
        for p, ids in by_part.items():
            held = self._inflight.get(p)
            if held:
                held.difference_update(ids)

    def partitions_held(self) -> set[int]:
        """Partitions held as of the last poll."""
        return set(self._cursor)

    def close(self) -> None:
        """Give back every partition now (others take them on their next poll)."""
        if self._closed:
            return
        self._closed = True
        keys = [self._keys[0], *self._keys[1 : 1 + self.bus.partitions]]
        # an unreachable server: the leases lapse on their own after lease_ms
        with contextlib.suppress(*TRANSIENT):
            self.bus._release_script(keys=keys, args=[self.token, self._hb_prefix])
        self._cursor.clear()
        self._inflight.clear()
