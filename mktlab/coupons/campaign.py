"""Campaign definitions: what may be issued, to whom, how often, until when."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mktlab.errors import ValidationError

# Identifier patterns. Always test them with ``fullmatch``: in Python ``$`` also matches
# before a final newline, so ``match("u1\n")`` passes, while the issuer's Lua batches are
# newline-joined. The anchors stay because the service publishes these patterns in its
# OpenAPI schema, where (ECMA-262 regexes) ``$`` means end of string.
CAMPAIGN_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
USER_ID_RE = re.compile(r"^[A-Za-z0-9_.:@\-]{1,128}$")
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9_.:@\-]{1,128}$")


def _epoch(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            pass
    raise ValidationError(
        f"Campaign.{name}={value!r}: expected a datetime, ISO string or epoch seconds"
    )


def check_campaign_id(campaign_id: Any) -> str:
    """Return ``campaign_id`` if well formed, else raise :class:`ValidationError`."""
    if not isinstance(campaign_id, str) or not CAMPAIGN_ID_RE.fullmatch(campaign_id):
        raise ValidationError(
            f"campaign_id={campaign_id!r}: expected 1-64 characters of letters, digits, _.-"
        )
    return campaign_id


def check_user_id(user_id: Any) -> str:
    """Return ``user_id`` if well formed, else raise :class:`ValidationError`."""
    if not isinstance(user_id, str) or not USER_ID_RE.fullmatch(user_id):
        raise ValidationError(
            f"user_id={user_id!r}: expected 1-128 characters of letters, digits and _.:@-"
        )
    return user_id


def check_request_id(request_id: Any) -> str:
    """Return ``request_id`` if well formed, else raise :class:`ValidationError`."""
    if not isinstance(request_id, str) or not REQUEST_ID_RE.fullmatch(request_id):
        raise ValidationError(
            f"request_id={request_id!r}: expected 1-128 characters of letters, digits and _.:@-"
        )
    return request_id


@dataclass
class Campaign:
    """A coupon campaign.

    Parameters
    ----------
    campaign_id : str
        1-64 characters of letters, digits, ``_.-`` (it becomes part of Redis key names).
    stock : int
        Total coupons that may ever be issued (> 0).
    face_value : float
        Value of one coupon to the customer.
    cost : float
        Expected cost of one issued coupon to the company; the budget breaker counts it.
        Defaults to ``face_value``.
    budget : float, optional
        Total cost that may be committed; ``None`` means ``stock * cost``.
    per_user_limit : int
        Coupons one user may hold (default 1); each gets ``seq`` 1..limit.
    start, end : datetime, ISO string or epoch seconds, optional
        Validity window ``[start, end)``; ``None`` means open.
    shards : int
        Sub-stocks on distinct Redis hash slots (1 = one hot key).
    prededuct_chunk : int
        When > 0, each issuing process leases stock in chunks of this size (``DECRBY``)
        and spends it locally; unused stock is returned on close, stranded stock is
        recovered by :func:`mktlab.coupons.reconcile`.
    max_backlog : int
        Issuance stops (reason ``ledger_backlog``) when this many issued coupons of one
        shard wait in the outbox for the ledger.
    eligibility : callable, optional
        ``f(user_id) -> bool`` evaluated before Redis; ``False`` denies with ``ineligible``.
        Not persisted.
    """

    campaign_id: str
    stock: int
    face_value: float = 10.0
    cost: float | None = None
    budget: float | None = None
    per_user_limit: int = 1
    start: Any = None
    end: Any = None
    shards: int = 1
    prededuct_chunk: int = 0
    max_backlog: int = 50_000
    eligibility: Callable[[str], bool] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.campaign_id, str) or not CAMPAIGN_ID_RE.fullmatch(self.campaign_id):
            raise ValidationError(
                f"Campaign.campaign_id={self.campaign_id!r}: expected 1-64 characters of letters, digits, _.-"
            )
        for name in ("stock", "per_user_limit", "shards", "prededuct_chunk", "max_backlog"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValidationError(f"Campaign.{name}={value!r}: expected an integer")
        if self.stock <= 0:
            raise ValidationError(f"Campaign.stock={self.stock}: must be > 0")
        if self.per_user_limit < 1:
            raise ValidationError(f"Campaign.per_user_limit={self.per_user_limit}: must be >= 1")
        if not 1 <= self.shards <= 1024:
            raise ValidationError(f"Campaign.shards={self.shards}: must be in 1..1024")
        if self.shards > self.stock:
            raise ValidationError(
                f"Campaign.shards={self.shards}: more shards than stock ({self.stock})"
            )
        if self.prededuct_chunk < 0:
            raise ValidationError(f"Campaign.prededuct_chunk={self.prededuct_chunk}: must be >= 0")
        if self.max_backlog < 1:
            raise ValidationError(f"Campaign.max_backlog={self.max_backlog}: must be >= 1")
        if not isinstance(self.face_value, int | float) or not self.face_value >= 0:
            raise ValidationError(
                f"Campaign.face_value={self.face_value!r}: expected a number >= 0"
            )
        if self.cost is None:
            self.cost = float(self.face_value)
        if not isinstance(self.cost, int | float) or not self.cost >= 0:
            raise ValidationError(f"Campaign.cost={self.cost!r}: expected a number >= 0")
        if self.budget is not None and (
            not isinstance(self.budget, int | float) or not self.budget > 0
        ):
            raise ValidationError(f"Campaign.budget={self.budget!r}: must be > 0 (or None)")
        self.start = _epoch(self.start, "start")
        self.end = _epoch(self.end, "end")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValidationError(f"Campaign.end={self.end}: must be after start={self.start}")
        if self.eligibility is not None and not callable(self.eligibility):
            raise ValidationError("Campaign.eligibility: expected a callable f(user_id) -> bool")

    # -- money in integer cents, so Redis arithmetic is exact -----------------------
    @property
    def cost_cents(self) -> int:
        return round(float(self.cost) * 100)

    @property
    def budget_cents(self) -> int:
        if self.budget is None:
            return self.cost_cents * self.stock
        return round(float(self.budget) * 100)

    def shard_stock(self) -> list[int]:
        """Stock of each shard: as even as possible, the remainder on the first shards."""
        base, extra = divmod(self.stock, self.shards)
        return [base + (1 if k < extra else 0) for k in range(self.shards)]

    def shard_budget(self) -> list[int]:
        """Budget (cents) of each shard; sums to the total.

        Whole coupons' worth of budget are split like the stock, so the shards together
        can afford exactly ``min(stock, budget // cost)`` coupons; the leftover cents go
        to shard 0.
        """
        total, cost, stock = self.budget_cents, self.cost_cents, self.shard_stock()
        if cost == 0:
            return [total * s // self.stock for s in stock[:-1]] + [
                total - sum(total * s // self.stock for s in stock[:-1])
            ]
        n = min(self.stock, total // cost)
        units = [n * s // self.stock for s in stock]
        k = 0
        while sum(units) < n:  # hand out the rounding remainder where stock allows
            if units[k] < stock[k]:
                units[k] += 1
            k = (k + 1) % len(stock)
        parts = [u * cost for u in units]
        parts[0] += total - sum(parts)
        return parts

    # -- persistence ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able definition (the eligibility hook is not persisted)."""
        d = asdict(self)
        d.pop("eligibility")
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Campaign:
        known = {f for f in cls.__dataclass_fields__ if f != "eligibility"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError(f"Campaign: unknown field(s) {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Campaign:
        """Read a campaign from a YAML file with the dataclass's field names."""
        import yaml

        data = yaml.safe_load(Path(path).read_text())
        if not isinstance(data, dict):
            raise ValidationError(f"{path}: expected a mapping of Campaign fields")
        return cls.from_dict(data)
