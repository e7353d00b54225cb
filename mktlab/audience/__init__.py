"""Bitmap audiences: tag bitmaps over uint32 uids, an audience language, saved audiences.

Every tag value is a roaring bitmap of uids (pyroaring), numeric tags are bit-sliced
indexes, and an audience is bit arithmetic::

    from mktlab.audience import AudienceStore
    store = AudienceStore.build(profiles, events)          # tables keyed by uid
    aud = store.query('active_7d & ~purchased_30d & (tier_level >= 4 | city in ("SH", "BJ"))')
    aud.size, aud.sample(5), aud.export("out.parquet", hash_salt="s3cret")
    store.save("high_value", "monetary_90d >= 500 & count(order, 30d) >= 2")
    store.overlap(["high_value", ...])
"""

from mktlab.audience._bitmaps import (
    bitmap_from_mask,
    bitmap_from_uids,
    bitmap_to_numpy,
    from_clickhouse_state,
    to_clickhouse_state,
)
from mktlab.audience.catalog import AudienceCatalog, SavedAudience
from mktlab.audience.lang import (
    AudienceSyntaxError,
    AudienceTypeError,
    UnknownNameError,
    parse,
    to_text,
)
from mktlab.audience.results import (
    Audience,
    overlap,
    overlap_matrix,
    plot_overlap_heatmap,
    plot_upset,
    upset_counts,
)
from mktlab.audience.sql import to_sql, to_where
from mktlab.audience.tagstore import DEFAULT_EVENT_ALIASES, AudienceStore

__all__ = [
    "DEFAULT_EVENT_ALIASES",
    "Audience",
    "AudienceCatalog",
    "AudienceStore",
    "AudienceSyntaxError",
    "AudienceTypeError",
    "SavedAudience",
    "UnknownNameError",
    "bitmap_from_mask",
    "bitmap_from_uids",
    "bitmap_to_numpy",
    "from_clickhouse_state",
    "overlap",
    "overlap_matrix",
    "parse",
    "plot_overlap_heatmap",
    "plot_upset",
    "to_clickhouse_state",
    "to_sql",
    "to_text",
    "to_where",
    "upset_counts",
]
