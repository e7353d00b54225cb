"""Put events on the bus from Python or a file (``mktlab live publish events.parquet``).

:func:`publish_frame` publishes a DataFrame in chunks (malformed rows go to the
dead-letter store with their reason, or raise, as asked); :func:`read_events` reads CSV,
Parquet or JSON-lines files into that frame.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from mktlab.errors import NotFoundError, ValidationError


def read_events(path: str | Path) -> pd.DataFrame:
    """An event file as a DataFrame (``.csv``, ``.parquet``, ``.jsonl`` / ``.ndjson``)."""
    p = Path(path)
    if not p.exists():
        raise NotFoundError(f"event file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(p)
    if suffix == ".csv":
        return pd.read_csv(p)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return pd.read_json(p, lines=suffix != ".json")
    raise ValidationError(f"event file {str(p)!r}: expected .csv, .parquet or .jsonl")


def frame_records(df: pd.DataFrame, *, sent_at: bool = False) -> Iterator[dict[str, Any]]:
    """Rows as event mappings (missing values dropped; ``_sent_at`` stamped if asked)."""
    cols = list(df.columns)
    for row in df.itertuples(index=False, name=None):
        rec = {}
        for c, v in zip(cols, row, strict=True):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                continue
            rec[c] = v.item() if hasattr(v, "item") else v
        if sent_at:
            rec["_sent_at"] = time.time()
        yield rec


TICK_EVENT = "_tick"


def tick_events(partitions: int, ts: float) -> list[dict[str, Any]]:
    """One ``_tick`` event per partition at event time ``ts``: a watermark.

    A worker that reads a tick fires the partition's journey timers due by ``ts`` (every
    earlier event of the partition has been handled: the bus keeps partition order).
    Replays end with one, so waits that time out after the last event still resolve.
    """
    from mktlab.live.events import partition_of

    out, k = {}, 0
    while len(out) < partitions:
        uid = f"__tick{k}"
        p = int(partition_of(uid, partitions))
        if p not in out:
            out[p] = {
                "user_id": uid,
                "event": TICK_EVENT,
                "ts": float(ts),
                "event_id": f"tick:{p}:{ts!r}",
            }
        k += 1
    return [out[p] for p in sorted(out)]


def publish_frame(
    bus: Any,
    df: pd.DataFrame,
    *,
    chunk: int = 5000,
    invalid: str = "dead_letter",
    rate: float | None = None,
    sent_at: bool = False,
    progress: bool = False,
    tick: bool = False,
) -> dict[str, int]:
    """Publish ``df``'s rows as events; return ``{"published": n, "dead_lettered": m}``.

    ``rate`` (events/s) paces the publishing, as an app would; ``sent_at`` stamps each
    event with its publish time (the benchmark measures latency from it).
    """
    if chunk < 1:
        raise ValidationError(f"chunk={chunk}: expected >= 1")
    totals = {"published": 0, "dead_lettered": 0}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(df), desc="publish", unit="event")
    t0 = time.monotonic()
    sent = 0
    for lo in range(0, len(df), chunk):
        part = df.iloc[lo : lo + chunk]
        if rate:
            wait = t0 + sent / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        rep = bus.publish(list(frame_records(part, sent_at=sent_at)), invalid=invalid)
        totals["published"] += rep.published
        totals["dead_lettered"] += rep.dead_lettered
        sent += len(part)
        if bar is not None:
            bar.update(len(part))
    if bar is not None:
        bar.close()
    if tick and len(df):
        ts = pd.to_numeric(df["ts"], errors="coerce").max() if "ts" in df.columns else None
        if ts is not None and math.isfinite(ts):
            bus.publish(tick_events(bus.partitions, float(ts)))
    return totals
