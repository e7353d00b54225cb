"""Data loaders: Hillstrom and the synthetic world as UpliftData."""

from __future__ import annotations

import numpy as np
import pytest

from mktlab.errors import ValidationError
from mktlab.uplift import FeaturePrep, hillstrom_data, world_data


@pytest.fixture(scope="module")
def hillstrom():
    from mktlab.datasets import load_hillstrom

    return load_hillstrom()


def test_hillstrom_womens_vs_none(hillstrom):
    d = hillstrom_data(hillstrom)
    assert len(d) == int(hillstrom["segment"].isin(["Womens E-Mail", "No E-Mail"]).sum())
    assert set(np.unique(d.treatment)) == {0, 1}
    assert 0.45 < d.propensity[0] < 0.55
    X = FeaturePrep().fit_transform(d.X)
    assert X.shape[1] == 18
    assert "channel=Web" in X.columns
    ate = d.y[d.treatment == 1].mean() - d.y[d.treatment == 0].mean()
    assert 0.03 < ate < 0.06  # the published visit lift of the Womens e-mail is ~4.5 points


def test_hillstrom_multi_arm(hillstrom):
    d = hillstrom_data(hillstrom, arms=("Mens E-Mail", "Womens E-Mail"), outcome="spend")
    assert len(d) == 64_000
    assert d.control == "No E-Mail"
    assert d.arms == ("Mens E-Mail", "Womens E-Mail")
    with pytest.raises(ValidationError, match="arms"):
        hillstrom_data(hillstrom, arms=("Kids E-Mail",))


def test_world_campaign(small_world):
    d = world_data(small_world, campaign_id="C001")
    assert d.truth is not None
    assert {"p0", "p1", "true_uplift", "quadrant"} <= set(d.truth.columns)
    np.testing.assert_allclose(d.truth["true_uplift"], d.truth["p1"] - d.truth["p0"])
    assert ((d.propensity > 0) & (d.propensity < 1)).all()
    targeted = world_data(small_world, campaign_id="C002")
    # the log stores P(logged action); P(T=1) must be recovered for control rows too
    assert targeted.propensity.std() > 0.01
    with pytest.raises(ValidationError, match="campaign_id"):
        world_data(small_world, campaign_id="C999")
