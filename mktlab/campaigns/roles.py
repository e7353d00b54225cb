"""Who may do what: roles, the actions each may take, and the acting principal.

Every call that moves money or changes a campaign names a :class:`Principal` (who, in
which role) and is checked with :func:`require` before anything changes. Roles:

- ``app`` — an application client: send events, request coupons, score models;
- ``operator`` — create, configure, simulate, launch, ramp, pause, resume, end, archive;
- ``approver`` — approve or reject campaigns in review;
- ``analyst`` — read campaigns and their reports (read only);
- ``admin`` — everything, including managing API keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from mktlab.errors import PermissionDeniedError, ValidationError

ROLES = ("app", "operator", "approver", "analyst", "admin")

_READ = {"campaign.read", "campaign.report", "models.score"}
PERMISSIONS: dict[str, frozenset[str]] = {
    "app": frozenset({"events.send", "coupons.issue", "models.score"}),
    "operator": frozenset(
        {
            "campaign.create",
            "campaign.update",
            "campaign.submit",
            "campaign.simulate",
            "campaign.launch",
            "campaign.ramp",
            "campaign.pause",
            "campaign.resume",
            "campaign.end",
            "campaign.archive",
        }
        | _READ
    ),
    "approver": frozenset({"campaign.approve", "campaign.reject"} | _READ),
    "analyst": frozenset(_READ),
}
ACTIONS = frozenset().union(*PERMISSIONS.values()) | {"keys.manage"}
PERMISSIONS["admin"] = frozenset(ACTIONS)


@dataclass(frozen=True)
class Principal:
    """Who acts: ``actor`` (a person's or key's name), ``role``, and the API key used."""

    actor: str
    role: str
    key_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.actor, str) or not self.actor.strip():
            raise ValidationError(f"principal.actor: expected a name, got {self.actor!r}")
        if self.role not in ROLES:
            raise ValidationError(f"principal.role={self.role!r}: expected one of {ROLES}")


SYSTEM = Principal("system:watch", "admin")  # the breakers pause campaigns as this


def allowed(role: str, action: str) -> bool:
    """True when ``role`` may take ``action``."""
    return action in PERMISSIONS.get(role, ())


def roles_for(action: str) -> list[str]:
    """The roles that may take ``action``."""
    return [r for r in ROLES if action in PERMISSIONS[r]]


def require(principal: Principal, action: str) -> None:
    """Raise :class:`PermissionDeniedError` unless ``principal`` may take ``action``."""
    if action not in ACTIONS:
        raise ValidationError(f"unknown action {action!r}; known: {sorted(ACTIONS)}")
    if not isinstance(principal, Principal):
        raise PermissionDeniedError(f"{action} needs credentials (a Principal); got none")
    if not allowed(principal.role, action):
        raise PermissionDeniedError(
            f"role {principal.role!r} may not {action}; needs one of: {', '.join(roles_for(action))}"
        )
