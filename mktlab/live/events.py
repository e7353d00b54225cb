"""Live events: the value object on the bus, the one parser of raw input, partitioning.

An event arrives as a JSON object (bytes, text or an already decoded mapping)::

    {"user_id": "u42", "event": "purchase", "ts": "2026-12-07T10:00:00+08:00",
     "event_id": "e-1", "amount": 30.0}

``user_id`` follows the project's user id rule (:data:`mktlab.coupons.campaign.USER_ID_RE`),
``ts`` is epoch seconds or an ISO-8601 string with a UTC offset, ``event_id`` is optional
(when absent it is the SHA-1 of the canonical payload, so replaying a file yields the same
ids), every other key goes to ``props`` (as does an explicit ``props`` object).

The live loop runs on simulated clocks, so ``ts`` is not compared with the wall clock;
it only has to be finite and within 1e9..1e11 (2001..5138), which catches milliseconds
and zeros.

Partitions
----------
``partition_of(user_id, P) = (murmur3_32("bus:" + user_id) * P) >> 32``, the same
MurmurHash3 as :mod:`mktlab.experiments._hash`, so it is stable across processes, runs
and machines and one user's events always share a partition.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

import numpy as np

from mktlab.coupons.campaign import USER_ID_RE
from mktlab.errors import ValidationError

__all__ = ["REASONS", "BadEvent", "Event", "parse_event", "partition_of"]

#: Machine reasons a raw event is refused with (``BadEvent.reason``).
REASONS = ("no_user_id", "bad_timestamp", "unknown_event", "oversized", "not_json", "bad_field")

EVENT_ID_RE = re.compile(r"[A-Za-z0-9_.:@\-]{1,128}")
TS_MIN, TS_MAX = 1e9, 1e11
PARTITION_SALT = "bus"
_KNOWN_KEYS = frozenset({"event_id", "user_id", "ts", "event", "props"})


class BadEvent(ValidationError):
    """A raw event that cannot enter the bus.

    Attributes
    ----------
    reason : str
        One of :data:`REASONS` (short and stable: dead letters and metrics group by it).
    field : str or None
        The offending field, when one is to blame.
    index : int or None
        Position in the batch, when raised by a batch operation.
    """

    def __init__(
        self, message: str, *, reason: str, field: str | None = None, index: int | None = None
    ):
        super().__init__(message)
        self.reason = reason
        self.field = field
        self.index = index

    def __reduce__(self):  # keyword-only arguments: pickle (multiprocessing) needs help
        return (_rebuild_bad_event, (str(self), self.reason, self.field, self.index))


def _rebuild_bad_event(message, reason, field, index):
    return BadEvent(message, reason=reason, field=field, index=index)


def _bad(reason: str, field: str | None, message: str) -> BadEvent:
    return BadEvent(message, reason=reason, field=field)


def _check_ts(ts: Any) -> float:
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise _bad("bad_timestamp", "ts", f"ts={ts!r}: expected epoch seconds (a number)")
    value = float(ts)
    if not math.isfinite(value):
        raise _bad("bad_timestamp", "ts", f"ts={ts!r}: must be finite")
    if not TS_MIN <= value <= TS_MAX:
        hint = " (milliseconds? divide by 1000)" if value > TS_MAX else ""
        raise _bad("bad_timestamp", "ts", f"ts={ts!r}: expected epoch seconds in 1e9..1e11{hint}")
    return value


@dataclass(frozen=True, slots=True)
class Event:
    """One user event on the bus.

    Parameters
    ----------
    event_id : str
        1-128 characters of letters, digits and ``_.:@-``; unique per event (consumers
        deduplicate redeliveries by it).
    user_id : str
        The project's user id (1-128 characters of letters, digits and ``_.:@-``).
    ts : float
        Event time in epoch seconds (finite, 1e9..1e11).
    event : str
        Event name, e.g. ``"purchase"`` (1-128 printable characters, no surrounding blanks).
    props : Mapping
        Other attributes, JSON-serialisable with string keys; stored read-only.

    Raises
    ------
    BadEvent
        Naming the bad field.
    """

    event_id: str
    user_id: str
    ts: float
    event: str
    props: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.user_id is None or self.user_id == "":
            raise _bad("no_user_id", "user_id", "user_id: missing")
        if not isinstance(self.user_id, str) or not USER_ID_RE.fullmatch(self.user_id):
            raise _bad(
                "bad_field",
                "user_id",
                f"user_id={self.user_id!r}: expected 1-128 characters of letters, digits and _.:@-",
            )
        ev = self.event
        if (
            not isinstance(ev, str)
            or not 0 < len(ev) <= 128
            or not ev.isprintable()
            or ev != ev.strip()
        ):
            raise _bad(
                "bad_field",
                "event",
                f"event={ev!r}: expected 1-128 printable characters without surrounding blanks",
            )
        if not isinstance(self.event_id, str) or not EVENT_ID_RE.fullmatch(self.event_id):
            raise _bad(
                "bad_field",
                "event_id",
                f"event_id={self.event_id!r}: expected 1-128 characters of letters, digits and _.:@-",
            )
        if type(self.ts) is not float:
            object.__setattr__(self, "ts", _check_ts(self.ts))
        elif not TS_MIN <= self.ts <= TS_MAX:  # also false for NaN
            _check_ts(self.ts)
        props = self.props
        tp = type(props)
        if tp is not dict and tp is not MappingProxyType and not isinstance(props, Mapping):
            raise _bad("bad_field", "props", f"props: expected an object, got {tp.__name__}")
        if props and not all(type(k) is str for k in props):
            bad = next(k for k in props if not isinstance(k, str))
            raise _bad("bad_field", "props", f"props: keys must be strings, got {bad!r}")
        if tp is not MappingProxyType:
            object.__setattr__(self, "props", MappingProxyType(dict(props)))

    def __reduce__(self):  # mappingproxy does not pickle; rebuild from a plain dict
        return (Event, (self.event_id, self.user_id, self.ts, self.event, dict(self.props)))

    def to_dict(self) -> dict[str, Any]:
        """The event as a plain JSON-ready dict (``props`` copied)."""
        return {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "ts": self.ts,
            "event": self.event,
            "props": dict(self.props),
        }

    def to_json(self) -> bytes:
        """Canonical UTF-8 JSON (the bus payload); :meth:`from_json` reads it back equal.

        Raises
        ------
        BadEvent
            ``bad_field`` on ``props`` when a value is not JSON-serialisable or not finite.
        """
        try:
            return json.dumps(
                self.to_dict(), separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise _bad("bad_field", "props", f"props: not JSON-serialisable ({exc})") from None

    @classmethod
    def from_json(cls, data: bytes | str) -> Event:
        """Parse a payload written by :meth:`to_json` (or any raw event, see :func:`parse_event`)."""
        return parse_event(data)


def _fields(ev: Event) -> tuple:
    return (ev.event_id, ev.user_id, ev.ts, ev.event, ev.props)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


# one decoder: json.loads(..., parse_constant=...) would build a new one per call
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _decode(raw: bytes | bytearray | memoryview | str, max_bytes: int) -> Any:
    size = len(raw)  # characters of a str: a lower bound of its UTF-8 size
    if isinstance(raw, str) and size * 4 > max_bytes:
        size = len(raw.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise _bad("oversized", None, f"event of {size} bytes exceeds max_bytes={max_bytes}")
    try:
        # NaN/Infinity are not JSON (RFC 8259); refusing them here keeps to_json total
        if isinstance(raw, str):
            text = raw
        else:
            text = (raw if isinstance(raw, bytes) else bytes(raw)).decode("utf-8")
        return _DECODER.decode(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad("not_json", None, f"event is not valid JSON: {exc}") from None


def _parse_ts(value: Any) -> float:
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise _bad(
                "bad_timestamp",
                "ts",
                f"ts={value!r}: expected epoch seconds or an ISO-8601 string with a UTC offset",
            ) from None
        if dt.tzinfo is None or dt.utcoffset() is None:
            raise _bad(
                "bad_timestamp", "ts", f"ts={value!r}: ISO-8601 timestamp needs a UTC offset"
            )
        return _check_ts(dt.timestamp())
    if value is None:
        raise _bad("bad_timestamp", "ts", "ts: missing")
    return _check_ts(value)


def _canonical_id(user_id: str, ts: float, event: str, props: Mapping[str, Any]) -> str:
    try:
        text = json.dumps(
            {"user_id": user_id, "ts": ts, "event": event, "props": props},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        raise _bad("bad_field", "props", f"props: not JSON-serialisable ({exc})") from None
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def parse_event(
    raw: bytes | str | Mapping[str, Any] | Event,
    *,
    known_events: Collection[str] | None = None,
    max_bytes: int = 8192,
) -> Event:
    """Validate one raw event and return it as an :class:`Event`.

    Parameters
    ----------
    raw : bytes, str, Mapping or Event
        A JSON object (encoded or decoded). An :class:`Event` passes through (checked
        against ``known_events``).
    known_events : collection of str, optional
        When given, event names outside it are refused (``unknown_event``).
    max_bytes : int, default 8192
        Largest accepted encoded size (``oversized``).

    Returns
    -------
    Event

    Raises
    ------
    BadEvent
        With ``reason`` one of :data:`REASONS` and the offending ``field``.
    """
    return _parse(raw, known_events, max_bytes, True)


def _parse(
    raw: Any, known_events: Collection[str] | None, max_bytes: int, check_size: bool
) -> Event:
    """:func:`parse_event`; ``check_size=False`` skips serialising a mapping to measure it
    (for callers that serialise the event anyway and check the size of that)."""
    # exact type checks first: this runs once per consumed event
    tr = type(raw)
    if tr is Event:
        ev = raw
    else:
        if tr is bytes or tr is str or isinstance(raw, bytearray | memoryview | str):
            obj = _decode(raw, max_bytes)
            check_size = False
        elif tr is dict or isinstance(raw, Mapping):
            obj = raw
        elif isinstance(raw, Event):  # a subclass
            return _parse(Event(*_fields(raw)), known_events, max_bytes, check_size)
        else:
            raise _bad(
                "not_json",
                None,
                f"event: expected JSON bytes or text or a mapping, got {type(raw).__name__}",
            )
        if type(obj) is not dict and not isinstance(obj, Mapping):
            raise _bad("not_json", None, f"event: expected a JSON object, got {type(obj).__name__}")
        user_id = obj.get("user_id")
        if user_id is None or user_id == "":
            raise _bad("no_user_id", "user_id", "user_id: missing")
        if type(user_id) is not str:
            raise _bad(
                "bad_field",
                "user_id",
                f"user_id={user_id!r}: expected a string, got {type(user_id).__name__}",
            )
        ts = _parse_ts(obj.get("ts"))
        name = obj.get("event")
        if name is None:
            raise _bad("bad_field", "event", "event: missing")
        props = obj.get("props")
        if props is None:
            props = {}
        elif type(props) is not dict and not isinstance(props, Mapping):
            raise _bad(
                "bad_field", "props", f"props: expected an object, got {type(props).__name__}"
            )
        if obj.keys() - _KNOWN_KEYS:
            props = dict(props)
            for k in [k for k in obj if k not in _KNOWN_KEYS]:
                if k in props:
                    raise _bad("bad_field", k, f"{k}: given both at the top level and inside props")
                props[k] = obj[k]
        event_id = obj.get("event_id")
        if event_id is None or event_id == "":
            event_id = _canonical_id(user_id, ts, name, props) if isinstance(name, str) else ""
        elif isinstance(event_id, int) and not isinstance(event_id, bool):
            event_id = str(event_id)
        ev = Event(event_id, user_id, ts, name, props)
        if check_size:
            size = len(ev.to_json())
            if size > max_bytes:
                raise _bad(
                    "oversized", None, f"event of {size} bytes exceeds max_bytes={max_bytes}"
                )
    if known_events is not None and ev.event not in known_events:
        raise _bad("unknown_event", "event", f"event={ev.event!r}: not a known event")
    return ev


# --- partitioning -------------------------------------------------------------------
from mktlab.experiments._hash import murmur3_scalar as _murmur3_32  # noqa: E402


def partition_of(user_id: str | Sequence[str], partitions: int) -> int | np.ndarray:
    """Partition in ``[0, partitions)`` of a user id, or of every id of a sequence.

    Parameters
    ----------
    user_id : str or sequence of str
        One id (returns an ``int``) or many (returns an array; vectorised).
    partitions : int
        Number of partitions (>= 1).

    Returns
    -------
    int or numpy.ndarray of int32
        ``(murmur3_32("bus:" + id) * partitions) >> 32`` — stable across processes and runs.
    """
    if isinstance(partitions, bool) or not isinstance(partitions, int | np.integer):
        raise ValidationError(f"partitions={partitions!r}: expected an integer >= 1")
    if not 1 <= partitions <= 2**31 - 1:
        raise ValidationError(f"partitions={partitions!r}: expected an integer >= 1")
    if isinstance(user_id, str):
        h = _murmur3_32(f"{PARTITION_SALT}:{user_id}".encode())
        return (h * int(partitions)) >> 32
    # imported here: the compiled kernel is only worth its import time for batches
    from mktlab.experiments._hash import hash_buckets

    return hash_buckets(user_id, PARTITION_SALT, int(partitions))
