"""The mktlab command line, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys

import pytest


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


@pytest.mark.slow
def test_demo_small_runs_end_to_end_and_exits(workspace):
    """``make demo`` on a small world: every stage, then the live service answers and stops."""
    import os
    import uuid

    from mktlab.service.server import free_port

    env = {
        **os.environ,
        "DEMO_EXIT": "1",
        "MKTLAB_SERVICE_PORT": str(free_port()),
        "MKTLAB_SERVICE_NAMESPACE": f"test-demo:{uuid.uuid4().hex[:8]}:cp",
    }
    out = subprocess.run(
        [sys.executable, "-m", "mktlab.cli", "demo", "--users", "5000", "--seed", "5"],
        capture_output=True, text=True, timeout=1800, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    for stage in (
        "identity",
        "audiences",
        "uplift",
        "sandbox",
        "attribution",
        "rl policy",
        "coupon flash sale",
        "live loop",
        "campaign lifecycle",
    ):
        assert f"== {stage}" in text, stage
    assert "== summary" in text
    assert "after the planted over-issue: paused (breaker:reconciliation)" in text
    assert (
        "flash sale correct (issued == min(stock, users), no duplicates, ledger == Redis): True"
        in text
    )
    # the live service answered real requests, then stopped as asked
    assert "POST /uplift  [HTTP 200]" in text
    assert "POST /next_action  [HTTP 200]" in text
    assert '"status": "issued"' in text
    assert '"replayed": true' in text
    assert "stopping the service (exit requested)" in text
    from mktlab import tracking

    runs = tracking.runs("demo")
    row = runs.sort_values("start_time").iloc[-1]
    assert row["metrics.world_users"] == 5000
    assert row["metrics.identity_f1"] > 0.98
    assert row["metrics.coupons_ok"] == 1
    assert row["metrics.campaign_treated_users"] > 0  # the workers fed the watcher's counters
    assert row["metrics.campaign_holdout_users"] > 0
    assert tracking.champion_version("uplift") is not None
