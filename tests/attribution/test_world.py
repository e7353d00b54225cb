"""Attribution on the synthetic world, whose journeys come from known channel effects."""

from __future__ import annotations

import numpy as np
import pytest

from mktlab.attribution import Paths, attribute
from mktlab.attribution.cli import load_world_paths
from mktlab.cli import main


@pytest.mark.slow
def test_world_attribution_tracks_the_truth(small_world, capsys):
    paths, truth = load_world_paths()
    assert isinstance(paths, Paths)
    assert paths.total_conversions > 0
    assert set(paths.channels) <= set(truth.index)
    res = attribute(paths, "all")
    np.testing.assert_allclose(res.conversions.sum(), paths.total_conversions)
    cmp = res.compare_to(truth["true_incremental_conversions"])
    # the truth is incremental conversions per channel; credit-sharing methods should
    # at least order the channels positively with it
    assert cmp.loc["shapley", "spearman"] > 0
    assert cmp.loc["markov", "spearman"] > 0
    assert (
        main(["attribution", "run", "--method", "all", "--lookback-days", "30", "--register"]) == 0
    )
    assert "agreement with channel_truth" in capsys.readouterr().out
