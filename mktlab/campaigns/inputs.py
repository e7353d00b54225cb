"""The argument checks of the lifecycle's steps, and a stored simulation from what a caller gives.

Each raises :class:`~mktlab.errors.ValidationError` (or NotFoundError for an id that cannot
be a campaign's) naming the problem; :meth:`mktlab.campaigns.lifecycle.Lifecycle._step`
runs them inside its audited block, so a refused argument is in the audit log too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from mktlab.errors import MktlabError, NotFoundError, ServiceUnavailableError, ValidationError


def check_id(campaign_id: Any) -> None:
    from mktlab.coupons.campaign import CAMPAIGN_ID_RE

    if not isinstance(campaign_id, str) or not CAMPAIGN_ID_RE.fullmatch(campaign_id):
        shown = campaign_id[:80] if isinstance(campaign_id, str) else campaign_id
        raise NotFoundError(f"campaign {shown!r}: not in the registry (not a campaign id)")


def check_text(step: str, name: str, value: Any, hint: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{step}: {hint}")
    if "\x00" in value or len(value) > 2000:
        raise ValidationError(
            f"{step}: {name} must be text of at most 2,000 characters, without NUL"
        )


def as_mktlab_error(exc: BaseException) -> MktlabError:
    """A failure that is not ours (Redis down mid-step) as the error the caller should see."""
    import redis

    if isinstance(exc, redis.RedisError | OSError):
        return ServiceUnavailableError(
            f"Redis unavailable during the step ({type(exc).__name__}: {exc})"
        )
    return MktlabError(f"{type(exc).__name__}: {exc}")


def rollout_fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValidationError(f"rollout: expected a fraction in (0, 1], got {value!r}")
    return float(value)


def simulation_of(result: Any) -> dict[str, Any]:
    """A stored simulation dict from a sandbox StrategyResult or a mapping."""
    if isinstance(result, Mapping):
        sim = dict(result)
        missing = [k for k in ("spend", "reach", "strategy_fingerprint") if k not in sim]
        if missing:
            raise ValidationError(f"simulation: missing {missing}; have {sorted(sim)}")
        spend = sim["spend"]
        if (
            isinstance(spend, bool)
            or not isinstance(spend, int | float)
            or not math.isfinite(spend)
            or spend < 0
        ):
            raise ValidationError(f"simulation.spend: expected a finite number >= 0, got {spend!r}")
    elif hasattr(result, "estimates") and hasattr(result, "strategy"):

        def val(m):
            iv = result.get(m)
            return {"value": float(iv.value), "lo": float(iv.lo), "hi": float(iv.hi)}

        sim = {"spend": val("cost")["value"], "roi": val("roi")["value"], "reach": val("treated")["value"],
               "intervals": {m: val(m) for m in ("cost", "roi", "treated", "incremental_conversions")},
               "estimator": result.preferred, "source": "sandbox.replay",
               "strategy_fingerprint": result.strategy.fingerprint()}  # fmt: skip
    else:
        raise ValidationError(
            f"simulation: expected a sandbox StrategyResult or a mapping, got {type(result).__name__}"
        )
    sim["recorded_at"] = time.time()
    return sim
