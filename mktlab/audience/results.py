"""Audience results: size, samples, export (optionally hashed ids), overlap and plots."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from pyroaring import BitMap
from tqdm.auto import tqdm

from mktlab.audience._bitmaps import bitmap_to_numpy
from mktlab.errors import ValidationError
from mktlab.io import atomic_path, write_parquet


class IdentityMapLike(Protocol):
    """Anything that maps uids to global ids (e.g. ``mktlab.identity.IdentityMap``)."""

    def global_ids(self, uids: np.ndarray) -> Any: ...


@dataclass
class Audience:
    """The result of an expression: the member bitmap plus how it was made.

    Attributes
    ----------
    expression : str
    bitmap : pyroaring.BitMap
    seconds : float
        Evaluation time.
    as_of : datetime.date or None
        The end day of the windows used.
    """

    expression: str
    bitmap: BitMap
    seconds: float = 0.0
    as_of: dt.date | None = None
    _array: np.ndarray | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        """Exact number of members."""
        return len(self.bitmap)

    def __len__(self) -> int:
        return len(self.bitmap)

    def __contains__(self, uid: int) -> bool:
        return int(uid) in self.bitmap

    def __repr__(self) -> str:
        return f"Audience({self.expression!r}, size={self.size:,}, {self.seconds * 1e3:.1f} ms)"

    def uids(self) -> np.ndarray:
        """Members as a sorted ``uint32`` array."""
        if self._array is None:
            self._array = bitmap_to_numpy(self.bitmap)
        return self._array

    def sample(
        self, n: int = 10, *, seed: int = 0, identity_map: IdentityMapLike | None = None
    ) -> pd.DataFrame:
        """A uniform random sample of ``n`` members (``uid`` and, with a map, ``global_id``)."""
        if n < 0:
            raise ValidationError(f"n must be >= 0, got {n}")
        k = min(n, self.size)
        rng = np.random.default_rng(seed)
        ranks = (
            np.sort(rng.choice(self.size, size=k, replace=False))
            if k
            else np.empty(0, dtype=np.int64)
        )
        uids = np.asarray([self.bitmap[int(r)] for r in ranks], dtype=np.uint32)
        return _frame(uids, identity_map)

    def to_frame(
        self, *, identity_map: IdentityMapLike | None = None, hash_salt: str | None = None
    ) -> pd.DataFrame:
        """All members as a table: ``uid``, ``global_id`` (with a map) or ``hashed_id``.

        With ``hash_salt`` the ids are replaced by ``sha256(salt + id)`` hex digests and
        the raw ids are dropped, as ad platforms expect for customer-list uploads.
        """
        frame = _frame(self.uids(), identity_map)
        if hash_salt is None:
            return frame
        if not isinstance(hash_salt, str) or not hash_salt:
            raise ValidationError("hash_salt must be a non-empty string")
        key = "global_id" if "global_id" in frame else "uid"
        salt = hash_salt.encode()
        hashed = [
            hashlib.sha256(salt + str(v).encode()).hexdigest()
            for v in tqdm(frame[key].tolist(), desc="hash", disable=len(frame) < 1_000_000)
        ]
        return pd.DataFrame({"hashed_id": hashed})

    def export(
        self,
        path: str | Path,
        *,
        format: str | None = None,
        identity_map: IdentityMapLike | None = None,
        hash_salt: str | None = None,
    ) -> Path:
        """Write the members to Parquet or CSV atomically; returns the path.

        Parameters
        ----------
        path : str or Path
            Target file; the format follows the suffix unless ``format`` is given.
        format : {"parquet", "csv"}, optional
        identity_map : object with ``global_ids(uids)``, optional
            Export global ids instead of uids.
        hash_salt : str, optional
            Export ``sha256(salt + id)`` instead of the ids.
        """
        path = Path(path)
        fmt = (format or path.suffix.lstrip(".")).lower()
        if fmt not in ("parquet", "csv"):
            raise ValidationError(
                f"export format must be 'parquet' or 'csv', got {fmt!r} (from {path.name})"
            )
        frame = self.to_frame(identity_map=identity_map, hash_salt=hash_salt)
        if fmt == "parquet":
            return write_parquet(frame, path)
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
        return path


def _frame(uids: np.ndarray, identity_map: IdentityMapLike | None) -> pd.DataFrame:
    frame = pd.DataFrame({"uid": uids.astype(np.uint32)})
    if identity_map is not None:
        gids = np.asarray(identity_map.global_ids(uids), dtype=object)
        if len(gids) != len(uids):
            raise ValidationError(
                f"identity_map.global_ids returned {len(gids)} ids for {len(uids)} uids"
            )
        frame["global_id"] = (
            pd.array(gids.astype(str), dtype="str") if len(gids) else pd.array([], dtype="str")
        )
    return frame


def _bitmaps(audiences: dict[str, Any]) -> dict[str, BitMap]:
    if not audiences:
        raise ValidationError("overlap: give at least one audience")
    return {k: getattr(v, "bitmap", v) for k, v in audiences.items()}


def overlap(audiences: dict[str, Any]) -> pd.DataFrame:
    """Pairwise overlap of audiences (long format, one row per ordered pair).

    Parameters
    ----------
    audiences : dict
        Label -> :class:`Audience` or BitMap.

    Returns
    -------
    DataFrame
        Columns ``a, b, size_a, size_b, intersection, union, jaccard, share_of_a``;
        pivot with :func:`overlap_matrix`.
    """
    sets = _bitmaps(audiences)
    rows = []
    for a, b in itertools.product(sets, repeat=2):
        x, y = sets[a], sets[b]
        inter = x.intersection_cardinality(y)
        union = x.union_cardinality(y)
        rows.append(
            {
                "a": a,
                "b": b,
                "size_a": len(x),
                "size_b": len(y),
                "intersection": inter,
                "union": union,
                "jaccard": inter / union if union else 0.0,
                "share_of_a": inter / len(x) if len(x) else 0.0,
            }
        )
    return pd.DataFrame(rows)


def overlap_matrix(audiences: dict[str, Any], value: str = "intersection") -> pd.DataFrame:
    """Square matrix of ``value`` (``intersection``, ``jaccard`` or ``share_of_a``)."""
    if value not in ("intersection", "jaccard", "share_of_a", "union"):
        raise ValidationError(
            f"value must be intersection, jaccard, share_of_a or union; got {value!r}"
        )
    long = overlap(audiences)
    names = list(_bitmaps(audiences))
    return long.pivot(index="a", columns="b", values=value).loc[names, names]


def upset_counts(audiences: dict[str, Any]) -> pd.DataFrame:
    """Sizes of every exclusive intersection (the bars of an UpSet plot).

    Row for combination ``S`` = users in every audience of ``S`` and in none of the others.
    """
    sets = _bitmaps(audiences)
    names = list(sets)
    if len(names) > 10:
        raise ValidationError(f"upset: at most 10 audiences, got {len(names)}")
    everyone = BitMap.union(*sets.values())
    rows = []
    for r in range(1, len(names) + 1):
        for combo in itertools.combinations(names, r):
            members = BitMap(everyone)
            for n in names:
                if n in combo:
                    members &= sets[n]
                else:
                    members -= sets[n]
            if members:
                rows.append({"sets": combo, "degree": r, "size": len(members)})
    out = pd.DataFrame(rows, columns=["sets", "degree", "size"])
    return out.sort_values("size", ascending=False, ignore_index=True)


def plot_upset(audiences: dict[str, Any], *, max_bars: int = 20, ax=None):
    """UpSet-style plot: bars of exclusive intersections over a dot matrix.

    Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    sets = _bitmaps(audiences)
    names = list(sets)
    counts = upset_counts(sets).head(max_bars)
    if ax is None:
        fig, (top, bottom) = plt.subplots(
            2,
            1,
            figsize=(max(6, 0.5 * len(counts) + 2), 2.5 + 0.4 * len(names)),
            gridspec_kw={"height_ratios": [3, max(1, 0.35 * len(names))]},
            sharex=True,
        )
    else:
        fig = ax.figure
        top = ax
        bottom = ax.inset_axes([0, -0.6, 1, 0.5])
    x = np.arange(len(counts))
    top.bar(x, counts["size"], color="#4c72b0")
    for xi, s in zip(x, counts["size"]):
        top.text(xi, s, f"{s:,}", ha="center", va="bottom", fontsize=8)
    top.set_ylabel("users (exclusive)")
    top.set_title("Audience overlap (UpSet)")
    for yi, _n in enumerate(names):
        bottom.scatter(x, [yi] * len(x), color="#dddddd", s=40)
    for xi, combo in zip(x, counts["sets"]):
        ys = [names.index(n) for n in combo]
        bottom.scatter([xi] * len(ys), ys, color="#333333", s=40)
        if len(ys) > 1:
            bottom.plot([xi, xi], [min(ys), max(ys)], color="#333333")
    bottom.set_yticks(range(len(names)))
    bottom.set_yticklabels([f"{n} ({len(sets[n]):,})" for n in names])
    bottom.set_xticks([])
    bottom.set_ylim(-0.5, len(names) - 0.5)
    fig.tight_layout()
    return fig


def plot_overlap_heatmap(audiences: dict[str, Any], *, value: str = "jaccard", ax=None):
    """Heatmap of :func:`overlap_matrix`; returns the Figure."""
    import matplotlib.pyplot as plt

    mat = overlap_matrix(audiences, value)
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.2 * len(mat) + 2, 1.0 * len(mat) + 1.5))
    else:
        fig = ax.figure
    im = ax.imshow(mat.to_numpy(dtype=float), cmap="Blues")
    ax.set_xticks(range(len(mat)), mat.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(mat)), mat.index)
    for i, j in itertools.product(range(len(mat)), repeat=2):
        v = mat.iat[i, j]
        ax.text(
            j,
            i,
            f"{v:.2f}" if value != "intersection" else f"{int(v):,}",
            ha="center",
            va="center",
            fontsize=8,
        )
    fig.colorbar(im, ax=ax, label=value)
    ax.set_title(f"Audience overlap ({value})")
    fig.tight_layout()
    return fig
