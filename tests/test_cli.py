"""The mktlab command line, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys


def _mktlab(*args: str, env_root=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mktlab.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_subcommands():
    out = _mktlab("--help")
    assert out.returncode == 0
    for name in ("world", "data", "demo"):
        assert name in out.stdout


def test_world_generate_and_summary(workspace):
    out = _mktlab("world", "generate", "--users", "2000", "--seed", "3")
    assert out.returncode == 0, out.stderr
    assert "world of 2,000 users (seed 3)" in out.stdout
    assert (workspace / "data" / "raw" / "world" / "identities.parquet").is_file()
    out = _mktlab("world", "summary")
    assert out.returncode == 0
    assert "campaign_truth" in out.stdout


def test_bad_input_is_one_clear_line():
    out = _mktlab("world", "generate", "--users", "5", "--seed", "1")
    assert out.returncode == 2
    assert "error: n_users must be between 100" in out.stderr
    assert "Traceback" not in out.stderr


def test_data_check_reports_hillstrom():
    out = _mktlab("data", "check")
    assert out.returncode == 0, out.stderr
    assert "hillstrom: 64,000 rows" in out.stdout


def test_demo_small_runs_end_to_end(workspace):
    out = _mktlab("demo", "--users", "3000", "--seed", "5")
    assert out.returncode == 0, out.stderr
    assert "== summary" in out.stdout
    from mktlab import tracking

    runs = tracking.runs("demo")
    assert len(runs) >= 1
    assert runs.iloc[0]["metrics.world_users"] == 3000
