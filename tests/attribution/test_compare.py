from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from mktlab.attribution import METHODS, attribute, plot_comparison, simulate_paths
from mktlab.errors import ValidationError


def test_attribute_all_methods_sum_to_total():
    p, truth = simulate_paths(5000, 6, random_state=5)
    res = attribute(p, "all")
    assert list(res.conversions.columns) == list(METHODS)
    np.testing.assert_allclose(res.conversions.sum(), p.total_conversions)
    np.testing.assert_allclose(res.value.sum(), p.total_value)
    assert res.ranking().min().min() == 1
    cmp = res.compare_to(truth["effect"] * truth["popularity"])
    assert set(cmp.columns) == {"spearman", "share_l1", "top_match"}
    assert cmp["spearman"].between(-1, 1).all()


def test_attribute_selected_methods_and_bad_method():
    p, _ = simulate_paths(500, 3, random_state=6)
    res = attribute(p, ["markov", "linear"])
    assert list(res.conversions.columns) == ["markov", "linear"]
    assert res.shapley is None
    assert res.markov is not None
    with pytest.raises(ValidationError, match="method"):
        attribute(p, "bogus")


def test_plot_comparison_returns_figure():
    p, truth = simulate_paths(500, 3, random_state=6)
    res = attribute(p, "all")
    fig = plot_comparison(res, truth=truth["effect"])
    ax = fig.axes[0]
    assert len(ax.patches) == 3 * (len(METHODS) + 1)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_attribute_accepts_a_frame():
    df = pd.DataFrame({"path": ["a|b", "b"], "conversions": [1, 1]})
    res = attribute(df, ["shapley"], sep="|")
    assert res.conversions["shapley"].to_dict() == {"a": 0.5, "b": 1.5}
