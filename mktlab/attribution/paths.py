"""Journeys as integer-encoded paths: the one input every attribution method reads.

A :class:`Paths` holds many journeys in flat (CSR-style) numpy arrays: the channel codes
of every touch laid end to end, and ``offsets`` marking where each journey starts. Each
journey carries a weight triple ``(conversions, value, nulls)``: how many times the path
ended in a conversion, the value of those conversions, and how many times it ended
without one. Aggregated path tables (``"search > email"``, 12 conversions, 3 nulls) and
one-row-per-journey data fit the same shape, so methods never loop over journeys in
Python: they are numpy reductions over the flat arrays.

Build one with :meth:`Paths.from_frame` (aggregated paths with a separator),
:meth:`Paths.from_touches` (one row per touch plus conversions, with a lookback window
and a cut at conversion) or :meth:`Paths.from_lists`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mktlab.errors import DataError, ValidationError, require_columns

#: State names the Markov chain uses; a channel may not be called like one of them.
RESERVED = ("start", "conversion", "null")
#: Separators we recognise inside a channel name as a sign the wrong one was given.
_SEPARATOR_HINTS = (">", "|", ",", ";", "→", "->", "=>")
DEFAULT_SEP = " > "


_ID_COLS = ("journey_id", "uid", "user_id", "cookie", "customer_id")
_PATH_COLS = ("path", "paths", "channel_path")
_CONV_COLS = ("conversions", "total_conversions", "conversion", "conv")
_VALUE_COLS = ("value", "total_conversion_value", "conversion_value", "revenue")
_NULL_COLS = ("nulls", "total_null", "total_nulls", "null", "non_conversions")
_AUTO_SEPS = (" > ", "->", "→", ">", "|", ",", ";")


def _pick(df: pd.DataFrame, candidates: Sequence[str], default: str | None) -> str | None:
    return next((c for c in candidates if c in df.columns), default)


def _guess_sep(raw: pd.Series) -> str:
    sample = raw.head(10_000).astype(str)
    counts = {s: int(sample.str.contains(s, regex=False).sum()) for s in _AUTO_SEPS}
    best = max(_AUTO_SEPS, key=lambda s: counts[s])  # ties keep the earlier candidate
    # single-channel paths have no separator at all: any choice splits them the same
    return best if counts[best] > 0 else DEFAULT_SEP


def _check_channels(channels: Sequence[str], *, sep: str | None = None) -> None:
    reserved = [c for c in channels if str(c).strip().lower() in RESERVED]
    if reserved:
        raise ValidationError(
            f"channel name(s) {', '.join(map(repr, reserved))} clash with the reserved Markov "
            f"states {RESERVED}; rename them (e.g. 'null' -> 'null_channel')"
        )
    empty = [c for c in channels if str(c).strip() == ""]
    if empty:
        raise DataError("channel: empty channel name in a path (e.g. 'a >  > b' or a blank path)")
    if sep is not None:
        hints = [h for h in _SEPARATOR_HINTS if h not in sep]
        suspect = [c for c in channels if any(h in c for h in hints)]
        if suspect:
            raise ValidationError(
                f"sep={sep!r}: channel name(s) {', '.join(map(repr, suspect[:5]))} still contain "
                "a separator; is the separator right? (pass sep=...)"
            )


def _as_weights(x: Any, n: int, name: str, default: float | None) -> np.ndarray:
    if x is None:
        if default is None:
            raise ValidationError(f"{name}: required")
        return np.full(n, float(default))
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValidationError(f"{name}: expected {n} values, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        idx = np.flatnonzero(~np.isfinite(arr))[:5]
        raise ValidationError(f"{name}: non-finite value(s) at row(s) {idx.tolist()}")
    if (arr < 0).any():
        idx = np.flatnonzero(arr < 0)[:5]
        raise ValidationError(
            f"{name}: negative value(s) {arr[idx].tolist()} at row(s) {idx.tolist()}; "
            "counts and values must be >= 0"
        )
    return arr


@dataclass(frozen=True, eq=False)
class Paths:
    """Journeys as flat integer-encoded channel sequences with conversion weights.

    Parameters
    ----------
    channels : tuple of str
        Channel names; touch codes index into it.
    offsets : ndarray of int64, shape (n_paths + 1,)
        Journey ``j`` is ``touches[offsets[j]:offsets[j + 1]]``; every journey is non-empty.
    touches : ndarray of int32
        Channel code of every touch, journeys laid end to end in time order.
    conversions, value, nulls : ndarray of float64, shape (n_paths,)
        How often the path converted, the value of those conversions, and how often it
        ended without converting. Non-negative.
    age : ndarray of float64 or None
        Per touch, how long before the journey's end (conversion, or last touch) it
        happened, in ``age_unit``. ``None`` means "use the position from the end".
    age_unit : str
        ``"days"`` when built from timestamped touches, else ``"touches"``.
    unattributed_conversions : float
        Conversions dropped because no touch survived the lookback window (reported, not
        silently lost).
    """

    channels: tuple[str, ...]
    offsets: np.ndarray
    touches: np.ndarray
    conversions: np.ndarray
    value: np.ndarray
    nulls: np.ndarray
    age: np.ndarray | None = None
    age_unit: str = "touches"
    unattributed_conversions: float = 0.0
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(str(c) for c in self.channels))
        if len(set(self.channels)) != len(self.channels):
            raise ValidationError("channels: duplicate channel names")
        _check_channels(self.channels)
        offsets = np.asarray(self.offsets, dtype=np.int64)
        touches = np.asarray(self.touches, dtype=np.int32)
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "touches", touches)
        if offsets.ndim != 1 or len(offsets) < 2:
            raise DataError("paths: no journeys (empty input)")
        if offsets[0] != 0 or offsets[-1] != len(touches):
            raise ValidationError("offsets: must start at 0 and end at len(touches)")
        lengths = np.diff(offsets)
        if (lengths <= 0).any():
            idx = np.flatnonzero(lengths <= 0)[:5]
            raise DataError(
                f"paths: empty journey(s) at row(s) {idx.tolist()}; every path needs a touch"
            )
        if len(touches) and (touches.min() < 0 or touches.max() >= len(self.channels)):
            raise ValidationError("touches: channel code out of range")
        n = len(lengths)
        for name in ("conversions", "value", "nulls"):
            object.__setattr__(self, name, _as_weights(getattr(self, name), n, name, 0.0))
        if self.age is not None:
            age = np.asarray(self.age, dtype=np.float64)
            if age.shape != touches.shape or not np.isfinite(age).all():
                raise ValidationError("age: needs one finite value per touch")
            object.__setattr__(self, "age", age)
        if self.age_unit not in ("days", "touches"):
            raise ValidationError(f"age_unit: {self.age_unit!r} is not 'days' or 'touches'")

    # ---------------------------------------------------------------- derived arrays
    @property
    def n_paths(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def lengths(self) -> np.ndarray:
        """Number of touches per journey."""
        if "lengths" not in self._cache:
            self._cache["lengths"] = np.diff(self.offsets)
        return self._cache["lengths"]

    @property
    def path_index(self) -> np.ndarray:
        """For every touch, the index of its journey."""
        if "path_index" not in self._cache:
            self._cache["path_index"] = np.repeat(
                np.arange(self.n_paths, dtype=np.int64), self.lengths
            )
        return self._cache["path_index"]

    @property
    def position(self) -> np.ndarray:
        """For every touch, its 0-based position in its journey."""
        if "position" not in self._cache:
            self._cache["position"] = (
                np.arange(len(self.touches), dtype=np.int64) - self.offsets[:-1][self.path_index]
            )
        return self._cache["position"]

    @property
    def total_conversions(self) -> float:
        return float(self.conversions.sum())

    @property
    def total_value(self) -> float:
        return float(self.value.sum())

    def touch_age(self) -> np.ndarray:
        """Age of each touch before the journey's end (``age``, or position from the end)."""
        if self.age is not None:
            return self.age
        return (self.lengths[self.path_index] - 1 - self.position).astype(np.float64)

    def require_conversions(self, method: str) -> None:
        """Raise :class:`DataError` when there is nothing to attribute."""
        if self.total_conversions <= 0:
            raise DataError(
                f"{method}: the journeys contain no conversions, so there is nothing to "
                "attribute (credits would be 0/0); check the conversions column"
            )

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_lists(
        cls,
        paths: Iterable[Sequence[str]],
        conversions: Any = None,
        value: Any = None,
        nulls: Any = None,
        *,
        channels: Sequence[str] | None = None,
    ) -> Paths:
        """Build from Python lists of channel names (small data, tests, the service).

        ``conversions`` defaults to 1 per path, ``value`` to ``conversions``, ``nulls`` to 0.
        ``channels`` fixes the channel list (and order); extra names are appended.
        """
        paths = [list(p) for p in paths]
        if not paths:
            raise DataError("paths: no journeys (empty input)")
        flat = [str(c).strip() for p in paths for c in p]
        known = list(channels) if channels is not None else []
        seen = dict.fromkeys(known)
        for c in flat:
            seen.setdefault(c)
        names = list(seen)
        _check_channels(names)
        code = {c: i for i, c in enumerate(names)}
        offsets = np.zeros(len(paths) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in paths], out=offsets[1:])
        touches = np.fromiter((code[c] for c in flat), dtype=np.int32, count=len(flat))
        n = len(paths)
        conv = _as_weights(conversions, n, "conversions", 1.0)
        val = _as_weights(value, n, "value", None) if value is not None else conv.copy()
        return cls(tuple(names), offsets, touches, conv, val, _as_weights(nulls, n, "nulls", 0.0))

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        sep: str = DEFAULT_SEP,
        path_col: str | None = None,
        conversions_col: str | None = None,
        value_col: str | None = None,
        nulls_col: str | None = None,
        channels: Sequence[str] | None = None,
    ) -> Paths:
        """Build from an aggregated path table (``path, conversions, value, nulls``).

        Parameters
        ----------
        df : DataFrame
            One row per distinct path (or per journey). ``path`` is a string of channel
            names joined by ``sep`` (whitespace around names is ignored), or a list.
        sep : str
            The separator inside ``path``, e.g. ``" > "`` (default), ``">"``, ``"|"``.
            Whitespace around it does not matter (``" > "`` also splits ``"a>b"``).
            ``"auto"`` picks the most common of ``" > ", "->", "→", ">", "|", ",", ";"``.
        path_col, conversions_col, value_col, nulls_col : str, optional
            Column names. By default the first present of: ``path``/``paths``/
            ``channel_path``; ``conversions``/``total_conversions``/``conversion``/``conv``;
            ``value``/``total_conversion_value``/``conversion_value``/``revenue``;
            ``nulls``/``total_null``/``total_nulls``/``null``/``non_conversions``
            (ChannelAttribution's column names work as they are). No value column means
            value = conversions; no nulls column means 0.
        channels : sequence of str, optional
            Fix the channel list (e.g. to include channels never touched).

        Raises
        ------
        DataError
            No rows, or an empty path / empty channel name.
        ValidationError
            Negative or non-finite counts, a reserved channel name, or channel names that
            still contain a separator (the wrong ``sep``).
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        if not isinstance(sep, str) or sep == "":
            raise ValidationError(f"sep: must be a non-empty string, got {sep!r}")
        path_col = path_col or _pick(df, _PATH_COLS, "path") or "path"
        conversions_col = conversions_col or _pick(df, _CONV_COLS, "conversions") or "conversions"
        value_col = value_col or _pick(df, _VALUE_COLS, None)
        nulls_col = nulls_col or _pick(df, _NULL_COLS, None)
        require_columns(df, [path_col, conversions_col], table="paths")
        if len(df) == 0:
            raise DataError("paths: no rows (empty input)")
        raw = df[path_col]
        if sep == "auto":
            sep = _guess_sep(raw)
        if raw.isna().any():
            idx = np.flatnonzero(raw.isna().to_numpy())[:5]
            raise DataError(f"{path_col}: missing path at row(s) {idx.tolist()}")
        first = raw.iloc[0]
        if isinstance(first, list | tuple | np.ndarray):
            lists = pa.array([list(map(str, p)) for p in raw], type=pa.list_(pa.string()))
        else:
            arr = pa.array(raw.astype(str).to_numpy(dtype=object), type=pa.string())
            # split in Arrow: one vectorised pass, no Python loop over rows; names are
            # trimmed afterwards, so the separator's own padding is optional
            lists = pc.split_pattern(arr, pattern=sep.strip() or sep)
        offsets = np.asarray(lists.offsets, dtype=np.int64)
        offsets = offsets - offsets[0]
        tokens = pc.utf8_trim_whitespace(lists.flatten())
        lengths = np.diff(offsets)
        if (lengths == 0).any():
            idx = np.flatnonzero(lengths == 0)[:5]
            raise DataError(f"{path_col}: empty path at row(s) {idx.tolist()}")
        empty_tok = np.asarray(pc.equal(tokens, ""))
        if empty_tok.any():
            rows = np.unique(np.repeat(np.arange(len(lengths)), lengths)[empty_tok])[:5]
            sample = [raw.iloc[int(r)] for r in rows]
            raise DataError(
                f"{path_col}: empty channel name in path(s) {sample!r} (row(s) {rows.tolist()})"
            )
        enc = (
            pc.dictionary_encode(tokens).combine_chunks()
            if isinstance(tokens, pa.ChunkedArray)
            else pc.dictionary_encode(tokens)
        )
        names = [str(x) for x in enc.dictionary.to_pylist()]
        _check_channels(names, sep=sep)
        codes = np.asarray(enc.indices, dtype=np.int32)
        if channels is not None:
            order = list(dict.fromkeys([*map(str, channels), *names]))
            _check_channels(order)
            remap = np.array([order.index(c) for c in names], dtype=np.int32)
            codes = remap[codes] if len(codes) else codes
            names = order
        n = len(lengths)
        conv = _as_weights(
            df[conversions_col].to_numpy(dtype=np.float64, na_value=np.nan),
            n,
            conversions_col,
            None,
        )
        if value_col is not None and value_col in df.columns:
            val = _as_weights(
                df[value_col].to_numpy(dtype=np.float64, na_value=np.nan), n, value_col, None
            )
        else:
            val = conv.copy()
        if nulls_col is not None and nulls_col in df.columns:
            nul = _as_weights(
                df[nulls_col].to_numpy(dtype=np.float64, na_value=np.nan), n, nulls_col, None
            )
        else:
            nul = np.zeros(n)
        return cls(tuple(names), offsets, codes, conv, val, nul)

    @classmethod
    def from_touches(
        cls,
        touches: pd.DataFrame,
        conversions: pd.DataFrame | None = None,
        *,
        id_col: str | None = None,
        ts_col: str = "ts",
        channel_col: str = "channel",
        converted_col: str = "converted",
        value_col: str = "value",
        lookback_days: float | None = None,
        cut_at_conversion: bool = True,
        channels: Sequence[str] | None = None,
    ) -> Paths:
        """Build journeys from one row per touch plus a conversions table.

        Parameters
        ----------
        touches : DataFrame
            ``id_col, ts, channel`` rows. ``id_col`` defaults to the first of
            ``journey_id``, ``uid``, ``user_id`` present.
        conversions : DataFrame, optional
            ``id_col, ts`` plus optionally ``converted`` (bool; rows with False are not
            conversions) and ``value`` (default 1). Several conversions of one journey are
            summed and the earliest timestamp is the cut point. ``None``: conversions are
            the touch rows flagged in ``touches[converted_col]`` if that column exists
            (one-table logs such as ``cookie, time, channel, conversion,
            conversion_value``), else nothing converts.
        id_col, ts_col, channel_col, converted_col, value_col : str
            Column names (``id_col`` default: the first of ``journey_id``, ``uid``,
            ``user_id``, ``cookie``, ``customer_id`` present).
        lookback_days : float, optional
            Keep only touches at most this many days before the conversion (for journeys
            that did not convert: before their last touch).
        cut_at_conversion : bool
            Drop touches after the conversion (they cannot have caused it).

        Notes
        -----
        Touch ages (for time decay and the window) are measured back from the conversion;
        with ``cut_at_conversion=False`` from the later of the conversion and the last touch.
        A converting journey with no touch left after the window and the cut cannot be
        credited to any channel; its conversions are counted in
        ``Paths.unattributed_conversions`` instead of disappearing silently.
        Every journey is one path with weight (conversions, value, nulls = 1 - converted).
        """
        if id_col is None:
            id_col = next((c for c in _ID_COLS if c in touches.columns), None)
            if id_col is None:
                raise DataError(
                    f"touches: no id column; expected one of {_ID_COLS} (or pass id_col=)"
                )
        require_columns(touches, [id_col, ts_col, channel_col], table="touches")
        if len(touches) == 0:
            raise DataError("touches: no rows (empty input)")
        if conversions is None and converted_col in touches.columns:
            flagged = touches[converted_col].fillna(False).astype(bool).to_numpy()
            cols = [id_col, ts_col] + ([value_col] if value_col in touches.columns else [])
            conversions = touches.loc[flagged, cols]
        if lookback_days is not None and not (lookback_days > 0):
            raise ValidationError(f"lookback_days: must be > 0, got {lookback_days!r}")
        t = pd.DataFrame(
            {
                "jid": touches[id_col].to_numpy(),
                "ts": pd.to_datetime(touches[ts_col]).to_numpy(dtype="datetime64[ns]"),
                "ch": touches[channel_col].to_numpy(),
            }
        )
        if pd.isna(t["ch"]).any() or pd.isna(t["jid"]).any() or pd.isna(t["ts"]).any():
            bad = t[t.isna().any(axis=1)].head(3)
            raise DataError(f"touches: missing id/ts/channel in row(s):\n{bad}")
        jcode, jnames = pd.factorize(t["jid"], sort=True)
        ncodes = len(jnames)
        conv = np.zeros(ncodes)
        val = np.zeros(ncodes)
        conv_ts = np.full(ncodes, np.iinfo(np.int64).max, dtype=np.int64)
        has_conv = np.zeros(ncodes, dtype=bool)
        if conversions is not None and len(conversions):
            require_columns(conversions, [id_col], table="conversions")
            c = conversions
            if converted_col in c.columns:
                c = c[c[converted_col].astype(bool).to_numpy()]
            cidx = pd.Index(jnames).get_indexer(c[id_col].to_numpy())
            orphan = cidx < 0
            n_orphan = int(orphan.sum())
            cidx_ok = cidx[~orphan]
            cval = (
                c[value_col].to_numpy(dtype=np.float64, na_value=np.nan)
                if value_col in c.columns
                else np.ones(len(c))
            )
            _as_weights(cval, len(c), value_col, None)
            np.add.at(conv, cidx_ok, 1.0)
            np.add.at(val, cidx_ok, cval[~orphan])
            has_conv[cidx_ok] = True
            if ts_col in c.columns:
                cts = pd.to_datetime(c[ts_col]).to_numpy(dtype="datetime64[ns]").view(np.int64)
                np.minimum.at(conv_ts, cidx_ok, cts[~orphan])
            else:
                conv_ts[:] = np.iinfo(np.int64).max
        else:
            n_orphan = 0
        ts = t["ts"].to_numpy().view(np.int64)
        # journey end: the conversion time when converted and cut, else the last touch
        last_ts = np.full(ncodes, np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(last_ts, jcode, ts)
        has_cts = has_conv & (conv_ts != np.iinfo(np.int64).max)
        end = np.where(has_cts & cut_at_conversion, conv_ts, last_ts)
        end = np.where(has_cts & ~cut_at_conversion, np.maximum(conv_ts, last_ts), end)
        keep = np.ones(len(t), dtype=bool)
        if cut_at_conversion:
            keep &= ~(has_cts[jcode] & (ts > conv_ts[jcode]))
        age_days = (end[jcode] - ts) / 86_400e9
        if lookback_days is not None:
            keep &= age_days <= lookback_days
        order = np.lexsort((ts[keep], jcode[keep]))
        kept_j = jcode[keep][order]
        ch_codes, ch_names = pd.factorize(t["ch"].to_numpy()[keep][order], sort=True)
        names = [str(x).strip() for x in ch_names]
        if channels is not None:
            full = list(dict.fromkeys([*map(str, channels), *names]))
            remap = np.array([full.index(c) for c in names], dtype=np.int32)
            ch_codes = remap[ch_codes].astype(np.int64) if len(ch_codes) else ch_codes
            names = full
        _check_channels(names)
        counts = np.bincount(kept_j, minlength=ncodes)
        present = counts > 0
        unattributed = float(conv[~present].sum()) + n_orphan
        if not present.any():
            raise DataError("touches: no touch is left after the lookback window / conversion cut")
        offsets = np.zeros(int(present.sum()) + 1, dtype=np.int64)
        np.cumsum(counts[present], out=offsets[1:])
        return cls(
            tuple(names),
            offsets,
            ch_codes.astype(np.int32),
            conv[present],
            val[present],
            (~has_conv[present]).astype(np.float64),
            age=np.asarray(age_days[keep][order], dtype=np.float64),
            age_unit="days",
            unattributed_conversions=unattributed,
        )

    # ---------------------------------------------------------------- views
    def to_frame(self, sep: str = DEFAULT_SEP, *, aggregate: bool = True) -> pd.DataFrame:
        """The aggregated path table ``path, conversions, value, nulls`` (distinct paths)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        tokens = pa.DictionaryArray.from_arrays(
            pa.array(self.touches), pa.array(list(self.channels), type=pa.string())
        ).cast(pa.string())
        lists = pa.ListArray.from_arrays(pa.array(self.offsets.astype(np.int32)), tokens)
        strs = pc.binary_join(lists, sep).to_numpy(zero_copy_only=False)
        df = pd.DataFrame(
            {
                "path": strs,
                "conversions": self.conversions,
                "value": self.value,
                "nulls": self.nulls,
            }
        )
        if aggregate:
            df = df.groupby("path", as_index=False, sort=True).sum()
        return df

    def __repr__(self) -> str:
        return (
            f"Paths(n_paths={self.n_paths}, n_channels={self.n_channels}, "
            f"touches={len(self.touches)}, conversions={self.total_conversions:g}, "
            f"nulls={float(self.nulls.sum()):g})"
        )


def as_paths(data: Any, *, sep: str = DEFAULT_SEP, **kwargs: Any) -> Paths:
    """Coerce ``data`` to :class:`Paths` (a Paths, an aggregated DataFrame, or lists)."""
    if isinstance(data, Paths):
        return data
    if isinstance(data, pd.DataFrame):
        return Paths.from_frame(data, sep=sep, **kwargs)
    if isinstance(data, list | tuple):
        return Paths.from_lists(data, **kwargs)
    raise ValidationError(
        f"paths: expected Paths, a DataFrame with a 'path' column or a list of lists, got {type(data).__name__}"
    )
