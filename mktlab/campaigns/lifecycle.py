"""The campaign lifecycle: a state machine whose every step is checked, permitted and audited.

::

    draft ─submit─▶ in_review ─approve (enough)─▶ approved ─launch─▶ scheduled ─(window opens)─▶ gray
      ▲                 │                                     └──────launch──────────────────▶ gray / full
      └─────reject──────┘          gray ─ramp─▶ gray (more) / full;  gray, full ─pause─▶ paused ─resume─▶ (back)
                                   scheduled, gray, full, paused ─end─▶ ended ─archive─▶ archived

Each method takes the acting :class:`~mktlab.campaigns.roles.Principal`; a step is refused
when the role may not take it (:class:`~mktlab.errors.PermissionDeniedError`), when the
campaign is not in a state it starts from (:class:`~mktlab.errors.ConflictError` naming
both), or when a check of :mod:`mktlab.campaigns.checks` finds problems
(:class:`~mktlab.campaigns.checks.CampaignRefused` listing them). A refused step changes
nothing and is audited; a taken one is audited in the same transaction as the change.
Two concurrent steps on one campaign cannot both win: the row is updated only if its
``row_version`` is still the one read.

Launching makes the campaign real: the strategy goes into the
:class:`~mktlab.strategy.StrategyCatalog` (what the live workers and ``/issue`` run), the
issuer's coupon campaign is created with the stock and budget, and the state is
published to Redis (:mod:`mktlab.campaigns.rollout`) for every runtime to gate on.
Pausing pauses the issuer and publishes ``paused``; resuming undoes both.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from mktlab.campaigns import checks
from mktlab.campaigns import db as tables
from mktlab.campaigns.checks import CampaignRefused, CampaignSettings, Problem
from mktlab.campaigns.db import CampaignDB
from mktlab.campaigns.inputs import (
    as_mktlab_error,
    check_id,
    check_text,
    rollout_fraction,
    simulation_of,
)
from mktlab.campaigns.registry import Registry
from mktlab.campaigns.roles import Principal, require
from mktlab.campaigns.rollout import publish_state
from mktlab.campaigns.spec import CampaignSpec, coerce
from mktlab.campaigns.sync import heal, restore
from mktlab.errors import (
    ConflictError,
    MktlabError,
    ValidationError,
)

STATES = (
    "draft",
    "in_review",
    "approved",
    "scheduled",
    "gray",
    "full",
    "paused",
    "ended",
    "archived",
)
RUNNING = ("gray", "full", "paused")
# step -> states it may start from
FROM = {
    "update": ("draft",),
    "submit": ("draft",),
    "reject": ("in_review",),
    "approve": ("in_review",),
    "simulate": ("draft", "in_review", "approved"),
    "launch": ("approved",),
    "start": ("scheduled",),
    "ramp": ("gray",),
    "pause": ("gray", "full"),
    "resume": ("paused",),
    "end": ("scheduled", "gray", "full", "paused"),
    "archive": ("ended",),
}
PERMISSION = {"update": "campaign.update", "start": "campaign.launch"}


class Lifecycle:
    """Campaigns from draft to archive (see the module docstring).

    Parameters
    ----------
    db : CampaignDB, optional
        Default: ``CampaignDB()`` (``MKTLAB_DB_URL`` or SQLite under ``data/processed``).
    issuer : CouponIssuer, optional
        The Redis coupon issuer launch creates campaigns in (default: connected on first
        launch, namespace ``namespace``).
    catalog : StrategyCatalog, optional
        Where launched strategies are saved (default: the workspace's).
    audiences : optional
        Saved audiences for the unknown-audience and overlap checks (mapping, SavedAudiences
        or AudienceCatalog; default: the workspace's AudienceCatalog).
    settings : CampaignSettings, optional
    namespace : str
        Redis key prefix of the issuer and of the published states (the service's).
    """

    def __init__(
        self,
        db: CampaignDB | None = None,
        *,
        issuer: Any = None,
        catalog: Any = None,
        audiences: Any = None,
        settings: CampaignSettings | None = None,
        namespace: str = "mktlab:cp",
    ):
        self.db = db if db is not None else CampaignDB()
        self.registry = Registry(self.db)
        self.settings = settings or CampaignSettings()
        self.namespace = namespace
        self._issuer = issuer
        self._catalog = catalog
        self._audiences = audiences

    # -- collaborators, connected on first use ------------------------------------------
    @property
    def issuer(self) -> Any:
        if self._issuer is None:
            from mktlab.coupons import CouponIssuer

            self._issuer = CouponIssuer(namespace=self.namespace)
        return self._issuer

    @property
    def catalog(self) -> Any:
        if self._catalog is None:
            from mktlab.strategy import StrategyCatalog

            self._catalog = StrategyCatalog()
        return self._catalog

    @property
    def audiences(self) -> Any:
        if self._audiences is None:
            from mktlab.audience.catalog import AudienceCatalog

            self._audiences = AudienceCatalog()
        return self._audiences

    # -- reads ----------------------------------------------------------------------------
    def get(self, campaign_id: str) -> dict[str, Any]:
        """The campaign's row plus ``spec`` (current version), ``approvals`` and ``simulation``."""
        row = self.registry.row(campaign_id)
        v = self.registry.version(campaign_id, row["version"])
        return {
            **row,
            "spec": v["spec"],
            "simulation": v["simulation"],
            "approvals": self.approvers(campaign_id, row["version"]),
        }

    def list(self, state: str | None = None) -> list[dict[str, Any]]:
        if state is not None and state not in STATES:
            raise ValidationError(f"state={state!r}: expected one of {STATES}")
        return self.registry.rows(None if state is None else (state,))

    def running(self) -> list[dict[str, Any]]:
        """Launched campaigns not yet ended (gray, full, paused), with their ``spec``."""
        return self.registry.rows(RUNNING, with_spec=True)

    def history(self, campaign_id: str):
        """The campaign's audit trail (every attempt, taken or refused), oldest first."""
        return self.db.audit_log(campaign_id)

    def launched_at(self, campaign_id: str) -> float | None:
        """When the campaign was last launched (or its window opened), from the audit log."""
        import sqlalchemy as sa

        t = tables.audit
        q = sa.select(sa.func.max(t.c.ts)).where(
            t.c.campaign_id == campaign_id, t.c.ok.is_(True), t.c.to_state.in_(("gray", "full")),
            t.c.from_state.in_(("approved", "scheduled")))  # fmt: skip
        with self.db.connect() as c:
            return c.execute(q).scalar()

    def versions(self, campaign_id: str) -> list[dict[str, Any]]:
        return self.registry.versions(campaign_id)

    def approvers(self, campaign_id: str, version: int, conn: Any = None) -> list[str]:
        """Who approved ``version`` (sorted); inside ``conn``'s transaction when given."""
        import sqlalchemy as sa

        t = tables.approvals
        q = sa.select(t.c.approver).where(t.c.campaign_id == campaign_id, t.c.version == version)
        if conn is not None:
            return sorted(conn.execute(q).scalars())
        with self.db.connect() as c:
            return sorted(c.execute(q).scalars())

    # -- the machinery of a step ----------------------------------------------------------
    def _step(
        self,
        step: str,
        campaign_id: str,
        by: Principal,
        act,
        *,
        detail: dict | None = None,
        check: Any = None,
    ) -> dict[str, Any]:
        """Check, permit, lock, act, audit.

        ``check()`` validates the arguments; ``act(conn, row) -> (to_state or None,
        changes, info)`` runs in the transaction with the campaign's row locked
        (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's write transaction is exclusive
        already), so two steps on one campaign run one after the other and the second
        sees the first's state. Every attempt is audited, taken or refused, whatever
        failed. A step that changed the published state or the issuer and then failed
        (the database refused the update, Redis went away mid-step) is compensated: the
        published state and the issuer are put back to the row as it was.
        """
        action = PERMISSION.get(step, f"campaign.{step}")
        row: dict[str, Any] | None = None
        acted = False
        try:
            require(by, action)
            if check is not None:
                check()
            check_id(campaign_id)
            with self.db.begin() as conn:
                row = self.registry.row(campaign_id, conn, for_update=True)
                if row["state"] not in FROM[step]:
                    raise ConflictError(
                        f"campaign {campaign_id!r}: cannot {step} while {row['state']}; "
                        f"{step} starts from {' or '.join(FROM[step])}"
                    )
                acted = True
                to, changes, info = act(conn, row)
                new = self.registry.move(conn, row, **changes) if changes else row
                self.db.audit(
                    actor=by.actor, role=by.role, action=action, ok=True, campaign_id=campaign_id,
                    version=new["version"], from_state=row["state"], to_state=to or row["state"],
                    reason=str(changes.get("state_reason", "")), detail={**(detail or {}), **(info or {})}, conn=conn,
                )  # fmt: skip
        except Exception as exc:
            err = exc if isinstance(exc, MktlabError) else as_mktlab_error(exc)
            if acted and row is not None:
                restore(self, row)
            self.db.audit(
                actor=getattr(by, "actor", "anonymous") or "anonymous", role=getattr(by, "role", None),
                action=action, ok=False, campaign_id=campaign_id[:64] if isinstance(campaign_id, str) else None,
                version=None if row is None else row["version"],
                from_state=None if row is None else row["state"], reason=str(err), detail=detail,
            )  # fmt: skip
            if err is exc:
                raise
            raise err from exc
        return self.get(campaign_id)

    def heal(self, row: dict[str, Any]) -> bool:
        """Make the published state and the issuer agree with the registry ``row``; True if changed.

        See :func:`mktlab.campaigns.sync.heal`.
        """
        return heal(self, row)

    def _running_specs(self, conn) -> list[CampaignSpec]:
        import sqlalchemy as sa

        t = tables.campaigns
        ids = conn.execute(
            sa.select(t.c.campaign_id, t.c.version).where(t.c.state.in_((*RUNNING, "scheduled")))
        )
        return [self.registry.spec(cid, v, conn) for cid, v in ids.all()]

    def _refuse_if(self, campaign_id: str, step: str, problems: list[Problem]) -> None:
        if problems:
            raise CampaignRefused(campaign_id, step, problems)

    # -- steps ------------------------------------------------------------------------------
    def create(self, spec: Any, by: Principal, *, why: str = "") -> dict[str, Any]:
        """Register a new campaign as a draft (version 1)."""
        action = "campaign.create"
        cid = (
            spec.get("campaign_id")
            if isinstance(spec, Mapping)
            else getattr(spec, "campaign_id", None)
        )
        try:
            require(by, action)
            s = spec if isinstance(spec, CampaignSpec) else coerce(spec)
            cid = s.campaign_id
            self._refuse_if(
                cid, "create", checks.check_definition(s, self.settings, audiences=self.audiences)
            )
            with self.db.begin() as conn:
                self.registry.insert(conn, s, owner=by.actor, state="draft", why=why)
                self.db.audit(actor=by.actor, role=by.role, action=action, ok=True, campaign_id=cid,
                              version=1, to_state="draft", reason=why, conn=conn)  # fmt: skip
        except MktlabError as exc:
            self.db.audit(actor=getattr(by, "actor", "anonymous"), role=getattr(by, "role", None), action=action,
                          ok=False, campaign_id=cid if isinstance(cid, str) else None, reason=str(exc))  # fmt: skip
            raise
        return self.get(cid)

    def update(
        self, campaign_id: str, spec: Any, by: Principal, *, why: str = ""
    ) -> dict[str, Any]:
        """Store a changed definition as the next version (drafts only; approvals start over)."""

        def act(conn, row):
            s = coerce(spec)
            self._refuse_if(
                campaign_id,
                "update",
                checks.check_definition(s, self.settings, audiences=self.audiences),
            )
            s, changes = self.registry.add_version(conn, row, s, author=by.actor, why=why)
            return None, {"version": row["version"] + 1, "name": s.name}, {"diff": changes}

        return self._step("update", campaign_id, by, act, detail={"why": why} if why else None)

    def submit(self, campaign_id: str, by: Principal) -> dict[str, Any]:
        """Draft → in review (the definition checks run again)."""

        def act(conn, row):
            s = self.registry.spec(campaign_id, row["version"], conn)
            self._refuse_if(
                campaign_id,
                "submit",
                checks.check_definition(s, self.settings, audiences=self.audiences),
            )
            return "in_review", {"state": "in_review", "state_reason": ""}, {}

        return self._step("submit", campaign_id, by, act)

    def reject(self, campaign_id: str, by: Principal, why: str) -> dict[str, Any]:
        """In review → draft, with the reason."""

        def act(conn, row):
            if row["owner"] == by.actor:
                raise CampaignRefused(
                    campaign_id,
                    "reject",
                    [Problem("approvals", "the owner cannot review their own campaign")],
                )
            return "draft", {"state": "draft", "state_reason": f"rejected by {by.actor}: {why}"}, {}

        return self._step("reject", campaign_id, by, act, detail={"why": why},
                          check=lambda: check_text("reject", "why", why, "say why (the author reads it)"))  # fmt: skip

    def approve(self, campaign_id: str, by: Principal, *, note: str = "") -> dict[str, Any]:
        """Record an approval of the current version; enough distinct approvers → approved."""

        def act(conn, row):
            import sqlalchemy as sa

            if row["owner"] == by.actor:
                raise CampaignRefused(
                    campaign_id,
                    "approve",
                    [Problem("approvals", f"{by.actor!r} owns the campaign and cannot approve it")],
                )
            author = self.registry.version(campaign_id, row["version"], conn).get("author")
            if author == by.actor:  # four eyes on every version, whoever wrote it
                raise CampaignRefused(campaign_id, "approve", [Problem(
                    "approvals", f"{by.actor!r} wrote version {row['version']} and cannot approve it")])  # fmt: skip
            s = self.registry.spec(campaign_id, row["version"], conn)
            self._refuse_if(campaign_id, "approve", checks.check_definition(s, self.settings, audiences=self.audiences)
                            + checks.check_overlap(s, self._running_specs(conn), audiences=self.audiences))  # fmt: skip
            t = tables.approvals
            have = set(
                conn.execute(
                    sa.select(t.c.approver).where(
                        t.c.campaign_id == campaign_id, t.c.version == row["version"]
                    )
                ).scalars()
            )
            if by.actor in have:
                raise ConflictError(
                    f"campaign {campaign_id!r}: {by.actor!r} approved version {row['version']} already"
                )
            conn.execute(
                t.insert().values(
                    campaign_id=campaign_id,
                    version=row["version"],
                    approver=by.actor,
                    ts=time.time(),
                    note=note,
                )
            )
            have.add(by.actor)
            need = checks.required_approvals(s, self.settings)
            info = {"approvals": sorted(have), "needed": need}
            if len(have - {row["owner"]}) >= need:
                return "approved", {"state": "approved", "state_reason": ""}, info
            return None, {"state_reason": f"{len(have)} of {need} approvals"}, info

        return self._step("approve", campaign_id, by, act, detail={"note": note} if note else None)

    def record_simulation(self, campaign_id: str, by: Principal, result: Any) -> dict[str, Any]:
        """Store a sandbox prediction (spend, ROI, reach) with the current version.

        ``result`` is a :class:`mktlab.sandbox.replay.StrategyResult` of this version's
        strategy, or a mapping with ``spend``, ``roi``, ``reach`` and
        ``strategy_fingerprint``.
        """
        sim: dict[str, Any] = {}

        def check():
            sim.update(simulation_of(result))

        def act(conn, row):
            s = self.registry.spec(campaign_id, row["version"], conn)
            if sim.get("strategy_fingerprint") != s.strategy.fingerprint():
                raise CampaignRefused(campaign_id, "simulate", [Problem(
                    "simulation", f"the result is of another strategy definition; simulate version {row['version']}'s "
                    "strategy (lifecycle.strategy(campaign_id))")])  # fmt: skip
            self.registry.attach_simulation(conn, campaign_id, row["version"], sim)
            return None, {}, {"simulation": sim}

        return self._step("simulate", campaign_id, by, act, check=check)

    def simulate(
        self, campaign_id: str, by: Principal, events, context, **kwargs: Any
    ) -> dict[str, Any]:
        """Run the current version's strategy over ``events`` (:func:`mktlab.strategy.simulate`) and store it."""
        from mktlab.strategy import simulate

        s = self.strategy(campaign_id)
        run = simulate(s, events, context, **kwargs)
        fx = run.effects
        coupons = sum(e.kind == "coupon" for e in fx)
        messages = sum(e.kind == "message" for e in fx)
        spend = coupons * s.coupon.face_value + (coupons + messages) * s.coupon.send_cost
        uplift = (
            [context.uplift(u) for u in {e.user_id for e in fx}]
            if hasattr(context, "uplift")
            else []
        )
        incr = float(sum(u for u in uplift if u is not None))
        sim = {"spend": float(spend), "reach": len({e.user_id for e in fx}), "coupons": int(coupons),
               "messages": int(messages), "incremental_conversions": incr, "roi": None,
               "strategy_fingerprint": s.fingerprint(), "source": "strategy.simulate", "events": len(events)}  # fmt: skip
        return self.record_simulation(campaign_id, by, sim)

    def strategy(self, campaign_id: str, version: int | None = None):
        """The :class:`~mktlab.strategy.Strategy` of a version (the one a simulation must replay)."""
        return self.registry.spec(campaign_id, version).strategy

    def launch(
        self, campaign_id: str, by: Principal, *, rollout: float = 0.05, now: float | None = None
    ) -> dict[str, Any]:
        """Approved → gray (``rollout`` of the traffic; 1 = full), or scheduled before the window."""
        now = time.time() if now is None else now

        def act(conn, row):
            v = self.registry.version(campaign_id, row["version"], conn)
            s = CampaignSpec.from_dict(v["spec"])
            problems = (checks.check_approvals(s, row["owner"], self.approvers(campaign_id, row["version"], conn), self.settings)
                        + checks.check_simulation(s, v["simulation"], self.settings)
                        + checks.check_overlap(s, self._running_specs(conn), audiences=self.audiences))  # fmt: skip
            if now >= s.end:
                problems.append(
                    Problem("window", f"the window ended at {s.end}; nothing to launch")
                )
            self._refuse_if(campaign_id, "launch", problems)
            to = "scheduled" if now < s.start else ("full" if rollout >= 1 else "gray")
            self._make_real(s, row["version"], to, rollout)
            return to, {"state": to, "rollout": rollout, "launched_version": row["version"], "state_reason": ""}, {
                "rollout": rollout, "simulation": v["simulation"]}  # fmt: skip

        return self._step("launch", campaign_id, by, act, detail={"rollout": rollout},
                          check=lambda: rollout_fraction(rollout))  # fmt: skip

    def _make_real(self, s: CampaignSpec, version: int, state: str, rollout: float) -> None:
        """Strategy into the catalog, the issuer's campaign, the published state."""

        # the state first: a strategy in the catalog whose campaign has no published state
        # would run ungated. If what follows fails, _step's compensation publishes the
        # registry's state (approved: refused by every runtime) and pauses the issuer.
        self.publish_state(s.campaign_id, state, rollout, version, s.salt)
        self._issue_and_save(s)

    def _issue_and_save(self, s: CampaignSpec) -> None:
        from mktlab.coupons.campaign import Campaign

        self.issuer.create_campaign(Campaign(
            campaign_id=s.campaign_id, stock=s.stock, face_value=s.face_value, budget=s.max_spend,
            per_user_limit=s.per_user_limit, start=s.start, end=s.end))  # fmt: skip
        if any(sh.paused for sh in self.issuer.read_shards(s.campaign_id)):
            self.issuer.resume(s.campaign_id)  # paused by the compensation of a failed launch
        self.catalog.save(s.strategy, replace=True)

    def publish_state(self, campaign_id: str, state: str, rollout: float, version: int, salt: str) -> None:
        """Tell the gates (live workers, ``/issue``) a campaign's state; ``sync.heal`` repairs through it."""
        publish_state(
            self.issuer.redis,
            self.namespace,
            campaign_id,
            state=state,
            rollout=rollout,
            version=version,
            salt=salt,
        )

    def ramp(self, campaign_id: str, by: Principal, rollout: float) -> dict[str, Any]:
        """Widen a gray launch to ``rollout`` (only up: ramping never switches anyone's arm)."""

        def act(conn, row):
            if rollout <= row["rollout"]:
                raise CampaignRefused(campaign_id, "ramp", [Problem(
                    "rollout", f"{rollout:.0%} is not above the current {row['rollout']:.0%}; ramping only adds users "
                    "(pause the campaign to stop it)")])  # fmt: skip
            to = "full" if rollout >= 1 else "gray"
            s = self.registry.spec(campaign_id, row["version"], conn)
            self.publish_state(campaign_id, to, rollout, row["version"], s.salt)
            return (
                to,
                {"state": to, "rollout": rollout},
                {"from_rollout": row["rollout"], "rollout": rollout},
            )

        return self._step("ramp", campaign_id, by, act, detail={"rollout": rollout},
                          check=lambda: rollout_fraction(rollout))  # fmt: skip

    def pause(
        self, campaign_id: str, by: Principal, *, reason: str, detail: dict | None = None
    ) -> dict[str, Any]:
        """Gray / full → paused: the issuer stops at once, every runtime within a second."""

        def act(conn, row):
            s = self.registry.spec(campaign_id, row["version"], conn)
            self.issuer.pause(campaign_id)
            self.publish_state(campaign_id, "paused", row["rollout"], row["version"], s.salt)
            return (
                "paused",
                {"state": "paused", "paused_from": row["state"], "state_reason": reason},
                {},
            )

        return self._step(
            "pause",
            campaign_id,
            by,
            act,
            detail={"reason": reason, **(detail or {})},
            check=lambda: check_text("pause", "reason", reason, "give a reason"),
        )

    def resume(self, campaign_id: str, by: Principal) -> dict[str, Any]:
        """Paused → the state it was paused from (overlap checked again)."""

        def act(conn, row):
            s = self.registry.spec(campaign_id, row["version"], conn)
            others = [o for o in self._running_specs(conn) if o.campaign_id != campaign_id]
            self._refuse_if(
                campaign_id, "resume", checks.check_overlap(s, others, audiences=self.audiences)
            )
            to = row["paused_from"] or "gray"
            self.issuer.resume(campaign_id)
            self.publish_state(campaign_id, to, row["rollout"], row["version"], s.salt)
            return to, {"state": to, "paused_from": None, "state_reason": ""}, {}

        return self._step("resume", campaign_id, by, act)

    def end(self, campaign_id: str, by: Principal, *, why: str = "") -> dict[str, Any]:
        """Stop for good: the issuer is paused and the state published as ended."""

        def act(conn, row):
            s = self.registry.spec(campaign_id, row["version"], conn)
            self.issuer.pause(campaign_id)
            self.publish_state(campaign_id, "ended", row["rollout"], row["version"], s.salt)
            return "ended", {"state": "ended", "state_reason": why}, {}

        return self._step("end", campaign_id, by, act, detail={"why": why} if why else None)

    def archive(self, campaign_id: str, by: Principal) -> dict[str, Any]:
        return self._step(
            "archive", campaign_id, by, lambda conn, row: ("archived", {"state": "archived"}, {})
        )

    def advance(self, by: Principal, now: float | None = None) -> list[dict[str, Any]]:
        """Move scheduled campaigns whose window opened to gray, and end those whose window closed."""
        now = time.time() if now is None else now
        out = []
        for row in self.registry.rows(("scheduled", *RUNNING), with_spec=True):
            s = CampaignSpec.from_dict(row["spec"])
            try:
                if now >= s.end:
                    out.append(self.end(row["campaign_id"], by, why="window closed"))
                elif row["state"] == "scheduled" and now >= s.start:
                    to = "full" if row["rollout"] >= 1 else "gray"

                    def act(conn, r, to=to, s=s):
                        self.publish_state(r["campaign_id"], to, r["rollout"], r["version"], s.salt)
                        return to, {"state": to}, {}

                    out.append(self._step("start", row["campaign_id"], by, act))
            except MktlabError:  # moved meanwhile (someone ended it): audited; the others go on
                continue
        return out
