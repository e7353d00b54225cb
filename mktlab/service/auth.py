"""Who may call what: an ASGI middleware in front of every endpoint but the probes.

A request carries its API key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``
(:mod:`mktlab.campaigns.access`); :data:`PERMISSIONS` maps each path to the action it
needs (:mod:`mktlab.campaigns.roles`). No key, or one that is not recognised or revoked,
answers 401 (with ``WWW-Authenticate: Bearer``) and the same words whichever it was; a
recognised key whose role may not take the action answers 403 naming the role, the action
and the roles that may. The probes and the docs (``/healthz``, ``/livez``, ``/readyz``,
``/metrics``, ``/docs.json``) stay open.

Every refusal, and every call that moves money or changes a campaign (``/issue``,
``/events``, the lifecycle routes), is written to the audit log through an
:class:`~mktlab.campaigns.db.AuditBuffer`; model scoring and reads are not. The
authenticated :class:`~mktlab.campaigns.roles.Principal` is left in
``scope["state"]["principal"]`` for the routes that act in its name.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mktlab.campaigns.roles import allowed, roles_for
from mktlab.errors import AuthError, ServiceUnavailableError

OPEN = ("/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/docs")
# (method, path pattern, action); the first match wins
PERMISSIONS: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"/issue/?"), "coupons.issue"),
    ("POST", re.compile(r"/events/?"), "events.send"),
    ("POST", re.compile(r"/(uplift|next_action|attribute)/?"), "models.score"),
    ("POST", re.compile(r"/campaigns/?"), "campaign.create"),
    (
        "POST",
        re.compile(
            r"/campaigns/[^/]+/(submit|approve|reject|launch|ramp|pause|resume|end|archive)/?"
        ),
        "",
    ),
    ("GET", re.compile(r"/campaigns/[^/]+(/record|/history)?/?"), "campaign.read"),
]
AUDITED = ("coupons.issue", "events.send")  # the lifecycle audits its own steps


def action_for(method: str, path: str) -> str | None:
    """The action a request needs; None for the open paths; ``"any"`` for other paths."""
    if path in OPEN or path.rstrip("/") in OPEN:
        return None
    for m, pattern, action in PERMISSIONS:
        if m == method and pattern.fullmatch(path):
            return action or f"campaign.{path.rstrip('/').rsplit('/', 1)[1]}"
    return "any"


def _key(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            v = value.decode("latin-1").strip()
            if v[:7].lower() == "bearer ":
                return v[7:].strip() or None
        elif name == b"x-api-key":
            return value.decode("latin-1").strip() or None
    return None


class AuthMiddleware:
    """ASGI middleware; see the module docstring.

    Parameters
    ----------
    app : ASGI app
    keystore : callable
        Returns the :class:`~mktlab.campaigns.access.KeyStore` (created on first request,
        so importing the service opens no database).
    audit : callable
        Returns the :class:`~mktlab.campaigns.db.AuditBuffer`.
    """

    def __init__(self, app: Any, keystore: Any, audit: Any):
        self.app, self._keystore, self._audit = app, keystore, audit

    async def _answer(self, send, status: int, message: str, kind: str) -> None:
        body = json.dumps({"error": message, "type": kind, "detail": None}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="mktlab"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        method, path = scope.get("method", "GET"), scope.get("path", "/")
        action = action_for(method, path)
        if action is None:
            return await self.app(scope, receive, send)
        store = self._keystore()
        key = _key(scope)
        try:
            principal = store.cached(key)
            if principal is None:
                import anyio

                principal = await anyio.to_thread.run_sync(
                    lambda: store.authenticate(key, where=f"{method} {path}")
                )
        except AuthError as exc:
            return await self._answer(send, 401, str(exc), "AuthError")
        except ServiceUnavailableError as exc:  # the key registry is down: say so, don't 500
            return await self._answer(send, 503, str(exc), "ServiceUnavailableError")
        if action != "any" and not allowed(principal.role, action):
            msg = f"role {principal.role!r} may not {action}; needs one of: {', '.join(roles_for(action))}"
            self._audit().add(actor=principal.actor, role=principal.role, action=action, ok=False,
                              reason=msg, detail={"where": f"{method} {path}", "key_id": principal.key_id})  # fmt: skip
            return await self._answer(send, 403, msg, "PermissionDeniedError")
        if action in AUDITED:
            self._audit().add(actor=principal.actor, role=principal.role, action=action, ok=True,
                              detail={"where": f"{method} {path}", "key_id": principal.key_id})  # fmt: skip
        scope.setdefault("state", {})["principal"] = principal
        return await self.app(scope, receive, send)
