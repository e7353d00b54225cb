from __future__ import annotations

import pandas as pd
import pytest

from mktlab.cli import main


@pytest.fixture
def path_file(tmp_path):
    f = tmp_path / "paths.csv"
    pd.DataFrame(
        {"path": ["A", "M", "A > M", "A"], "conversions": [2, 1, 1, 0], "nulls": [0, 0, 0, 1]}
    ).to_csv(f, index=False)
    return f


def test_run_markov_on_a_path_file(path_file, tmp_path, capsys):
    out = tmp_path / "table.csv"
    assert (
        main(
            [
                "attribution",
                "run",
                "--paths",
                str(path_file),
                "--method",
                "markov",
                "--method",
                "shapley",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "0.75" in text
    assert "2.4" in text
    table = pd.read_csv(out, index_col="channel")
    assert table.loc["A", "markov"] == pytest.approx(2.4)
    assert table.loc["M", "shapley"] == pytest.approx(1.5)


def test_wrong_separator_is_a_one_line_error(path_file, capsys):
    assert main(["attribution", "run", "--paths", str(path_file), "--sep", "|"]) == 2
    assert "separator" in capsys.readouterr().err


def test_missing_world_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MKTLAB_DATA_DIR", str(tmp_path / "nowhere"))
    assert main(["attribution", "run"]) == 2
    assert "no touches" in capsys.readouterr().err


def test_run_on_a_touch_log(tmp_path, capsys):
    f = tmp_path / "log.csv"
    pd.DataFrame(
        {
            "cookie": ["k1", "k1", "k2"],
            "time": ["2026-01-01 10:00", "2026-01-01 11:00", "2026-01-02 09:00"],
            "channel": ["a", "b", "a"],
            "conversion": [0, 1, 0],
        }
    ).to_csv(f, index=False)
    assert main(["attribution", "run", "--paths", str(f), "--method", "shapley"]) == 0
    out = capsys.readouterr().out
    assert "n_paths=2" in out


def test_unusable_file_is_a_clear_error(tmp_path, capsys):
    f = tmp_path / "x.csv"
    pd.DataFrame({"foo": [1]}).to_csv(f, index=False)
    assert main(["attribution", "run", "--paths", str(f)]) == 2
    assert "expected a 'path' column" in capsys.readouterr().err
