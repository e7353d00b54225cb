"""Hillstrom loader: the real file, its search order, and clear errors on bad files."""

from __future__ import annotations

import pytest

from mktlab.datasets import copy_to_raw, load_hillstrom
from mktlab.datasets.hillstrom import ARMS, N_ROWS, SHA256, _sha256
from mktlab.errors import DataError


def test_loads_real_file_with_published_arm_means():
    df = load_hillstrom(verify_checksum=True)
    assert len(df) == N_ROWS
    assert set(df.segment.unique()) == set(ARMS)
    visit = df.groupby("segment").visit.mean()
    assert visit["Mens E-Mail"] == pytest.approx(0.1828, abs=1e-4)
    assert visit["Womens E-Mail"] == pytest.approx(0.1514, abs=1e-4)
    assert visit["No E-Mail"] == pytest.approx(0.1062, abs=1e-4)
    # randomised in thirds
    assert df.segment.value_counts(normalize=True).between(0.32, 0.345).all()


def test_copy_to_raw_then_found_there(workspace):
    dst = copy_to_raw()
    assert dst == workspace / "data" / "raw" / "hillstrom.csv"
    assert _sha256(dst) == SHA256
    assert len(load_hillstrom()) == N_ROWS


def test_explicit_missing_path(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_hillstrom(tmp_path / "nope.csv")


def test_wrong_header_names_columns(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("recency,history\n1,2\n")
    with pytest.raises(DataError, match="unexpected header; missing"):
        load_hillstrom(p)


def test_truncated_file(tmp_path):
    src = load_hillstrom.__globals__["find_hillstrom"]()
    p = tmp_path / "h.csv"
    p.write_text("".join(src.open().readlines()[:1001]))
    with pytest.raises(DataError, match="1,000 data rows, expected 64,000"):
        load_hillstrom(p)


def test_corrupt_values(tmp_path):
    src = load_hillstrom.__globals__["find_hillstrom"]()
    lines = src.open().readlines()
    lines[5] = "ten," + lines[5].split(",", 1)[1]
    p = tmp_path / "h.csv"
    p.write_text("".join(lines))
    with pytest.raises(DataError, match="corrupt or non-numeric"):
        load_hillstrom(p)


def test_checksum_mismatch(tmp_path):
    src = load_hillstrom.__globals__["find_hillstrom"]()
    lines = src.open().readlines()
    lines[2] = lines[2].replace("Surburban", "Urban", 1)
    p = tmp_path / "h.csv"
    p.write_text("".join(lines))
    assert len(load_hillstrom(p)) == N_ROWS
    with pytest.raises(DataError, match="sha256"):
        load_hillstrom(p, verify_checksum=True)


def test_nowhere_to_be_found_says_where_to_put_it(tmp_path, monkeypatch):
    from mktlab.datasets import find_hillstrom

    monkeypatch.setenv("MKTLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MKTLAB_SHARED_DATA_DIR", str(tmp_path / "shared"))
    with pytest.raises(DataError, match=r"Put the file at .*data/raw/hillstrom.csv"):
        find_hillstrom(download=False)
