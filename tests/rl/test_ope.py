"""Off-policy estimate of a policy's first decision on the world's logged campaign."""

from __future__ import annotations

import numpy as np
import pytest

from mktlab.errors import ValidationError
from mktlab.rl import OBS_COLUMNS, AlwaysAction, NeverTreat
from mktlab.rl.ope import ope_on_world, week0_states


def test_week0_states_are_valid_observations(small_world):
    log = small_world.campaign_log.head(500)
    states = week0_states(log)
    assert list(states.columns) == list(OBS_COLUMNS)
    assert np.isfinite(states.to_numpy()).all()
    assert (states["budget_left"] == 1).all()


def test_ope_of_treat_all_matches_the_treat_all_row(small_world):
    out = ope_on_world(AlwaysAction("coupon_small"), small_world, n_boot=50).set_index("policy")
    assert {"always_coupon_small", "never_treat", "treat_all", "logged"} <= set(out.index)
    mine, ref = out.loc["always_coupon_small"], out.loc["treat_all"]
    assert mine["value_per_user"] == pytest.approx(ref["value_per_user"])
    assert mine["treated_share"] == 1.0
    assert out.loc["never_treat", "ci_low"] <= out.loc["never_treat", "value_per_user"]
    # C001 is randomised at 0.5: both arms have about half the rows as effective sample
    assert out.loc["never_treat", "ess"] > 0.4 * len(small_world.campaign_log) / 2


def test_ope_refuses_unknown_campaign_and_estimator(small_world):
    with pytest.raises(ValidationError, match="campaign_id"):
        ope_on_world(NeverTreat(), small_world, campaign_id="NOPE")
    with pytest.raises(ValidationError, match="estimator"):
        ope_on_world(NeverTreat(), small_world, estimator="dr")
