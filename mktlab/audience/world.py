"""Build an AudienceStore from the synthetic world (profiles by user_id, raw-id events).

Profiles are keyed by ``user_id`` and events by whatever raw identifier they arrived
with, so both go through One ID first: ``resolve(world.identities)`` then
``attach_uid``. Rows without a uid (unknown, blocked or hub identifiers) are dropped
and counted; if two profile rows resolve to the same person the most recently signed
up one is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mktlab.audience.catalog import AudienceCatalog
from mktlab.audience.tagstore import AudienceStore

TIER_ORDER = ["bronze", "silver", "gold", "platinum", "diamond"]


@dataclass
class WorldAudienceInputs:
    """The uid-keyed tables the store is built from, plus what was dropped on the way."""

    profiles: pd.DataFrame
    events: pd.DataFrame
    as_of: Any
    data_range: tuple[Any, Any]
    dropped: dict[str, int] = field(default_factory=dict)


def world_inputs(world=None, identity_map=None) -> tuple[WorldAudienceInputs, Any]:
    """Resolve identities and return (uid-keyed tables, identity map).

    Parameters
    ----------
    world : mktlab.datasets.World, optional
        Default ``load_world()``.
    identity_map : mktlab.identity.IdentityMap, optional
        Default ``resolve(world.identities)``.
    """
    from mktlab.datasets import load_world
    from mktlab.identity import resolve

    world = world if world is not None else load_world()
    imap = identity_map if identity_map is not None else resolve(world.identities)
    prof = imap.attach_uid(world.profiles, id_type="user_id", id_value_col="user_id", warn=False)
    n_prof = len(prof)
    prof = prof[prof["uid"].notna()]
    unresolved_profiles = n_prof - len(prof)
    if "signup_date" in prof:
        prof = prof.sort_values("signup_date", ascending=False, kind="stable")
    dup = int(prof["uid"].duplicated().sum())
    prof = prof.drop_duplicates("uid").drop(columns=["user_id"]).sort_values("uid", kind="stable")
    prof["uid"] = prof["uid"].astype("uint32")
    if "tier" in prof:
        prof["tier"] = pd.Categorical(prof["tier"], categories=TIER_ORDER, ordered=True)
    if "signup_date" in prof:
        prof["signup_date"] = pd.to_datetime(prof["signup_date"]).dt.date
    ev = imap.attach_uid(world.events[["ts", "id_type", "id_value", "event"]], warn=False)
    n_ev = len(ev)
    ev = ev[ev["uid"].notna()]
    ev = ev.assign(uid=ev["uid"].astype("uint32"))[["uid", "ts", "event"]].reset_index(drop=True)
    first = world.events["ts"].min().date()
    last = (pd.Timestamp(world.as_of) - pd.Timedelta(microseconds=1)).date()
    inputs = WorldAudienceInputs(
        profiles=prof.reset_index(drop=True),
        events=ev,
        as_of=last,
        data_range=(first, last),
        dropped={
            "profiles_unresolved": unresolved_profiles,
            "profiles_duplicate_person": dup,
            "events_unresolved": n_ev - len(ev),
        },
    )
    return inputs, imap


def store_from_world(
    world=None,
    identity_map=None,
    *,
    catalog: AudienceCatalog | None = None,
    progress: bool = False,
    engine: str = "auto",
) -> tuple[AudienceStore, Any]:
    """Build the audience store of the world; returns ``(store, identity_map)``.

    Tags: age, age_band, gender, city, tier (ordered bronze < ... < diamond), tier_level,
    signup_date, recency_days, frequency_90d, monetary_90d; events view, cart, order,
    coupon_redeem over the world's observed period (``as_of`` = its last day).
    ``engine`` as in :meth:`AudienceStore.build` (``"local"``, ``"chdb"``, ``"clickhouse"``, ...).
    """
    inputs, imap = world_inputs(world, identity_map)
    store = AudienceStore.build(
        inputs.profiles,
        inputs.events,
        as_of=inputs.as_of,
        data_range=inputs.data_range,
        catalog=catalog,
        progress=progress,
        engine=engine,
    )
    store.dropped_rows.update(inputs.dropped)
    return store, imap
