"""The :class:`IdentityMap`: identifiers -> person (``global_id``, dense ``uid``).

Saved layout (``settings().processed_dir / "identity"`` by default)::

    identity/CURRENT                 name of the live version folder (written last, atomically)
    identity/v-<stamp>/mapping.parquet   id_type, id_value, global_id, uid   (what readers use)
    identity/v-<stamp>/nodes.parquet     every identifier of the graph (incl. hubs) + uid
    identity/v-<stamp>/edges.parquet     links u, v, first_ts, last_ts, n_records
    identity/v-<stamp>/{audit,history,quarantine,excluded}.parquet, meta.json

A crash while saving leaves at most an orphan folder: ``CURRENT`` still names the previous
complete version, and the next save removes the orphan.
"""

from __future__ import annotations

import json
import shutil
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from mktlab.config import settings
from mktlab.errors import DataError, NotFoundError, ValidationError, require_columns
from mktlab.identity._encode import (
    as_id_strings,
    format_global_ids,
    index_in,
    normalize_values,
    parse_global_ids,
)
from mktlab.identity.merge_rules import IdentityRules
from mktlab.identity.report import IdentityReport
from mktlab.io import atomic_path, write_parquet, write_text

FORMAT_VERSION = 1
_TABLES = ("mapping", "nodes", "edges", "audit", "history", "quarantine", "excluded")


class UnresolvedIdentifiersWarning(UserWarning):
    """Some rows could not be given a uid (unknown, blocked or hub identifiers)."""


class Person(NamedTuple):
    """Result of :meth:`IdentityMap.lookup`."""

    global_id: str
    uid: int


def default_path() -> Path:
    """Where maps are saved unless told otherwise."""
    return settings().processed_dir / "identity"


def _empty_audit() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id_type_a": pd.Series(dtype="str"),
            "id_value_a": pd.Series(dtype="str"),
            "id_type_b": pd.Series(dtype="str"),
            "id_value_b": pd.Series(dtype="str"),
            "first_ts": pd.Series(dtype="datetime64[ns]"),
            "last_ts": pd.Series(dtype="datetime64[ns]"),
            "n_records": pd.Series(dtype="int64"),
            "reason": pd.Series(dtype="str"),
        }
    )


def empty_history() -> pd.DataFrame:
    """A history table with no rows (the columns and dtypes every map's history has)."""
    return pd.DataFrame(
        {
            "ts": pd.Series(dtype="datetime64[ns]"),
            "as_of": pd.Series(dtype="datetime64[ns]"),
            "event": pd.Series(dtype="str"),
            "global_id": pd.Series(dtype="str"),
            "uid": pd.Series(dtype="uint32"),
            "other_global_id": pd.Series(dtype="str"),
            "other_uid": pd.Series(dtype="uint32"),
        }
    )


class IdentityMap:
    """Identifiers resolved to people, with the evidence and history behind it.

    Build one with :func:`mktlab.identity.resolve` or :meth:`load`.

    Attributes
    ----------
    mapping : DataFrame
        ``id_type, id_value, global_id, uid`` (``uid`` is uint32), one row per identifier
        that belongs to a person, sorted by ``uid``.
    report : IdentityReport
        Numbers of the run that built the map.
    audit : DataFrame
        Refused links with their ``reason`` (``single_valued:<type>``, ``limit:<type>``,
        ``hub``), evidence counts and timestamps.
    history : DataFrame
        Merges, splits and retirements across runs: ``ts, as_of, event, global_id, uid,
        other_global_id, other_uid``.
    quarantine : DataFrame
        Bad input rows with a ``reason`` column (``errors="quarantine"``).
    excluded : DataFrame
        Identifiers never used for linking: ``id_type, id_value, reason`` (``blocked`` or
        ``hub``), ``n_observations``.
    rules : IdentityRules
        The rules the map was built with.
    next_uid : int
        The next uid to hand out; uids below it are never reused.
    """

    def __init__(
        self,
        *,
        mapping: pd.DataFrame,
        nodes: pd.DataFrame,
        edges: pd.DataFrame,
        rules: IdentityRules,
        next_uid: int,
        report: IdentityReport | None = None,
        audit: pd.DataFrame | None = None,
        history: pd.DataFrame | None = None,
        quarantine: pd.DataFrame | None = None,
        excluded: pd.DataFrame | None = None,
    ) -> None:
        self.mapping = mapping
        self.nodes = nodes
        self.edges = edges
        self.rules = rules
        self.next_uid = int(next_uid)
        self.report = report if report is not None else IdentityReport()
        self.audit = audit if audit is not None else _empty_audit()
        self.history = history if history is not None else empty_history()
        self.quarantine = quarantine if quarantine is not None else pd.DataFrame()
        self.excluded = excluded if excluded is not None else pd.DataFrame(
            {"id_type": pd.Series(dtype="str"), "id_value": pd.Series(dtype="str"),
             "reason": pd.Series(dtype="str"), "n_observations": pd.Series(dtype="int64")}
        )  # fmt: skip
        self._by_type: dict[str, tuple[pd.Series, np.ndarray]] | None = None
        self._scalar_index: dict[str, pd.Index] = {}

    # ----------------------------------------------------------------- basics
    def __repr__(self) -> str:
        return (
            f"IdentityMap({self.n_people:,} people, {len(self.mapping):,} identifiers, "
            f"next_uid={self.next_uid:,})"
        )

    def __len__(self) -> int:
        return len(self.mapping)

    @property
    def n_people(self) -> int:
        """Number of people in the map."""
        return int(self.mapping["uid"].nunique()) if len(self.mapping) else 0

    @property
    def people(self) -> pd.DataFrame:
        """One row per person: ``global_id, uid, n_identifiers`` plus one count per type."""
        m = self.mapping
        counts = pd.crosstab(m["uid"], m["id_type"]).reindex(columns=self.rules.names, fill_value=0)
        out = counts.reset_index()
        out.insert(0, "global_id", format_global_ids(out["uid"].to_numpy()).to_numpy())
        out.insert(2, "n_identifiers", counts.sum(axis=1).to_numpy())
        out.columns.name = None
        return out

    def _type_tables(self) -> dict[str, tuple[pd.Series, np.ndarray]]:
        if self._by_type is None:
            m = self.mapping
            self._by_type = {}
            codes, uniq = pd.factorize(m["id_type"])
            for i, name in enumerate(uniq):
                rows = np.flatnonzero(codes == i)
                self._by_type[str(name)] = (
                    m["id_value"].iloc[rows].reset_index(drop=True),
                    m["uid"].to_numpy()[rows].astype(np.int64),
                )
        return self._by_type

    # --------------------------------------------------------------- lookups
    def _uids_for(
        self, types: pd.Series | None, type_name: str | None, values: pd.Series
    ) -> np.ndarray:
        """uid per row (-1 when unresolved), one hash pass per id type."""
        n = len(values)
        out = np.full(n, -1, dtype=np.int64)
        tables = self._type_tables()
        if type_name is not None:
            groups = [(type_name, np.arange(n))]
        else:
            assert types is not None
            tcodes, tuniq = pd.factorize(types)
            groups = [(str(t), np.flatnonzero(tcodes == i)) for i, t in enumerate(tuniq)]
        for raw_name, rows in groups:
            name = self.rules.canonical(raw_name)
            if name is None or name not in tables or len(rows) == 0:
                continue
            mode = self.rules.rule(name).normalize
            vals = values.iloc[rows]
            vcodes, vuniq = pd.factorize(vals)
            if len(vuniq) == 0:
                continue
            norm = normalize_values(as_id_strings(vuniq), mode)
            ref_values, ref_uids = tables[name]
            pos = index_in(norm, ref_values)
            uid_u = np.where(pos >= 0, ref_uids[np.maximum(pos, 0)], -1)
            ok = vcodes >= 0
            out[rows[ok]] = uid_u[vcodes[ok]]
        return out

    def lookup(self, id_type: str, id_value: Any) -> Person:
        """The person an identifier belongs to.

        Raises
        ------
        NotFoundError
            When the identifier is unknown, blocked or a hub.
        """
        canon = self.rules.canonical(id_type)
        if canon is None:
            raise NotFoundError(f"lookup: unknown id_type {id_type!r}; known: {self.rules.names}")
        id_type = canon
        if id_type not in self._scalar_index:
            values, _ = self._type_tables().get(id_type, (pd.Series([], dtype="str"), None))
            self._scalar_index[id_type] = pd.Index(values)
        norm = normalize_values(pd.Series([id_value]), self.rules.rule(id_type).normalize).iloc[0]
        idx = self._scalar_index[id_type]
        try:
            pos = idx.get_loc(norm)
        except KeyError:
            raise NotFoundError(f"lookup: no person holds {id_type}={id_value!r}") from None
        uid = int(self._type_tables()[id_type][1][pos])
        return Person(str(format_global_ids(np.array([uid])).iloc[0]), uid)

    def _uid_of(self, person: str | int) -> int:
        if isinstance(person, (int, np.integer)):
            return int(person)
        uid = int(parse_global_ids(pd.Series([str(person)]))[0])
        if uid < 0:
            raise NotFoundError(f"identifiers_of: {person!r} is not a global_id")
        return uid

    def identifiers_of(self, global_id: str | int) -> pd.DataFrame:
        """All identifiers of one person (``global_id`` string or ``uid``)."""
        uid = self._uid_of(global_id)
        u = self.mapping["uid"].to_numpy()
        lo, hi = np.searchsorted(u, uid, "left"), np.searchsorted(u, uid, "right")
        if lo == hi:
            raise NotFoundError(f"identifiers_of: no person {global_id!r} in the map")
        return self.mapping.iloc[lo:hi][["id_type", "id_value"]].reset_index(drop=True)

    def global_ids(self, uids: Any) -> np.ndarray:
        """Global ids of ``uids`` (array-like or a pyroaring BitMap), in the given order."""
        if hasattr(uids, "to_array"):  # pyroaring BitMap
            arr = np.asarray(uids.to_array())
        elif isinstance(uids, (np.ndarray, pd.Series, pd.Index, list, tuple)):
            arr = np.asarray(uids)
        else:
            arr = np.fromiter(uids, dtype=np.int64)
        arr = arr.astype(np.int64)
        if len(arr) and (arr.min() < 0 or arr.max() >= self.next_uid):
            bad = arr[(arr < 0) | (arr >= self.next_uid)][:5]
            raise NotFoundError(f"global_ids: uid(s) never assigned by this map: {bad.tolist()}")
        return format_global_ids(arr).to_numpy(dtype=object)

    def uids(self, global_ids: Any) -> np.ndarray:
        """uint32 uids of ``global_ids`` (inverse of :meth:`global_ids`)."""
        out = parse_global_ids(pd.Series(list(global_ids), dtype="str"))
        if (out < 0).any():
            raise NotFoundError(
                f"uids: not global ids: {pd.Series(list(global_ids))[out < 0].head().tolist()}"
            )
        return out.astype(np.uint32)

    def attach_uid(
        self,
        df: pd.DataFrame,
        id_type: str | None = None,
        id_type_col: str = "id_type",
        id_value_col: str = "id_value",
        uid_col: str = "uid",
        warn: bool = True,
    ) -> pd.DataFrame:
        """Return ``df`` with a nullable ``uid`` column resolved from raw identifiers.

        Parameters
        ----------
        df : DataFrame
            Rows keyed by raw identifiers (e.g. events).
        id_type : str, optional
            Every row is of this type (e.g. ``"user_id"`` for profiles); then only
            ``id_value_col`` is read.
        id_type_col, id_value_col : str
            Column names of the identifier.
        uid_col : str
            Name of the added column (``UInt32``, ``<NA>`` where unresolved).
        warn : bool
            Warn with the number of unresolved rows. The count is always stored in
            ``result.attrs["uid_unresolved"]``; rows are never dropped.
        """
        cols = [id_value_col] if id_type is not None else [id_type_col, id_value_col]
        require_columns(df, cols, table="attach_uid input")
        if id_type is not None and self.rules.canonical(id_type) is None:
            raise ValidationError(
                f"attach_uid: unknown id_type {id_type!r}; known: {self.rules.names}"
            )
        values = df[id_value_col].reset_index(drop=True)
        types = None if id_type is not None else df[id_type_col].reset_index(drop=True)
        u = self._uids_for(types, id_type, values)
        miss = u < 0
        out = df.copy()
        out[uid_col] = pd.arrays.IntegerArray(np.where(miss, 0, u).astype(np.uint32), miss)
        n_miss = int(miss.sum())
        out.attrs["uid_unresolved"] = n_miss
        if n_miss and warn:
            warnings.warn(
                f"attach_uid: {n_miss:,} of {len(df):,} rows ({n_miss / max(len(df), 1):.2%}) "
                "have no uid (unknown, blocked or hub identifiers); they are kept with <NA>",
                UnresolvedIdentifiersWarning,
                stacklevel=2,
            )
        return out

    # ----------------------------------------------------------- persistence
    def save(self, path: str | Path | None = None) -> Path:
        """Save atomically under ``path`` (default ``settings().processed_dir/"identity"``).

        Returns the folder of the new version. The previous version stays readable until
        the new one is complete; only then is ``CURRENT`` switched and the old one removed.
        """
        root = Path(path) if path is not None else default_path()
        root.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        name = f"v-{stamp}-{uuid.uuid4().hex[:8]}"
        target = root / name
        with atomic_path(target) as tmp:
            tmp.mkdir()
            for table in _TABLES:
                write_parquet(_parquet_safe(getattr(self, table)), tmp / f"{table}.parquet")
            meta = {
                "format_version": FORMAT_VERSION,
                "saved_at": datetime.now(UTC).isoformat(),
                "next_uid": self.next_uid,
                "rules": self.rules.to_dict(),
                "report": self.report.to_dict(),
            }
            write_text(json.dumps(meta, indent=2, default=str), tmp / "meta.json")
        write_text(name + "\n", root / "CURRENT")
        for old in root.iterdir():  # older versions and orphans of crashed saves
            if old.name != name and old.is_dir() and old.name.lstrip(".").startswith("v-"):
                shutil.rmtree(old, ignore_errors=True)
        return target

    @staticmethod
    def current_dir(path: str | Path | None = None) -> Path:
        """Folder of the live saved version (read ``mapping.parquet`` there with DuckDB)."""
        root = Path(path) if path is not None else default_path()
        pointer = root / "CURRENT"
        if not pointer.is_file():
            raise NotFoundError(
                f"no identity map saved at {root} (missing CURRENT); run `mktlab identity resolve`"
            )
        target = root / pointer.read_text().strip()
        if not target.is_dir():
            raise DataError(
                f"identity map at {root}: CURRENT names {target.name}, which is missing"
            )
        return target

    @classmethod
    def load(cls, path: str | Path | None = None) -> IdentityMap:
        """Load the map saved under ``path`` (default ``settings().processed_dir/"identity"``)."""
        import pyarrow.parquet as pq

        target = cls.current_dir(path)
        try:
            meta = json.loads((target / "meta.json").read_text())
            tables = {t: pq.read_table(target / f"{t}.parquet").to_pandas() for t in _TABLES}
        except (OSError, ValueError) as exc:
            raise DataError(f"identity map at {target} is unreadable: {exc}") from exc
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"identity map at {target}: unsupported format {meta.get('format_version')}"
            )
        tables["mapping"]["uid"] = tables["mapping"]["uid"].astype(np.uint32)
        return cls(
            rules=IdentityRules.from_dict(meta["rules"]),
            next_uid=int(meta["next_uid"]),
            report=IdentityReport.from_dict(meta.get("report", {})),
            **tables,
        )


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Quarantined rows may hold mixed objects; store those columns as strings."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = (
                out[c]
                .map(
                    lambda x: (
                        None if x is None or (isinstance(x, float) and np.isnan(x)) else str(x)
                    )
                )
                .astype("str")
            )
    out.columns = [str(c) for c in out.columns]
    return out


def attach_uid(
    df: pd.DataFrame, imap: IdentityMap, id_type: str | None = None, **kwargs: Any
) -> pd.DataFrame:
    """Module-level form of :meth:`IdentityMap.attach_uid`."""
    return imap.attach_uid(df, id_type=id_type, **kwargs)
