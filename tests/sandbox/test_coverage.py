"""Coverage on repeated synthetic worlds, which know every user's potential outcomes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mktlab.datasets import make_world
from mktlab.sandbox import TreatmentPolicy, Strategy, from_world, replay, true_incremental

SEEDS = range(30)


@pytest.mark.slow
@pytest.mark.parametrize("campaign", ["C002"])
def test_interval_covers_true_incremental_conversions(tmp_path, campaign):
    """IPS and DR 95% intervals cover the truth in >= 90% of worlds; DR's are narrower."""
    strategy = Strategy("young", TreatmentPolicy("all"), audience="young")
    hits = {"ips": 0, "dr": 0}
    widths: dict[str, list[float]] = {"ips": [], "dr": []}
    for seed in SEEDS:
        world = make_world(4000, seed, out_dir=tmp_path / f"w{seed}")
        data = from_world(world, campaign)  # C002: targeted logging, propensities 0.05..0.95
        data.frame["young"] = data.frame["age"] < 35
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = replay(strategy, data, estimators=("ips", "dr"), n_boot=300, seed=seed)
        truth = true_incremental(res.pi, data.meta["truth"]["y0"], data.meta["truth"]["y1"])
        for e in hits:
            iv = res.get("incremental_conversions", e)
            hits[e] += iv.covers(truth)
            widths[e].append(iv.width)
    coverage = {e: h / len(SEEDS) for e, h in hits.items()}
    assert coverage["ips"] >= 0.9, coverage
    assert coverage["dr"] >= 0.9, coverage
    assert np.mean(widths["dr"]) < np.mean(widths["ips"]), {
        e: np.mean(w) for e, w in widths.items()
    }
