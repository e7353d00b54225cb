"""Synthetic app events for the live loop: sessions of views, cart adds, orders, purchases.

:func:`synthetic_events` makes a time-ordered event log (one row per event, with
``event_id``) that exercises windowed triggers ("3 views of one category within 30
minutes and no order"), journeys (sign-ups, purchases) and outcomes. Deterministic for a
seed, so a test, the benchmark and the notebook can replay the same stream.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mktlab.errors import ValidationError

EVENT_TYPES = ("view", "cart_add", "order", "purchase", "signup", "app_open")
CATEGORIES = ("shoes", "bags", "beauty", "home", "kids", "sports")


def synthetic_events(
    n_users: int = 1000,
    n_events: int = 20_000,
    *,
    seed: int = 0,
    start: str = "2026-11-01",
    days: float = 7.0,
    user_prefix: str = "u",
    n_categories: int | None = None,
) -> pd.DataFrame:
    """A time-ordered event log: ``event_id, user_id, ts (epoch s), event, category, amount``.

    Each user has bursts (sessions) of views in one or two categories; some sessions add
    to cart, fewer order and purchase. About 20% of events lead to an action under the
    example strategy ``examples/strategies/browse-rescue.yaml``. ``n_categories`` widens
    the catalogue beyond the six named categories (``c0``, ``c1``, ...), as a big shop has.
    """
    if n_users < 1 or n_events < 1:
        raise ValidationError(f"n_users={n_users}, n_events={n_events}: expected positive counts")
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start, tz="UTC").timestamp()
    n_sessions = max(1, n_events // 6)
    users = rng.integers(0, n_users, n_sessions)
    s_start = t0 + rng.random(n_sessions) * days * 86400
    sizes = rng.poisson(5.0, n_sessions) + 1
    total = int(sizes.sum())
    sess = np.repeat(np.arange(n_sessions), sizes)
    pos = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    ts = s_start[sess] + pos * rng.uniform(30, 300, total)
    names = np.asarray(CATEGORIES if not n_categories else [f"c{i}" for i in range(n_categories)])
    cat_a = rng.integers(0, len(names), n_sessions)
    cat = np.where(rng.random(total) < 0.8, cat_a[sess], rng.integers(0, len(names), total))
    u = rng.random(total)
    ev = np.where(
        u < 0.72,
        0,
        np.where(
            u < 0.86, 1, np.where(u < 0.91, 2, np.where(u < 0.95, 3, np.where(u < 0.97, 4, 5)))
        ),
    )
    amount = np.where(ev == 3, np.round(rng.gamma(2.0, 30.0, total), 2), 0.0)
    df = pd.DataFrame(
        {
            "user_id": [f"{user_prefix}{i}" for i in users[sess]],
            "ts": np.round(ts, 3),
            "event": np.asarray(EVENT_TYPES)[ev],
            "category": names[cat],
            "amount": amount,
        }
    )
    df = df.sort_values("ts", kind="stable").head(n_events).reset_index(drop=True)
    df.insert(0, "event_id", [f"e{seed}-{i}" for i in range(len(df))])
    return df
