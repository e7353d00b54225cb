"""Synthetic journeys with known channel effects, for tests, benchmarks and demos.

The world generator in :mod:`mktlab.datasets` is the realistic source; this one is a
small, fast, vectorised stand-in: journey lengths are geometric, channels are drawn from
a popularity distribution, and a journey converts with probability
``1 − (1 − base) Π_{c touched} (1 − effect_c)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mktlab.attribution.paths import Paths
from mktlab.errors import ValidationError


def simulate_paths(
    n_journeys: int = 10_000,
    n_channels: int = 8,
    *,
    mean_length: float = 3.0,
    max_length: int = 12,
    base_rate: float = 0.01,
    effects: np.ndarray | None = None,
    random_state: int | None = 0,
) -> tuple[Paths, pd.DataFrame]:
    """Simulate ``n_journeys`` one-per-row journeys and the true per-channel effects.

    Returns
    -------
    paths : Paths
        One journey per path (conversions 0/1, nulls = 1 − conversions, value > 0 when
        converted).
    truth : DataFrame
        Indexed by channel: ``effect`` (per-touch conversion lift) and ``popularity``.
    """
    if n_journeys < 1 or n_channels < 1:
        raise ValidationError("n_journeys, n_channels: must be >= 1")
    rng = np.random.default_rng(random_state)
    names = tuple(f"ch{i:02d}" for i in range(n_channels))
    pop = rng.dirichlet(np.full(n_channels, 2.0))
    if effects is None:
        effects = rng.uniform(0.0, 0.08, n_channels)
    effects = np.asarray(effects, dtype=np.float64)
    lengths = np.minimum(rng.geometric(1.0 / mean_length, n_journeys), max_length)
    offsets = np.zeros(n_journeys + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    touches = rng.choice(n_channels, size=int(offsets[-1]), p=pop).astype(np.int32)
    pidx = np.repeat(np.arange(n_journeys), lengths)
    # distinct channels per journey drive conversion (repeats add nothing)
    key = pidx * n_channels + touches
    ukey = np.unique(key)
    log_miss = np.bincount(
        ukey // n_channels, weights=np.log1p(-effects[ukey % n_channels]), minlength=n_journeys
    )
    p = 1.0 - (1.0 - base_rate) * np.exp(log_miss)
    conv = (rng.random(n_journeys) < p).astype(np.float64)
    value = conv * rng.lognormal(4.0, 0.5, n_journeys)
    paths = Paths(names, offsets, touches, conv, value, 1.0 - conv)
    truth = pd.DataFrame(
        {"effect": effects, "popularity": pop}, index=pd.Index(names, name="channel")
    )
    return paths, truth
