"""The decision log: every live decision with its propensity, and outcomes joined later.

Workers append one Parquet segment per checkpoint under
``<processed_dir>/live/decisions/`` (written to a temp file, then renamed). A redelivered
event after a crash may write a decision twice; every row carries its idempotency
``key``, and :meth:`DecisionLog.read` keeps the first of each. :meth:`DecisionLog.to_logged`
joins outcomes from later events and returns the :class:`~mktlab.sandbox.LoggedData` the
sandbox's estimators and :mod:`mktlab.uplift` read: the loop closes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mktlab.config import settings
from mktlab.errors import DataError, NotFoundError, SchemaError, ValidationError
from mktlab.io import write_parquet
from mktlab.rules.model import parse_duration
from mktlab.strategy.runtime import DECISION_COLUMNS

ACTIONS = ("coupon", "message")


def default_dir() -> Path:
    return settings().live_dir / "decisions"


def _frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=list(DECISION_COLUMNS))
    for c in ("key", "source", "node", "user_id", "event_id", "action", "status", "reason", "arm"):
        df[c] = df[c].astype("string")
    for c in ("ts", "p_treat", "propensity", "uplift"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    df["version"] = pd.to_numeric(df["version"]).astype("int64")
    df["holdout"] = df["holdout"].fillna(False).astype(bool)
    return df


class DecisionLog:
    """Append-only decision segments, read back as one deduplicated table.

    Parameters
    ----------
    path : str or Path, optional
        Folder of segments (default ``<processed_dir>/live/decisions``).
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_dir()

    def __repr__(self) -> str:
        return f"DecisionLog({str(self.path)!r})"

    def append(
        self, rows: Sequence[dict[str, Any]], *, partition: int | None = None
    ) -> Path | None:
        """Write ``rows`` (dicts with :data:`~mktlab.strategy.DECISION_COLUMNS`) as one segment."""
        if not rows:
            return None
        tag = "x" if partition is None else f"p{int(partition):04d}"
        out = (
            self.path
            / f"{tag}-{pd.Timestamp.now('UTC').strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.parquet"
        )
        return write_parquet(_frame(rows), out)

    def segments(self) -> list[Path]:
        return sorted(self.path.glob("*.parquet")) if self.path.exists() else []

    def read(self, *, source: str | None = None, version: int | None = None) -> pd.DataFrame:
        """Every decision once (first write of each key), in event-time order."""
        files = self.segments()
        if not files:
            return _frame([])
        try:
            df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        except Exception as exc:  # a corrupt segment is named, never skipped silently
            raise DataError(f"decision log {self.path}: unreadable segment ({exc})") from exc
        df = df.drop_duplicates("key", keep="first")
        if source is not None:
            df = df[df["source"] == source]
        if version is not None:
            df = df[df["version"] == version]
        return df.sort_values(["ts", "key"], kind="stable").reset_index(drop=True)

    def clear(self) -> int:
        """Delete every segment (tests, demo re-runs); return how many."""
        files = self.segments()
        for f in files:
            f.unlink()
        return len(files)

    def to_logged(
        self,
        events: pd.DataFrame,
        *,
        source: str,
        outcome_event: str = "purchase",
        window: str | int = "7d",
        revenue_col: str | None = "amount",
        profiles: pd.DataFrame | None = None,
        features: Sequence[str] | None = None,
        actions: Sequence[str] = ACTIONS,
        nodes: Sequence[str] | None = None,
    ):
        """Decisions of ``source`` joined with outcomes, as sandbox :class:`LoggedData`.

        One row per decision about a coupon or message (``actions``; ``nodes`` keeps only
        those rule / node ids, e.g. a journey's holdout split with ``actions=("split",)``):
        ``treatment`` 1 when it was allowed and not held out, 0 otherwise, with the
        ``propensity`` of that choice.
        ``converted`` is 1 when the user had an ``outcome_event`` within ``window`` after
        the decision (``revenue`` sums ``revenue_col`` of those events). ``profiles``
        (indexed by, or with a column, ``user_id``) adds features for reward models and
        uplift learners.
        """
        from mktlab.sandbox.data import LoggedData

        for c in ("user_id", "ts", "event"):
            if c not in events.columns:
                raise SchemaError(f"events: missing column {c!r}; got {list(events.columns)}")
        horizon = parse_duration(window, what="window")
        dec = self.read(source=source)
        if dec.empty:
            raise NotFoundError(f"decision log {self.path}: no decisions of {source!r}")
        dec = dec[dec["action"].isin(list(actions))]
        if nodes is not None:
            dec = dec[dec["node"].isin(list(nodes))]
        dec = dec.copy()
        if dec.empty:
            raise ValidationError(f"decision log: {source!r} made no {list(actions)} decisions")
        ev = events[events["event"] == outcome_event]
        ets = ev["ts"]
        if not pd.api.types.is_numeric_dtype(ets):
            ets = pd.to_datetime(ets, utc=True).dt.as_unit("ns").astype("int64") / 1e9
        amount = (
            pd.to_numeric(ev[revenue_col], errors="coerce").fillna(0.0).to_numpy()
            if revenue_col and revenue_col in ev.columns
            else np.ones(len(ev))
        )
        out = pd.DataFrame(
            {
                "user_id": ev["user_id"].astype(str).to_numpy(),
                "ots": ets.to_numpy(dtype=float),
                "amt": amount,
            }
        )
        dec["treatment"] = ((dec["status"] == "ok") & ~dec["holdout"]).astype(int)
        dec = dec.reset_index(drop=True)
        dec["row"] = np.arange(len(dec))
        j = dec[["row", "user_id", "ts"]].astype({"user_id": str}).merge(out, on="user_id")
        j = j[(j["ots"] > j["ts"]) & (j["ots"] <= j["ts"] + horizon)]
        agg = j.groupby("row").agg(conv=("amt", "size"), rev=("amt", "sum"))
        dec["converted"] = dec["row"].map(agg["conv"]).fillna(0).gt(0).astype(int)
        dec["revenue"] = dec["row"].map(agg["rev"]).fillna(0.0)
        if profiles is not None:
            prof = profiles.set_index("user_id") if "user_id" in profiles.columns else profiles
            prof = prof[~prof.index.duplicated()]
            cols = list(features) if features is not None else list(prof.columns)
            missing = [c for c in cols if c not in prof.columns]
            if missing:
                raise SchemaError(f"profiles: missing feature column(s) {missing}")
            dec = dec.join(prof[cols], on="user_id")
        else:
            cols = list(features or [])
        frame = dec.drop(columns=["row"]).assign(user_id=dec["user_id"].astype(str))
        return LoggedData(
            frame,
            arms=(0, 1),
            action_col="treatment",
            conversion_col="converted",
            propensity_col="propensity",
            revenue_col="revenue",
            user_col="user_id",
            ts_col="ts",
            features=tuple(cols) if cols else None,
        )


COMPARED = ("source", "node", "user_id", "ts", "action", "status", "arm")


def simulated_decisions(
    strategies, journeys, events: pd.DataFrame, context, *, until=None
) -> pd.DataFrame:
    """The decision-log rows the in-memory simulations make for ``events``.

    Strategies through :func:`mktlab.strategy.simulate`, journeys through
    :func:`mktlab.live.journey_sim.simulate` (timers up to ``until``, default the last
    event, as a replay that ends with a watermark tick): what the live loop must log.
    """
    from mktlab.live.journey_sim import simulate as simulate_journeys
    from mktlab.strategy import simulate as simulate_strategies

    frames = []
    if strategies:
        frames.append(simulate_strategies(list(strategies), events, context).decisions_frame())
    if journeys:
        end = float(pd.to_numeric(events["ts"]).max()) if until is None else until
        sim = simulate_journeys(list(journeys), events, context, until=end)
        frames.append(pd.DataFrame(sim.decision_rows(), columns=list(DECISION_COLUMNS)))
    return pd.concat(frames, ignore_index=True) if frames else _frame([])


def same_decisions(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two decision tables hold the same decisions (order and dtypes aside)."""

    def norm(df: pd.DataFrame) -> pd.DataFrame:
        cols = list(COMPARED)
        return df[cols].astype(str).sort_values(cols).reset_index(drop=True)

    return bool(norm(a).equals(norm(b)))
