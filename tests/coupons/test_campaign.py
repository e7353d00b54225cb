from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mktlab.coupons import Campaign
from mktlab.errors import ValidationError


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"stock": 0}, "stock"),
        ({"stock": -5}, "stock"),
        ({"stock": 2.5}, "stock"),
        ({"campaign_id": "bad id{}"}, "campaign_id"),
        ({"campaign_id": ""}, "campaign_id"),
        ({"per_user_limit": 0}, "per_user_limit"),
        ({"shards": 0}, "shards"),
        ({"shards": 20}, "shards"),
        ({"cost": -1.0}, "cost"),
        ({"budget": 0}, "budget"),
        ({"start": "2026-01-02", "end": "2026-01-01"}, "end"),
        ({"start": "not a date"}, "start"),
        ({"prededuct_chunk": -1}, "prededuct_chunk"),
    ],
)
def test_bad_campaigns_name_the_field(kwargs, field):
    args = {"campaign_id": "c1", "stock": 10, **kwargs}
    with pytest.raises(ValidationError, match=f"Campaign.{field}"):
        Campaign(**args)


def test_shard_split_is_even_and_complete():
    c = Campaign("c", stock=10, shards=4, face_value=2.0)
    assert c.shard_stock() == [3, 3, 2, 2]
    assert sum(c.shard_budget()) == 10 * 200


@settings(max_examples=200, deadline=None)
@given(
    stock=st.integers(1, 10_000),
    shards=st.integers(1, 16),
    cost=st.integers(0, 500),
    budget=st.integers(1, 2_000_000),
)
def test_budget_split_affords_exactly_what_the_total_affords(stock, shards, cost, budget):
    shards = min(shards, stock)
    c = Campaign("c", stock=stock, shards=shards, cost=cost / 100, budget=budget / 100)
    parts = c.shard_budget()
    assert sum(parts) == budget
    assert sum(c.shard_stock()) == stock
    if cost:
        affordable = sum(min(s, b // cost) for s, b in zip(c.shard_stock(), parts))
        assert affordable == min(stock, budget // cost)


def test_yaml_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "campaign_id: spring\nstock: 500\nshards: 4\nstart: '2026-03-01T00:00:00+00:00'\n"
    )
    c = Campaign.from_yaml(path)
    assert c.stock == 500
    assert c.start == pytest.approx(1772323200.0)
    assert Campaign.from_dict(c.to_dict()) == c
    path.write_text("campaign_id: spring\nstock: 5\ncolour: red\n")
    with pytest.raises(ValidationError, match="colour"):
        Campaign.from_yaml(path)
