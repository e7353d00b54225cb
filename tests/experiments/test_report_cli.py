"""Reports logged to a real MLflow store, and the ``mktlab experiments`` CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mktlab import tracking
from mktlab.cli import main
from mktlab.experiments import Guardrail, analyze_summary, monitor


def _summary() -> pd.DataFrame:
    return pd.DataFrame(
        [("control", "conversion", 10_000, 1000, None, None), ("treatment", "conversion", 10_000, 1100, None, None),
         ("control", "revenue", 10_000, None, 5.0, 12.0), ("treatment", "revenue", 10_000, None, 5.4, 12.5)],
        columns=["arm", "metric", "n", "successes", "mean", "std"],
    )  # fmt: skip


@pytest.mark.integration
def test_result_and_monitor_logged_to_mlflow():
    res = analyze_summary(_summary(), name="checkout-test")
    res.log(experiment="ab-tests-test", run_name="checkout")
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"arm": rng.choice(["control", "treatment"], 4000), "day": np.repeat(np.arange(1, 5), 1000),
                       "spend": rng.exponential(10, 4000)})  # fmt: skip
    mon = monitor(df, ["spend"], n_opt=2000, guardrails=[Guardrail("spend")])
    mon.log(experiment="ab-tests-test", run_name="seq")
    runs = tracking.runs("ab-tests-test")
    assert len(runs) == 2
    row = runs[runs["tags.mlflow.runName"] == "checkout"].iloc[0]
    assert row["metrics.checkout-test.conversion.treatment.p_value"] == pytest.approx(
        0.02108, abs=5e-6
    )
    assert row["params.correction"] == "holm"
    seq = runs[runs["tags.mlflow.runName"] == "seq"].iloc[0]
    assert seq["metrics.sequential.looks"] == 4
    # experiment=None logs into the caller's run (e.g. the demo job's)
    with tracking.start_run("ab-tests-outer", run_name="outer"):
        res.log(experiment=None)
    outer = tracking.runs("ab-tests-outer")
    assert len(outer) == 1
    assert outer.iloc[0]["metrics.checkout-test.srm_p_value"] == pytest.approx(res.srm.p_value)


def test_cli_size(capsys):
    assert (
        main(
            [
                "experiments",
                "size",
                "--baseline",
                "0.1",
                "--mde",
                "0.05",
                "--daily-traffic",
                "10000",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "57,763" in out
    assert "14 days" in out
    assert (
        main(["experiments", "size", "--baseline", "50", "--sd", "20", "--mde", "1", "--absolute"])
        == 0
    )
    assert "n_control" in capsys.readouterr().out


def test_cli_analyze_summary_and_units(tmp_path, capsys):
    f = tmp_path / "results.csv"
    _summary().to_csv(f, index=False)
    out_file = tmp_path / "table.csv"
    assert main(["experiments", "analyze", str(f), "--out", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "conversion" in out
    assert "SRM" in out
    table = pd.read_csv(out_file)
    assert table.loc[table.metric == "conversion", "p_value"].iloc[0] == pytest.approx(
        0.02108, abs=5e-6
    )
    rng = np.random.default_rng(1)
    units = pd.DataFrame({"arm": rng.choice(["control", "b"], 500), "y": rng.integers(0, 2, 500),
                          "pre": rng.normal(size=500)})  # fmt: skip
    u = tmp_path / "units.parquet"
    units.to_parquet(u)
    assert main(["experiments", "analyze", str(u), "--metric", "y", "--covariate", "y=pre"]) == 0
    assert "y" in capsys.readouterr().out


def test_cli_srm_assign_peeking(tmp_path, capsys):
    assert main(["experiments", "srm", "4900", "5100"]) == 0
    assert "p=0.0455" in capsys.readouterr().out
    ids = tmp_path / "ids.csv"
    pd.DataFrame({"user_id": [f"u{i}" for i in range(1000)]}).to_csv(ids, index=False)
    out = tmp_path / "arms.csv"
    assert (
        main(
            [
                "experiments",
                "assign",
                str(ids),
                "--experiment",
                "e1",
                "--arms",
                "control=1,b=1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    arms = pd.read_csv(out)
    assert set(arms["arm"]) == {"control", "b"}
    assert len(arms) == 1000
    assert main(["experiments", "peeking", "--sims", "50", "--per-arm", "560"]) == 0
    assert "sequential_fpr" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["experiments", "size", "--baseline", "1.5", "--mde", "0.05"], "baseline"),
        (["experiments", "size", "--baseline", "0.1", "--mde", "0"], "mde"),
        (["experiments", "size", "--baseline", "0.1", "--mde", "0.05", "--power", "1.2"], "power"),
        (["experiments", "srm", "10"], "at least two"),
    ],
)
def test_cli_errors(argv, match, capsys):
    assert main(argv) == 2
    assert match in capsys.readouterr().err


def test_cli_bad_summary(tmp_path, capsys):
    f = tmp_path / "bad.csv"
    pd.DataFrame(
        {"arm": ["control", "t"], "metric": "c", "n": [100, 100], "successes": [10, 150]}
    ).to_csv(f, index=False)
    assert main(["experiments", "analyze", str(f)]) == 2
    assert "exceed units" in capsys.readouterr().err
    f2 = tmp_path / "x.json"
    f2.write_text(json.dumps({}))
    assert main(["experiments", "analyze", str(f2)]) == 2


def test_cli_monitor(tmp_path, capsys):
    rng = np.random.default_rng(2)
    n = 8000
    arm = rng.choice(["control", "treatment"], n)
    df = pd.DataFrame({"arm": arm, "day": np.repeat(np.arange(1, 9), n // 8),
                       "spend": rng.exponential(10, n) * np.where(arm == "treatment", 0.6, 1.0)})  # fmt: skip
    f = tmp_path / "daily.csv"
    df.to_csv(f, index=False)
    assert (
        main(
            [
                "experiments",
                "monitor",
                str(f),
                "--metric",
                "spend",
                "--guardrail",
                "spend",
                "--n-opt",
                "4000",
            ]
        )
        == 0
    )
    assert "STOPPED" in capsys.readouterr().out
    assert (
        main(
            ["experiments", "monitor", str(f), "--metric", "spend", "--guardrail", "spend:sideways"]
        )
        == 2
    )
    assert "--guardrail" in capsys.readouterr().err
