from __future__ import annotations

from mktlab.cli import main

STRATEGY = """
name: young
audience: null
policy: {kind: uplift_threshold, model: none-such, threshold: 0}
"""

ALL = """
name: everyone
policy: all
coupon: {face_value: 5, send_cost: 0.1, margin: 0.4}
budget: {max_coupons: 500}
"""

RULES = """
name: r
caps: [{channel: push, max: 1, per: 1d}]
rules:
  - id: a
    when: {event: order}
    then: [{issue_coupon: {coupon: C5, value: 5}}]
  - id: b
    when: {event: order}
    if: [{field: event.amount, op: ">", value: 100}]
    then: [{issue_coupon: {coupon: C10, value: 10}}, {send_message: {channel: push}}, {send_message: {channel: push}}]
"""


def test_replay_command_on_the_world(small_world, tmp_path, capsys):
    path = tmp_path / "everyone.yaml"
    path.write_text(ALL)
    out = tmp_path / "table.csv"
    code = main(
        [
            "sandbox",
            "replay",
            str(path),
            "--data",
            "world",
            "--campaign",
            "C002",
            "--n-boot",
            "50",
            "--out",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    assert "world:C002" in text
    assert "everyone" in text
    assert "logged" in text
    assert "mlflow run" in text
    assert out.read_text().splitlines()[0].startswith("strategy,estimator,treated")


def test_replay_command_reports_bad_input(small_world, tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(STRATEGY)
    assert main(["sandbox", "replay", str(path), "--data", "world", "--no-mlflow"]) == 2
    assert "unknown model 'none-such'" in capsys.readouterr().err
    assert main(["sandbox", "replay", str(tmp_path / "missing.yaml")]) == 2


def test_check_rules_command(tmp_path, capsys):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    assert main(["sandbox", "check-rules", str(path)]) == 0
    text = capsys.readouterr().out
    assert "coupon_stacking: a, b" in text
    assert "cap_contradiction: b" in text
