"""In-process pieces of the service: policies, typed rows, error shapes, model tuning."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError as PydanticError

from mktlab.errors import NotFoundError, ValidationError
from mktlab.service.core import single_threaded
from mktlab.service.http import describe_validation, status_of
from mktlab.service.policy import CampaignPolicy, PolicyStore
from mktlab.service.schemas import Journey, feature_row_model


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"campaign_id": ""}, "campaign_id"),
        ({"audience": ""}, "audience"),
        ({"min_uplift": float("nan")}, "min_uplift"),
        ({"min_uplift": True}, "min_uplift"),
        ({"fatigue_max": -1}, "fatigue_max"),
        ({"fatigue_max": 1.5}, "fatigue_max"),
        ({"fatigue_per": 0}, "fatigue_per"),
        ({"fatigue_per": "soon"}, "fatigue_per"),
    ],
)
def test_bad_policies_name_the_field(kwargs, field):
    with pytest.raises(ValidationError, match=f"CampaignPolicy.{field}"):
        CampaignPolicy(**{"campaign_id": "c", **kwargs})


def test_policy_store_round_trip_and_reload(tmp_path):
    path = tmp_path / "p.json"
    a, b = PolicyStore(path), PolicyStore(path)
    assert a.get("c1") is None
    a.save(CampaignPolicy("c1", audience="vip", min_uplift=0.02))
    assert b.get("c1") == CampaignPolicy("c1", audience="vip", min_uplift=0.02)
    a.save(CampaignPolicy("c1", fatigue_max=2, fatigue_per="1d"))
    assert b.get("c1").fatigue_per == 86400
    assert b.get("c1").fatigue_max == 2
    assert b.get("c1").audience is None
    a.delete("c1")
    assert b.all() == {}
    with pytest.raises(NotFoundError, match="no policy for campaign 'c1'"):
        a.delete("c1")
    with pytest.raises(ValidationError, match="unknown field"):
        CampaignPolicy.from_dict({"campaign_id": "x", "budget": 1})


@settings(max_examples=30, deadline=None)
@given(
    cid=st.from_regex(r"[A-Za-z0-9_]{1,20}", fullmatch=True),
    audience=st.none() | st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
    min_uplift=st.none() | st.floats(-1, 1),
    fatigue=st.none() | st.integers(0, 50),
    per=st.integers(1, 10**7),
)
def test_policies_survive_the_json_file(tmp_path_factory, cid, audience, min_uplift, fatigue, per):
    path = tmp_path_factory.mktemp("pol") / "p.json"
    p = CampaignPolicy(cid, audience, min_uplift, fatigue, per)
    PolicyStore(path).save(p)
    assert PolicyStore(path).get(cid) == p


def test_feature_rows_are_typed_from_the_model_schema():
    Row = feature_row_model(
        {
            "input_columns": ["age", "city", "class", "bad-name"],
            "categorical": {"city": ["BJ", "SH"]},
        },
        "Row",
    )
    r = Row.model_validate({"age": 3, "city": "GZ", "class": 1, "bad-name": 2.5})
    assert r.model_dump(by_alias=True) == {"age": 3.0, "city": "GZ", "class": 1.0, "bad-name": 2.5}
    with pytest.raises(PydanticError) as err:
        Row.model_validate({"age": float("nan"), "city": 1, "class": 1, "bad-name": 1, "zip": 1})
    text = describe_validation(err.value.errors())
    assert "age: Input should be a finite number" in text
    assert "city: Input should be a valid string" in text
    assert "zip: Extra inputs are not permitted" in text
    free = feature_row_model(None, "Free")
    assert free.model_validate({"anything": 1}).model_dump() == {"anything": 1}


def test_journey_paths_accept_lists_and_arrows():
    assert Journey.model_validate({"path": "search > email >social"}).path == [
        "search",
        "email",
        "social",
    ]
    assert Journey.model_validate({"path": ["a"], "conversions": 2}).conversions == 2
    with pytest.raises(PydanticError):
        Journey.model_validate({"path": " "})


def test_describe_validation_locations():
    detail = [{"loc": ["rows", 0, "x"], "msg": "bad"}, {"loc": [], "msg": "worse"}]
    assert describe_validation(detail) == "rows[0].x: bad; body: worse"


def test_status_of_mktlab_errors():
    from mktlab.errors import ConfigError, ServiceUnavailableError

    assert [status_of(e) for e in (NotFoundError("x"), ServiceUnavailableError("x"), ValidationError("x"),
                                    ConfigError("x"), RuntimeError("x"))] == [404, 503, 422, 500, 500]  # fmt: skip


def test_single_threaded_reaches_nested_estimators():
    from lightgbm import LGBMClassifier

    class Holder:
        def __init__(self):
            self.models = {"a": LGBMClassifier(n_jobs=2), "b": [LGBMClassifier(n_jobs=-1)]}

    h = Holder()
    assert single_threaded(h) == 2
    assert h.models["a"].n_jobs == 1
    assert h.models["b"][0].n_jobs == 1
