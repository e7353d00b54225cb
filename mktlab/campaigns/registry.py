"""Campaign records and their versions: every change is a new version with its diff.

:class:`Registry` reads and writes the ``campaigns`` and ``campaign_versions`` tables of
:class:`~mktlab.campaigns.db.CampaignDB`. It knows nothing of states or permissions
(that is :mod:`mktlab.campaigns.lifecycle`); it guarantees that a stored version is never
changed (only its simulation is attached once), that version numbers count up from 1,
and that the strategy stored with campaign version *n* carries version *n* too, so the
live loop's decision keys (``<strategy>:v<n>``) say which campaign version decided.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from mktlab.campaigns import db as tables
from mktlab.campaigns.db import CampaignDB, dumps
from mktlab.campaigns.spec import CampaignSpec, coerce, diff
from mktlab.errors import ConflictError, NotFoundError, ValidationError


def _row(r: Any) -> dict[str, Any]:
    return dict(r._mapping)


class Registry:
    """Campaigns and versions in ``db`` (see the module docstring)."""

    def __init__(self, db: CampaignDB):
        self.db = db

    # -- reads --------------------------------------------------------------------------
    def row(
        self, campaign_id: str, conn: sa.Connection | None = None, *, for_update: bool = False
    ) -> dict[str, Any]:
        """The campaign's row (state, version, rollout, ...); NotFoundError names it.

        ``for_update`` locks the row until ``conn``'s transaction ends (PostgreSQL; SQLite's
        write transactions are exclusive already).
        """
        q = sa.select(tables.campaigns).where(tables.campaigns.c.campaign_id == campaign_id)
        if for_update:
            q = q.with_for_update()
        if conn is None:
            with self.db.connect() as c:
                r = c.execute(q).first()
        else:
            r = conn.execute(q).first()
        if r is None:
            raise NotFoundError(f"campaign {campaign_id!r}: not in the registry ({self.db!r})")
        return _row(r)

    def version(
        self, campaign_id: str, version: int | None = None, conn: sa.Connection | None = None
    ) -> dict[str, Any]:
        """One stored version: ``spec`` (dict), ``diff``, ``author``, ``simulation`` ..."""
        v = self.row(campaign_id, conn)["version"] if version is None else int(version)
        t = tables.campaign_versions
        q = sa.select(t).where(t.c.campaign_id == campaign_id, t.c.version == v)
        if conn is None:
            with self.db.connect() as c:
                r = c.execute(q).first()
        else:
            r = conn.execute(q).first()
        if r is None:
            raise NotFoundError(f"campaign {campaign_id!r}: no version {v}")
        return self._decode(_row(r))

    @staticmethod
    def _decode(d: dict[str, Any]) -> dict[str, Any]:
        d["spec"] = json.loads(d["spec"])
        d["diff"] = json.loads(d["diff"])
        d["simulation"] = json.loads(d["simulation"]) if d["simulation"] else None
        return d

    def spec(
        self, campaign_id: str, version: int | None = None, conn: sa.Connection | None = None
    ) -> CampaignSpec:
        return CampaignSpec.from_dict(self.version(campaign_id, version, conn)["spec"])

    def versions(self, campaign_id: str) -> list[dict[str, Any]]:
        """Every version, oldest first."""
        self.row(campaign_id)
        t = tables.campaign_versions
        with self.db.connect() as c:
            rows = c.execute(
                sa.select(t).where(t.c.campaign_id == campaign_id).order_by(t.c.version)
            )
            return [self._decode(_row(r)) for r in rows]

    def rows(
        self, states: tuple[str, ...] | None = None, *, with_spec: bool = False
    ) -> list[dict[str, Any]]:
        """Campaign rows (in ``states``), oldest first; ``with_spec`` adds the current version's spec.

        One query either way (the spec by a join on the current version).
        """
        c_, v_ = tables.campaigns, tables.campaign_versions
        if with_spec:
            q = sa.select(c_, v_.c.spec.label("_spec")).join(
                v_, sa.and_(v_.c.campaign_id == c_.c.campaign_id, v_.c.version == c_.c.version)
            )
        else:
            q = sa.select(c_)
        q = q.order_by(c_.c.created_at)
        if states is not None:
            q = q.where(c_.c.state.in_(states))
        with self.db.connect() as c:
            out = [_row(r) for r in c.execute(q)]
        for d in out:
            if with_spec:
                d["spec"] = json.loads(d.pop("_spec"))
        return out

    # -- writes (inside the caller's transaction) ----------------------------------------
    @staticmethod
    def pin(spec: CampaignSpec, version: int) -> CampaignSpec:
        """``spec`` with its strategy's version set to the campaign's ``version``."""
        return replace(spec, strategy=replace(spec.strategy, version=int(version)))

    def insert(
        self, conn: sa.Connection, spec: Any, *, owner: str, state: str, why: str = ""
    ) -> CampaignSpec:
        spec = self.pin(coerce(spec), 1)
        now = time.time()
        exists = conn.execute(
            sa.select(tables.campaigns.c.campaign_id).where(
                tables.campaigns.c.campaign_id == spec.campaign_id
            )
        ).first()
        if exists is not None:
            raise ConflictError(f"campaign {spec.campaign_id!r}: exists already; update it instead")
        conn.execute(
            tables.campaigns.insert().values(
                campaign_id=spec.campaign_id, name=spec.name, owner=owner, state=state, version=1,
                rollout=0.0, row_version=1, created_at=now, updated_at=now, state_reason="",
            )
        )  # fmt: skip
        self._insert_version(conn, spec, 1, diff(None, spec.to_dict()), owner, why)
        return spec

    def _insert_version(
        self, conn, spec: CampaignSpec, version: int, changes: dict, author: str, why: str
    ) -> None:
        new = spec.to_dict()
        conn.execute(
            tables.campaign_versions.insert().values(
                campaign_id=spec.campaign_id, version=version, spec=dumps(new), diff=dumps(changes),
                author=author, created_at=time.time(), why=why, simulation=None,
            )
        )  # fmt: skip

    def add_version(
        self, conn: sa.Connection, row: dict[str, Any], spec: Any, *, author: str, why: str = ""
    ) -> tuple[CampaignSpec, dict]:
        """Store ``spec`` as the next version of ``row``'s campaign; return it and its diff."""
        spec = coerce(spec)
        if spec.campaign_id != row["campaign_id"]:
            raise ValidationError(
                f"campaign.campaign_id={spec.campaign_id!r}: updating campaign {row['campaign_id']!r}"
            )
        old = self.version(row["campaign_id"], row["version"], conn)["spec"]
        version = row["version"] + 1
        spec = self.pin(spec, version)
        changes = diff(self.pin(CampaignSpec.from_dict(old), version).to_dict(), spec.to_dict())
        if not changes:
            raise ValidationError(
                f"campaign {row['campaign_id']!r}: the new definition equals version {row['version']}"
            )
        self._insert_version(conn, spec, version, changes, author, why)
        return spec, changes

    def attach_simulation(
        self, conn: sa.Connection, campaign_id: str, version: int, simulation: dict
    ) -> None:
        t = tables.campaign_versions
        conn.execute(
            t.update()
            .where(t.c.campaign_id == campaign_id, t.c.version == version)
            .values(simulation=dumps(simulation))
        )

    @staticmethod
    def move(conn: sa.Connection, row: dict[str, Any], **values: Any) -> dict[str, Any]:
        """Update ``row`` if nobody changed it since it was read (else ConflictError)."""
        t = tables.campaigns
        values = {**values, "row_version": row["row_version"] + 1, "updated_at": time.time()}
        res = conn.execute(
            t.update()
            .where(t.c.campaign_id == row["campaign_id"], t.c.row_version == row["row_version"])
            .values(**values)
        )
        if res.rowcount != 1:
            raise ConflictError(
                f"campaign {row['campaign_id']!r}: changed by someone else meanwhile; read it again and retry"
            )
        return {**row, **values}
