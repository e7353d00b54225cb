"""The store built from the synthetic world, and the 02-audiences notebook."""

from __future__ import annotations

import pytest

from mktlab.audience import AudienceCatalog
from mktlab.audience.world import store_from_world, world_inputs


@pytest.mark.slow
def test_world_store_matches_pandas(small_world, tmp_path):
    store, imap = store_from_world(small_world, catalog=AudienceCatalog(tmp_path / "c.duckdb"))
    inputs, _ = world_inputs(small_world, imap)
    p = inputs.profiles
    assert store.tags["tier"].order == ("bronze", "silver", "gold", "platinum", "diamond")
    expected = set(p.uid[(p.city == "SH") & (p.age >= 30) & (p.tier_level >= 3)].tolist())
    assert set(store.evaluate('city == "SH" & age >= 30 & tier >= "gold"')) == expected
    ev = inputs.events
    last = ev.ts.max().normalize()
    orders = ev[(ev.event == "order") & (ev.ts >= last - __import__("pandas").Timedelta(days=29))]
    assert set(store.evaluate("purchased_30d")) == set(orders.uid.tolist())
    sample = store.query("active_7d").sample(3, identity_map=imap)
    assert sample.global_id.str.startswith("G").all()
    assert sum(store.dropped_rows.values()) >= 0


@pytest.mark.slow
@pytest.mark.notebooks
def test_notebook_02_audiences(small_world):
    from tests.notebook_utils import run_notebook

    results = run_notebook("02-audiences", {"SMALL": True, "N_USERS": 20_000, "SEED": 7})
    assert results["sql_agrees"] is True
    assert results["engines_agree"] is True  # local and chdb engines, same members
    assert results["n_tags"] == 10
    assert results["n_users"] > 15_000
    assert 0 < results["size_repeat_buyers"] < results["n_users"]
    assert results["size_lapsing_vip"] <= results["size_high_value"]
