"""Scoring on the synthetic world against its hidden truth."""

from __future__ import annotations

import pytest

from mktlab.identity import IdentityMap, assign_records, pairwise_scores, resolve


@pytest.mark.slow
def test_small_world_f1_and_single_valued_types(small_world):
    ids = small_world.identities
    m = resolve(ids)
    rec = assign_records(ids, m).merge(small_world.identity_truth, on="record_id", validate="1:1")
    s = pairwise_scores(rec["uid"], rec["person_id"])
    assert s["f1"] >= 0.99, s
    per = m.mapping.groupby(["uid", "id_type"]).size().unstack(fill_value=0)
    for rule in m.rules.types:
        if rule.name in per:
            assert per[rule.name].max() <= rule.max_per_person, rule.name
    assert m.report.hubs.get("device", 0) >= 1  # the world's factory-default IMEI
    assert sum(m.report.blocked.values()) > 0
    assert m.report.refused.get("single_valued:user_id", 0) > 0  # shared devices / recycled phones
    # every event row is kept, unresolved ones counted
    ev = m.attach_uid(small_world.events, warn=False)
    assert len(ev) == len(small_world.events)
    assert ev["uid"].notna().mean() > 0.9


@pytest.mark.slow
def test_incremental_world_keeps_ids(small_world):
    ids = small_world.identities
    cut = ids["ts"].quantile(0.7)
    first = resolve(ids[ids["ts"] <= cut])
    both = resolve(ids[ids["ts"] > cut], previous=first)
    full = resolve(ids)
    # the same people as a one-shot run (ids may differ, partitions should not much)
    a = assign_records(ids, both).merge(assign_records(ids, full), on="record_id")
    assert pairwise_scores(a["uid_x"], a["uid_y"])["f1"] > 0.99
    # persons untouched by new data keep their uid
    kept = first.mapping.merge(both.mapping, on=["id_type", "id_value"])
    assert (kept["uid_x"] == kept["uid_y"]).mean() > 0.95
    assert both.next_uid >= first.next_uid
    assert isinstance(both, IdentityMap)
