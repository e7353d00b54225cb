"""Value objects of the gateway: what to send (:class:`Message`) and what happened.

Both are frozen dataclasses validated in ``__post_init__``; a bad field raises
:class:`~mktlab.errors.ValidationError` naming it, before anything is sent or written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mktlab.errors import ValidationError

CHANNELS = ("push", "sms", "wechat", "inapp", "email", "webhook")
STATUSES = ("sent", "failed", "suppressed", "deferred", "duplicate")
RECEIPT_STATUSES = ("delivered", "opened", "clicked", "bounced", "failed")
# outcomes of one channel tried for one message (the attempts table's ``outcome``)
OUTCOMES = ("sent", "failed", "capped", "not_allowed", "rate_limited", "no_provider")


def check_text(value: Any, what: str, *, max_len: int = 255) -> str:
    """``value`` if it is a non-empty string of at most ``max_len`` characters."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{what}: expected a non-empty string, got {value!r}")
    if len(value) > max_len:
        raise ValidationError(f"{what}: at most {max_len} characters, got {len(value)}")
    return value


def check_ts(value: Any, what: str) -> float:
    """``value`` as a float if it is a finite number of epoch seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{what}: expected finite epoch seconds, got {value!r}")
    return float(value)


def check_channels(value: Any, what: str = "channels") -> tuple[str, ...]:
    """A non-empty tuple of distinct names from :data:`CHANNELS` (a bare name is one channel)."""
    if isinstance(value, str):
        value = (value,)
    try:
        chans = tuple(value)
    except TypeError:
        raise ValidationError(
            f"{what}: expected a sequence of channel names, got {value!r}"
        ) from None
    if not chans:
        raise ValidationError(f"{what}: expected at least one channel of {CHANNELS}")
    for c in chans:
        if c not in CHANNELS:
            raise ValidationError(f"{what}: unknown channel {c!r}; expected one of {CHANNELS}")
    if len(set(chans)) != len(chans):
        twice = next(c for c in chans if chans.count(c) > 1)
        raise ValidationError(f"{what}: channel {twice!r} listed twice in {chans}")
    return chans


@lru_cache(maxsize=512)
def zone(tz: str) -> ZoneInfo:
    """The :class:`zoneinfo.ZoneInfo` named ``tz`` (cached: the send path asks per message).

    Raises
    ------
    ValidationError
        ``tz`` is not an IANA time zone name known to this machine (or to ``tzdata``).
    """
    if not isinstance(tz, str) or not tz.strip():
        raise ValidationError(f"tz: expected an IANA time zone name, got {tz!r}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(
            f"tz: unknown time zone {tz!r}; expected an IANA name such as 'Europe/Paris'"
        ) from None


@dataclass(frozen=True)
class Message:
    """A request to send template ``template`` to user ``user_id``.

    Parameters
    ----------
    key : str
        Idempotency key, e.g. ``"journey:v3:node7:u42:evt-9"``: the same key always means
        the same (single) delivery, however often it is sent.
    user_id : str
    template : str
        Name in the gateway's :class:`~mktlab.messaging.TemplateCatalog`.
    channels : tuple of str
        Channels in priority order; the gateway falls back left to right.
    ts : float
        Event time in epoch seconds (the simulated clock that caps and quiet hours use).
    campaign_id : str, optional
    params : mapping
        Values of the template's ``{placeholders}``.
    tz : str, optional
        The user's IANA time zone; ``None`` means the gateway's ``default_tz``.
    """

    key: str
    user_id: str
    template: str
    channels: tuple[str, ...]
    ts: float
    campaign_id: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    tz: str | None = None

    def __post_init__(self) -> None:
        check_text(self.key, "message.key")
        check_text(self.user_id, "message.user_id", max_len=128)
        check_text(self.template, "message.template", max_len=128)
        object.__setattr__(self, "channels", check_channels(self.channels, "message.channels"))
        object.__setattr__(self, "ts", check_ts(self.ts, "message.ts"))
        if self.campaign_id is not None:
            check_text(self.campaign_id, "message.campaign_id", max_len=64)
        if not isinstance(self.params, Mapping):
            raise ValidationError(f"message.params: expected a mapping, got {self.params!r}")
        if self.tz is not None:
            zone(self.tz)


@dataclass(frozen=True)
class DeliveryResult:
    """What the gateway did with one :class:`Message`.

    Attributes
    ----------
    key : str
    status : str
        ``"sent"`` (one channel delivered), ``"failed"`` (every usable channel's provider
        failed), ``"suppressed"`` (caps or the template refused every channel),
        ``"deferred"`` (quiet hours or rate limits; sent by ``flush_due`` at ``not_before``)
        or ``"duplicate"`` (the key was seen before: the first result, nothing sent).
    channel : str or None
        The channel that delivered (``"sent"``), else ``None``.
    reason : str or None
        Why it was not sent on the first channel / at all, e.g. ``"cap sms 1/1d reached"``.
    attempts : tuple of (channel, outcome)
        Every channel considered, in order; outcome is one of :data:`OUTCOMES`.
    not_before : float or None
        For ``"deferred"``: epoch seconds (event clock) when it may be sent.
    """

    key: str
    status: str
    channel: str | None
    reason: str | None
    attempts: tuple[tuple[str, str], ...]
    not_before: float | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValidationError(f"result.status: expected one of {STATUSES}, got {self.status!r}")
        if self.channel is not None and self.channel not in CHANNELS:
            raise ValidationError(f"result.channel: unknown channel {self.channel!r}")
        object.__setattr__(self, "attempts", tuple((c, o) for c, o in self.attempts))
        if self.status == "deferred" and self.not_before is None:
            raise ValidationError("result.not_before: a deferred result needs not_before")
