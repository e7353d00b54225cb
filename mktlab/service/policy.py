"""Per-campaign eligibility the ``/issue`` endpoint checks before the Redis issuer.

A :class:`CampaignPolicy` is data: the saved audience a user must belong to, the minimum
predicted uplift, and a frequency cap (at most ``max`` coupons per user in ``per``
seconds, across campaigns). Policies live in one JSON file
(``settings().processed_dir / "service" / "policies.json"``), written atomically; the
service re-reads it when it changes. A campaign without a policy is open to everyone,
with no uplift or fatigue check (the issuer's own limits still hold).
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mktlab.config import settings
from mktlab.errors import DataError, NotFoundError, ValidationError
from mktlab.io import write_text


@dataclass(frozen=True)
class CampaignPolicy:
    """Eligibility of one campaign.

    Parameters
    ----------
    campaign_id : str
        The issuer's campaign id.
    audience : str, optional
        Saved audience (``mktlab audience save``) the user must be in; ``None``: anyone.
    min_uplift : float, optional
        Deny with ``low_uplift`` when the uplift champion predicts less; ``None``: no check.
    fatigue_max : int, optional
        Deny with ``fatigue_cap`` when the user already received this many coupons (any
        campaign) in the last ``fatigue_per`` seconds; ``None``: no cap.
    fatigue_per : int or str
        Window of the cap: seconds or a duration like ``"1d"``, ``"1w"`` (as in
        :class:`mktlab.rules.model.FrequencyCap`; default one week). The cap has the
        rules' semantics (refused requests do not count), kept in Redis so every worker
        and restart shares it.
    """

    campaign_id: str
    audience: str | None = None
    min_uplift: float | None = None
    fatigue_max: int | None = None
    fatigue_per: int | str = 7 * 24 * 3600

    def __post_init__(self) -> None:
        if not isinstance(self.campaign_id, str) or not self.campaign_id:
            raise ValidationError(
                f"CampaignPolicy.campaign_id={self.campaign_id!r}: expected a campaign id"
            )
        if self.audience is not None and (not isinstance(self.audience, str) or not self.audience):
            raise ValidationError(
                f"CampaignPolicy.audience={self.audience!r}: expected a saved audience name"
            )
        if self.min_uplift is not None and (
            isinstance(self.min_uplift, bool)
            or not isinstance(self.min_uplift, int | float)
            or not math.isfinite(self.min_uplift)
        ):
            raise ValidationError(
                f"CampaignPolicy.min_uplift={self.min_uplift!r}: expected a finite number"
            )
        if self.fatigue_max is not None and (
            isinstance(self.fatigue_max, bool)
            or not isinstance(self.fatigue_max, int)
            or self.fatigue_max < 0
        ):
            raise ValidationError(
                f"CampaignPolicy.fatigue_max={self.fatigue_max!r}: expected an integer >= 0"
            )
        # the same durations as the rules' frequency caps ("45s", "30m", "2h", "1d", "1w")
        from mktlab.rules.model import parse_duration

        what = f"CampaignPolicy.fatigue_per={self.fatigue_per!r}"
        object.__setattr__(self, "fatigue_per", parse_duration(self.fatigue_per, what=what))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CampaignPolicy:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError(f"CampaignPolicy: unknown field(s) {unknown}")
        return cls(**data)


def default_path() -> Path:
    """``<processed_dir>/service/policies.json``."""
    return settings().processed_dir / "service" / "policies.json"


class PolicyStore:
    """Campaign policies in a JSON file; re-read when the file changes.

    Parameters
    ----------
    path : str or Path, optional
        Default :func:`default_path`.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_path()
        self._stamp: tuple[int, int] | None = None
        self._policies: dict[str, CampaignPolicy] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PolicyStore({str(self.path)!r})"

    def _read(self) -> dict[str, CampaignPolicy]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._policies = None, {}
            return self._policies
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                raw = json.loads(self.path.read_text())
                policies = {cid: CampaignPolicy.from_dict(d) for cid, d in raw.items()}
            except (OSError, ValueError, TypeError) as exc:
                raise DataError(f"campaign policies {self.path}: unreadable ({exc})") from exc
            self._stamp, self._policies = stamp, policies
        return self._policies

    def get(self, campaign_id: str) -> CampaignPolicy | None:
        """The policy of ``campaign_id`` or ``None`` (no extra eligibility)."""
        with self._lock:
            return self._read().get(campaign_id)

    def all(self) -> dict[str, CampaignPolicy]:
        with self._lock:
            return dict(self._read())

    def save(self, policy: CampaignPolicy) -> CampaignPolicy:
        """Insert or replace ``policy`` (atomic write of the whole file)."""
        if not isinstance(policy, CampaignPolicy):
            raise ValidationError(f"policy: expected a CampaignPolicy, got {type(policy).__name__}")
        with self._lock:
            policies = dict(self._read())
            policies[policy.campaign_id] = policy
            self._write(policies)
        return policy

    def delete(self, campaign_id: str) -> None:
        with self._lock:
            policies = dict(self._read())
            if campaign_id not in policies:
                raise NotFoundError(f"no policy for campaign {campaign_id!r} in {self.path}")
            del policies[campaign_id]
            self._write(policies)

    def _write(self, policies: dict[str, CampaignPolicy]) -> None:
        text = json.dumps({cid: p.to_dict() for cid, p in sorted(policies.items())}, indent=2)
        write_text(text, self.path)
        self._stamp = None
