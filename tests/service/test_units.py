"""In-process pieces of the service: typed rows, error shapes, model tuning."""

from __future__ import annotations

import pytest
from pydantic import ValidationError as PydanticError

from mktlab.service.http import describe_validation, status_of
from mktlab.service.models import single_threaded
from mktlab.service.schemas import Journey, feature_row_model


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
    from mktlab.errors import ConfigError, NotFoundError, ServiceUnavailableError, ValidationError

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
