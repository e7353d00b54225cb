"""Atomic file writes: write to a temporary file beside the target, then rename.

An interrupted run therefore never leaves a half-written Parquet, DuckDB or JSON file;
the previous version stays intact until the new one is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    On error the temporary file (or folder) is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.unlink(tmp)  # callers create it themselves (some writers refuse an existing file)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_dir() and target.is_dir():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            tmp_path.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_path, target)
    except BaseException:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        else:
            tmp_path.unlink(missing_ok=True)
        raise


def write_parquet(table: Any, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Write a pandas DataFrame or pyarrow Table to Parquet atomically; return the path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    kwargs.setdefault("compression", "zstd")
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **kwargs)
    return Path(path)


def write_text(text: str, path: str | os.PathLike[str]) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def read_table(path: str | os.PathLike[str], what: str = "path") -> Any:
    """Read a CSV, TSV or Parquet file into a DataFrame, choosing the reader by suffix.

    ``what`` names the option or argument the path came from, for the error message.
    """
    import pandas as pd

    from mktlab.errors import ValidationError

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(p)
    if suffix in (".csv", ".txt"):
        return pd.read_csv(p)
    if suffix == ".tsv":
        return pd.read_csv(p, sep="\t")
    raise ValidationError(f"{what}: {p.name}: expected .csv, .tsv or .parquet")


class FileBacked:
    """A value derived from a file, reloaded when the file changes (mtime, size).

    The one cache helper of the reloading lookups (identity map, saved audiences,
    profiles): the file is stat-ed at most every ``every`` seconds, and ``load`` runs again
    only when the stamp moved. A missing file gives ``None``.

    Parameters
    ----------
    path_fn : callable returning Path
        Where the file is now (a pointer like the identity map's ``CURRENT`` may move).
    load : callable returning the value
    every : float
        Seconds between two stat calls.
    """

    def __init__(self, path_fn, load, every: float = 1.0):
        import threading

        self.path_fn, self.load, self.every = path_fn, load, every
        self._stamp: object = None
        self._value: object = None
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def get(self):
        import time

        now = time.monotonic()
        if now - self._checked < self.every:
            return self._value
        with self._lock:
            path = Path(self.path_fn())
            try:
                st = path.stat()
                stamp = (str(path), st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stamp = None
            if stamp is None:
                self._value = None
            elif stamp != self._stamp or self._value is None:
                self._value = self.load()
            self._stamp, self._checked = stamp, now
            return self._value
