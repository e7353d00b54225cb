"""A channel the fitted attribution never saw is named, never silently credited nothing."""

from __future__ import annotations

import pandas as pd
import pytest

from mktlab.attribution import AttributionModel, attribute, simulate_paths
from mktlab.errors import ValidationError


@pytest.fixture(scope="module")
def model():
    p, _ = simulate_paths(800, 4, random_state=3)
    return AttributionModel.from_result(attribute(p, ["markov"]), method="markov")


def test_unknown_channels_are_listed_with_their_journeys(model):
    got = model.unknown_channels(["unknownchannel > ch01", "ch00", "x > unknownchannel"])
    assert got == {"unknownchannel": [0, 2], "x": [2]}
    assert model.unknown_channels(["ch00 > ch03"]) == {}


def test_the_served_entry_point_refuses_them_by_name(model):
    # before: {"ch01": 1.0}, the unknown channel dropped without a word
    with pytest.raises(ValidationError) as err:
        model(pd.DataFrame({"path": ["unknownchannel > ch01"]}))
    msg = str(err.value)
    assert "'unknownchannel'" in msg
    assert "journeys [0]" in msg
    assert "['ch00', 'ch01', 'ch02', 'ch03']" in msg


def test_credit_keeps_them_only_when_asked(model):
    out = model.credit(["unknownchannel > ch01"], unknown="split")
    assert out.loc[0, "ch01"] == pytest.approx(1.0)
    assert out.loc[0, "unknownchannel"] == 0.0
    with pytest.raises(ValidationError, match="unknownchannel"):
        model.credit(["unknownchannel > ch01"], unknown="raise")
    with pytest.raises(ValidationError, match="unknown:"):
        model.credit(["ch01"], unknown="drop")
