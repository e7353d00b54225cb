"""Shared strategies for the attribution tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from mktlab.attribution import Paths

CHANNELS = ("a", "b", "c", "d", "e")


@st.composite
def path_sets(draw, channels=CHANNELS, max_paths=12, max_len=5, extra_unused=True):
    """Random aggregated journeys with at least one conversion."""
    n = draw(st.integers(1, max_paths))
    paths = [
        draw(
            st.lists(
                st.sampled_from(channels[:-1] if extra_unused else channels),
                min_size=1,
                max_size=max_len,
            )
        )
        for _ in range(n)
    ]
    conv = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    nulls = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    if sum(conv) == 0:
        conv[0] = 1
    value = [c * 10.0 + i for i, c in enumerate(conv)]
    # the last channel is declared but never touched
    return Paths.from_lists(paths, conv, value, nulls, channels=list(channels))


def as_array(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)
