"""``mktlab identity resolve / report / lookup`` through the real entry point."""

from __future__ import annotations

from mktlab.cli import main
from mktlab.config import settings
from mktlab.identity import IdentityMap

from .helpers import obs, record


def test_resolve_from_input_file_then_lookup(tmp_path, capsys):
    src = tmp_path / "ids.parquet"
    obs(*record(1, 1, user_id="A", phone="P"), *record(2, 9, user_id="B", phone="P")).to_parquet(
        src
    )
    assert main(["identity", "resolve", "--input", str(src)]) == 0
    out = capsys.readouterr().out
    assert "identity resolution report" in out
    assert "single_valued:user_id=1" in out
    m = IdentityMap.load()
    assert m.report.n_people == 2
    assert (settings().processed_dir / "identity" / "CURRENT").is_file()
    assert main(["identity", "lookup", "phone", "P"]) == 0
    assert "B" in capsys.readouterr().out
    assert main(["identity", "report"]) == 0
    # incremental keeps the saved ids
    src2 = tmp_path / "more.parquet"
    obs(*record(3, 10, user_id="C")).to_parquet(src2)
    assert main(["identity", "resolve", "--incremental", "--input", str(src2)]) == 0
    assert IdentityMap.load().lookup("user_id", "C").uid == 2


def test_missing_input_is_a_clear_error(tmp_path, capsys):
    assert main(["identity", "resolve", "--input", str(tmp_path / "nope.parquet")]) == 2
    assert "nope.parquet" in capsys.readouterr().err


def test_rules_file_and_order_flag(tmp_path, capsys):
    from mktlab.identity import IdentityRules

    src = tmp_path / "ids.csv"
    o = obs(
        *record(1, 1, user_id="A", phone="P"),
        *record(2, 2, user_id="A", phone="P"),
        *record(3, 9, user_id="B", phone="P"),
    )
    o.to_csv(src, index=False)
    rules = tmp_path / "rules.yaml"
    rules.write_text(IdentityRules(order="recency", hub_threshold=None).to_yaml())
    out = tmp_path / "map"
    args = ["identity", "resolve", "--input", str(src), "--rules", str(rules), "--out", str(out)]
    assert main([*args, "--order", "frequency"]) == 0
    m = IdentityMap.load(out)
    assert m.rules.order == "frequency"
    assert m.rules.hub_threshold is None
    assert m.lookup("phone", "P") == m.lookup("user_id", "A")
    capsys.readouterr()
