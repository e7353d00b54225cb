"""``mktlab audience`` commands end to end on small Parquet files."""

from __future__ import annotations

import pandas as pd

from mktlab.cli import main

from .conftest import events_frame, profiles_frame


def test_build_query_save_list_refresh_overlap(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MKTLAB_DATA_DIR", str(tmp_path / "data"))
    profiles_frame().to_parquet(tmp_path / "p.parquet")
    events_frame().to_parquet(tmp_path / "e.parquet")
    assert (
        main(
            [
                "audience",
                "build",
                "--profiles",
                str(tmp_path / "p.parquet"),
                "--events",
                str(tmp_path / "e.parquet"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "users=9" in out
    assert "audience_store.duckdb" in out

    assert main(["audience", "query", 'vip & city == "SH"', "--sample", "2", "--sql"]) == 0
    out = capsys.readouterr().out
    assert "size: 2 of 9 users" in out
    assert "SELECT" in out

    export = tmp_path / "out.csv"
    assert (
        main(
            [
                "audience",
                "query",
                "purchased_30d",
                "--sample",
                "0",
                "--export",
                str(export),
                "--hash-salt",
                "s",
            ]
        )
        == 0
    )
    assert len(pd.read_csv(export)) == 3

    assert (
        main(["audience", "save", "buyers", "purchased_30d", "--description", "30-day buyers"]) == 0
    )
    assert main(["audience", "save", "sh", 'city == "SH"']) == 0
    assert "saved @sh: 3 users" in capsys.readouterr().out
    assert main(["audience", "query", "@buyers & @sh", "--sample", "0"]) == 0
    assert "size: 2 of 9" in capsys.readouterr().out
    assert main(["audience", "list"]) == 0
    out = capsys.readouterr().out
    assert "buyers" in out
    assert "30-day buyers" in out
    assert main(["audience", "refresh"]) == 0
    assert "old_size" in capsys.readouterr().out
    assert main(["audience", "overlap", "--value", "intersection"]) == 0
    assert "buyers" in capsys.readouterr().out


def test_errors_exit_2_with_caret(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MKTLAB_DATA_DIR", str(tmp_path / "data"))
    profiles_frame().to_parquet(tmp_path / "p.parquet")
    assert main(["audience", "build", "--profiles", str(tmp_path / "p.parquet")]) == 0
    capsys.readouterr()
    assert main(["audience", "query", "city >= 3"]) == 2
    err = capsys.readouterr().err
    assert "type mismatch" in err
    assert "          ^" in err
    assert main(["audience", "query", "vip", "--store", str(tmp_path / "none.duckdb")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["audience", "save", "9bad", "vip"]) == 2
