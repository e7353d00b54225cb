"""Typed request and response bodies of the service (pydantic; published in OpenAPI).

The feature rows of ``/uplift`` and ``/next_action`` are built from the served model's
input schema (recorded in the BentoML model store at import), so a wrong feature name or
type is refused with 422 naming it before anything reaches the model.
"""

from __future__ import annotations

import keyword
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from mktlab.coupons.campaign import CAMPAIGN_ID_RE, REQUEST_ID_RE, USER_ID_RE

CampaignId = Annotated[
    str, Field(pattern=CAMPAIGN_ID_RE.pattern, description="campaign id", examples=["spring"])
]
UserId = Annotated[
    str, Field(pattern=USER_ID_RE.pattern, description="the app's user_id", examples=["U000042"])
]
RequestId = Annotated[
    str,
    Field(
        pattern=REQUEST_ID_RE.pattern,
        description="idempotency key: a retry returns the first answer",
    ),
]

_ROW_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)
# Models score float32 features: a finite float64 beyond this range would reach them as
# infinity, so the body is refused (422 naming the field) before it is batched
FLOAT32_MAX = 3.4028234663852886e38


def feature_row_model(schema: dict[str, Any] | None, name: str) -> type[BaseModel]:
    """A pydantic model of one feature row: numeric columns as float, categoricals as str.

    Without a schema, any object of numbers and strings is accepted (the model validates).
    """
    cols = list((schema or {}).get("input_columns") or [])
    if not cols:
        return create_model(
            name,
            __config__=ConfigDict(extra="allow", allow_inf_nan=False),
            __doc__="Feature row (free-form).",
        )
    cats = dict((schema or {}).get("categorical") or {})
    fields: dict[str, Any] = {}
    for i, col in enumerate(cols):
        attr = (
            col
            if col.isidentifier() and not keyword.iskeyword(col) and not col.startswith("_")
            else f"f{i}"
        )
        if col in cats:
            levels = cats[col]
            desc = f"categorical; seen at training: {levels[:20]}" + (
                " ..." if len(levels) > 20 else ""
            )
            fields[attr] = (str, Field(alias=col, description=desc))
        else:
            fields[attr] = (
                float,
                # strict: a JSON number (int or float); true/false or "1.5" are refused
                # as the published schema says, instead of being coerced to 1.0 / 1.5
                Field(
                    alias=col, strict=True, ge=-FLOAT32_MAX, le=FLOAT32_MAX, description="numeric"
                ),
            )
    return create_model(name, __config__=_ROW_CONFIG, __doc__=f"Feature row: {cols}", **fields)


class UpliftResult(BaseModel):
    """Prediction for one row."""

    uplift: float = Field(description="predicted p1 - p0")
    p0: float | None = Field(description="outcome probability without treatment")
    p1: float | None = Field(description="outcome probability with treatment")
    quadrant: str | None = Field(description="persuadable, sure_thing, lost_cause or sleeping_dog")
    treat: bool = Field(description="uplift >= the configured threshold")
    unseen: dict[str, str] = Field(
        default_factory=dict,
        description="categorical values of this row never seen in training, column -> value "
        '(e.g. {"city": "ZZ"}); the row is still scored, as "none of the known levels". '
        "Empty when every value was seen.",
    )


class IssueContext(BaseModel):
    """Optional context of an issuance request."""

    model_config = ConfigDict(extra="allow")
    features: dict[str, float | str] | None = Field(
        default=None,
        description="the uplift model's features for this user (default: the stored profile)",
    )
    channel: str | None = None
    event: str | None = None


class RefusedEvent(BaseModel):
    index: int = Field(description="position of the event in the request")
    reason: str = Field(
        description="no_user_id, bad_timestamp, unknown_event, oversized, not_json or bad_field"
    )
    error: str


class EventsResponse(BaseModel):
    published: int
    dead_lettered: int = Field(
        description="malformed events, kept in the dead-letter store with their reason"
    )
    refused: list[RefusedEvent]


class IssueResponse(BaseModel):
    campaign_id: str
    user_id: str
    request_id: str
    status: Literal["issued", "denied"]
    reason: str | None = Field(
        description="when denied: holdout, not_in_audience, not_drawn, policy_none, low_uplift, capped, out_of_stock, budget_exhausted, "
        "duplicate (or the issuer's transient paused, not_started, expired, ledger_backlog, not_ready)"
    )
    coupon_code: str | None
    seq: int | None
    uplift: float | None
    replayed: bool = Field(description="true when this answers a retry of an earlier request_id")


class NextActionResponse(BaseModel):
    user_id: str | None
    action: str
    source: Literal["rl_policy", "fallback_rule"]
    model_version: str | None
    uplift: float | None = None
    note: str


def _split_path(value: Any) -> Any:
    # "search > email" is the analysts' notation; the model takes lists of channels
    if isinstance(value, str):
        return [part.strip() for part in value.split(">")] if value.strip() else []
    return value


class Journey(BaseModel):
    """One customer journey: the channels touched, in order, and its conversions."""

    model_config = ConfigDict(extra="forbid")
    path: Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_split_path)] = (
        Field(
            min_length=1,
            description="channels in order, as a list or joined by ' > '",
            examples=[["search", "email"]],
        )
    )
    conversions: float = Field(default=1.0, ge=0, allow_inf_nan=False, strict=True)


class AttributeResponse(BaseModel):
    credits: list[dict[str, float]] = Field(
        description="per journey: channel -> credited conversions"
    )
    totals: dict[str, float] = Field(
        description="channel -> credited conversions over all journeys"
    )
    model_version: str | None


class ErrorResponse(BaseModel):
    """The body of every error answer (4xx, 5xx)."""

    error: str = Field(description="what went wrong, naming the bad field or value")
    type: str | None = Field(
        default=None,
        description="kind of error: the mktlab error class (ValidationError, NotFoundError, "
        "ServiceUnavailableError, ...), RequestValidationError (body does not match the "
        "schema), MalformedJSON, PayloadTooLarge or InternalServerError",
    )
    detail: list[dict[str, Any]] | None = Field(
        default=None, description="for RequestValidationError / MalformedJSON: pydantic's errors"
    )


class CampaignStatus(BaseModel):
    """Counters of a campaign (``GET /campaigns/{campaign_id}``)."""

    model_config = ConfigDict(extra="allow")
    campaign_id: str
    stock: int
    issued: int
    remaining: int
    budget: float
    budget_used: float
    paused: bool
    ready: bool
    ledger_issued: int
    outbox_backlog: int
    pending: int
    strategy: dict[str, Any] | None = Field(
        default=None,
        description="the strategy that governs the campaign (name, version, audience, "
        "holdout, policy, caps), if any",
    )


class Health(BaseModel):
    """``GET /healthz``: served model versions and the state of the backing services."""

    model_config = ConfigDict(extra="allow")
    status: Literal["ok", "degraded"]
    models: dict[str, dict[str, Any] | None]
    redis: str
    endpoints: dict[str, str]
    uplift_threshold: float


class Starting(BaseModel):
    """``GET /healthz`` while the worker is still loading."""

    status: Literal["starting"]
