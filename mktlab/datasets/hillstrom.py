"""The Hillstrom MineThatData e-mail experiment (2008), a real randomised test.

64,000 customers who bought within twelve months were assigned at random, a third
each, to a Mens e-mail, a Womens e-mail or no e-mail; visits, conversions and spend
were tracked for two weeks. Every arm's propensity is therefore 1/3.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd

from mktlab.config import settings
from mktlab.errors import DataError

FILENAME = "hillstrom.csv"
SHA256 = "ff9e59285e9dc3f5fa3e0975419e6631ea5bdccd65d818991473d2367e02979c"
N_ROWS = 64_000
URL = "http://www.minethatdata.com/Kevin_Hillstrom_MineThatData_E-MailAnalytics_DataMiningChallenge_2008.03.20.csv"
COLUMNS = [
    "recency", "history_segment", "history", "mens", "womens", "zip_code",
    "newbie", "channel", "segment", "visit", "conversion", "spend",
]  # fmt: skip
ARMS = ("No E-Mail", "Mens E-Mail", "Womens E-Mail")
_DTYPES = {
    "recency": "int64", "history": "float64", "mens": "int8", "womens": "int8",
    "newbie": "int8", "visit": "int8", "conversion": "int8", "spend": "float64",
}  # fmt: skip


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def candidate_paths(path: str | Path | None = None) -> list[Path]:
    """Where :func:`find_hillstrom` looks, in order."""
    s = settings()
    out = [Path(path)] if path is not None else []
    out += [s.raw_dir / FILENAME, s.shared_data_dir / FILENAME]
    return out


def _download(target: Path) -> Path:
    from mktlab.io import atomic_path

    with atomic_path(target) as tmp:
        try:
            with urllib.request.urlopen(URL, timeout=30) as resp, tmp.open("wb") as fh:
                shutil.copyfileobj(resp, fh)
        except (urllib.error.URLError, OSError) as exc:
            raise DataError(f"download of {URL} failed: {exc}") from exc
        digest = _sha256(tmp)
        if digest != SHA256:
            raise DataError(f"downloaded {FILENAME} has sha256 {digest}, expected {SHA256}")
    return target


def find_hillstrom(path: str | Path | None = None, *, download: bool = True) -> Path:
    """Return the path of ``hillstrom.csv``.

    Looks at ``path`` (if given), then ``data/raw/``, then ``../shared/data/``, then
    downloads it from its public source into ``data/raw/`` with a sha256 check.

    Raises
    ------
    DataError
        When no copy is found and the download fails; the message says where to put it.
    """
    if path is not None and not Path(path).exists():
        raise DataError(f"{path}: no such file (expected the Hillstrom CSV)")
    for p in candidate_paths(path):
        if p.is_file():
            return p
    target = settings().raw_dir / FILENAME
    if download:
        try:
            return _download(target)
        except DataError as exc:
            reason = str(exc)
    else:
        reason = "download disabled"
    looked = ", ".join(str(p) for p in candidate_paths(path))
    raise DataError(
        f"{FILENAME} not found (looked in {looked}) and {reason}. Put the file at {target} "
        f"(sha256 {SHA256})."
    )


def load_hillstrom(
    path: str | Path | None = None, *, verify_checksum: bool = False
) -> pd.DataFrame:
    """Load the Hillstrom e-mail experiment as a DataFrame of 64,000 rows.

    Parameters
    ----------
    path : str or Path, optional
        A specific CSV to read. Otherwise see :func:`find_hillstrom`.
    verify_checksum : bool, default False
        Also check the file's sha256 against the published copy.

    Returns
    -------
    pandas.DataFrame
        The CSV's columns (``recency, history_segment, history, mens, womens, zip_code,
        newbie, channel, segment, visit, conversion, spend``) with numeric dtypes.

    Raises
    ------
    DataError
        Missing file, wrong header, wrong row count, unknown arm, or bad values; the
        message names the file and what is wrong.
    """
    p = find_hillstrom(path)
    if verify_checksum and (digest := _sha256(p)) != SHA256:
        raise DataError(f"{p}: sha256 {digest} does not match the published {SHA256}")
    try:
        header = p.open(encoding="utf-8").readline().strip().split(",")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: cannot read ({exc})") from exc
    if header != COLUMNS:
        missing = [c for c in COLUMNS if c not in header]
        extra = [c for c in header if c not in COLUMNS]
        raise DataError(
            f"{p}: unexpected header; missing {missing or 'none'}, unexpected {extra or 'none'} "
            f"(expected {','.join(COLUMNS)})"
        )
    try:
        df = pd.read_csv(p, dtype=_DTYPES)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{p}: corrupt or non-numeric values ({exc})") from exc
    if len(df) != N_ROWS:
        raise DataError(
            f"{p}: {len(df):,} data rows, expected {N_ROWS:,} (truncated or altered file?)"
        )
    bad_arm = ~df["segment"].isin(ARMS)
    if bad_arm.any():
        raise DataError(
            f"{p}: unknown segment values {sorted(df.loc[bad_arm, 'segment'].unique())[:5]}"
        )
    if df.isna().any().any():
        cols = df.columns[df.isna().any()].tolist()
        raise DataError(f"{p}: missing values in column(s) {cols}")
    return df


def copy_to_raw(path: str | Path | None = None) -> Path:
    """Copy the Hillstrom CSV into ``data/raw/`` (idempotent) and return the copy's path."""
    src = find_hillstrom(path)
    dst = settings().raw_dir / FILENAME
    if src.resolve() == dst.resolve():
        return dst
    from mktlab.io import atomic_path

    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst
