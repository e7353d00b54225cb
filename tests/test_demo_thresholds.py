"""The demo's quadrants and its treatment decision use one cut: no treated lost cause."""

from __future__ import annotations

import numpy as np
import pytest

from mktlab.demo import quadrant_thresholds, threshold_note
from mktlab.uplift import QuadrantThresholds, assign_quadrants


@pytest.mark.parametrize("treat", [0.01, 0.05, 0.123])
def test_persuadable_exactly_when_treated(treat):
    cuts = quadrant_thresholds(treat)
    # the reported row (uplift 0.039, cut 0.05 vs threshold 0.01), the threshold itself and
    # its float neighbours, a spread of others
    uplift = np.r_[
        0.039, treat, np.nextafter(treat, 0), np.nextafter(treat, 1), -treat,
        np.linspace(-0.3, 0.3, 601),
    ]  # fmt: skip
    for p0 in (0.05, 0.5):  # lost cause and sure thing territory
        quadrant = assign_quadrants(np.full(len(uplift), p0), uplift, cuts)
        treated = uplift >= treat  # the service's rule
        np.testing.assert_array_equal(quadrant == "persuadable", treated)
        assert not np.any(treated & np.isin(quadrant, ["lost_cause", "sure_thing"]))


def test_the_default_follows_the_service_setting(monkeypatch):
    monkeypatch.setenv("MKTLAB_UPLIFT_THRESHOLD", "0.02")
    assert quadrant_thresholds().uplift == pytest.approx(0.02)
    assert quadrant_thresholds().uplift < 0.02


def test_the_printed_note_names_both_rules():
    note = threshold_note(quadrant_thresholds(0.01), 0.01)
    assert "treat: uplift >= 0.01" in note
    assert "persuadable when uplift >= 0.01" in note
    assert "two different cuts" not in note
    # the old pairing (model default 0.05, service 0.01) says why a lost cause is treated
    old = threshold_note(QuadrantThresholds(), 0.01)
    assert "persuadable when uplift > 0.05" in old
    assert "two different cuts" in old
