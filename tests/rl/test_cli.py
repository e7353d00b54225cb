"""``mktlab rl train`` and ``mktlab rl evaluate`` end to end (small sizes)."""

from __future__ import annotations

import pytest

from mktlab.cli import main


@pytest.mark.slow
def test_train_then_evaluate_the_champion(capsys):
    code = main(
        [
            "rl", "train", "--timesteps", "20000", "--users", "128", "--horizon", "8",
            "--eval-seeds", "2", "--eval-users", "200", "--myopic-users", "300", "--model-name", "rl_policy_cli",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "registered rl_policy_cli v" in out
    assert "myopic_uplift" in out
    assert "never_treat" in out
    code = main(
        [
            "rl", "evaluate", "--model", "rl_policy_cli", "--seeds", "2", "--users", "200",
            "--horizon", "8", "--myopic-users", "300",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "rl_policy_cli@champion vs" in out


def test_zero_budget_is_a_clear_error(capsys):
    assert main(["rl", "train", "--budget", "0", "--timesteps", "10"]) == 2
    assert "budget_per_user must be > 0" in capsys.readouterr().err


def test_evaluate_without_a_registered_policy(capsys):
    assert main(["rl", "evaluate", "--model", "no_such_policy", "--seeds", "2"]) == 2
    assert "no registered model" in capsys.readouterr().err
