"""Keeping what runs (the published state, the issuer) in step with the registry.

The registry database is the truth of a campaign's state. Redis holds the published state
every runtime gates on, and the issuer holds whether coupons can be issued. A lifecycle step
that fails after touching them, or anything written behind the lifecycle's back, can leave
them apart; :func:`heal` puts them back, and the watcher calls it on every pass.
"""

from __future__ import annotations

import logging
from typing import Any

from mktlab.errors import MktlabError


def heal(lc: Any, row: dict[str, Any]) -> bool:
    """Make the published state and the issuer agree with the registry ``row``; True if changed.

    A launched campaign's published state must be the row's (state, rollout, version),
    and its issuer paused unless it is gray or full. A campaign never launched must not
    run: a state left by a failed launch is published as its registry state, which
    every runtime refuses.
    """
    from mktlab.campaigns.rollout import ACTIVE, read_state

    cid = row["campaign_id"]
    live = read_state(lc.issuer.redis, lc.namespace, cid)
    launched = row.get("launched_version") is not None
    if live is None and not launched:
        return False
    want = (row["state"], float(row["rollout"] or 0.0), int(row["version"]))
    changed = live is None or (live["state"], live["rollout"], live["version"]) != want
    if changed:
        lc.publish_state(cid, row["state"], want[1], want[2], lc.registry.spec(cid, row["version"]).salt)
    try:
        flags = [sh.paused for sh in lc.issuer.read_shards(cid)]
    except (KeyError, MktlabError):  # no issuer campaign (a launch failed before creating it)
        return changed
    if row["state"] in ACTIVE and any(flags):
        lc.issuer.resume(cid)
        return True
    if row["state"] not in ACTIVE and not all(flags):
        lc.issuer.pause(cid)
        return True
    return changed


def restore(lc: Any, row: dict[str, Any]) -> None:
    """:func:`heal` after a failed step, best effort: the step's own error is what the caller sees.

    When Redis itself is what failed, the watcher's next pass heals instead.
    """
    try:
        heal(lc, row)
    except Exception:
        logging.getLogger("mktlab.campaigns").exception(
            "campaign %s: could not restore the published state", row["campaign_id"]
        )
