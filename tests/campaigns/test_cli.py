"""``mktlab campaign`` and ``mktlab keys`` as a user runs them: keys, roles, refusals, the lifecycle."""

from __future__ import annotations

import time

import pytest
import yaml

from mktlab.cli import main
from tests.campaigns.conftest import make_spec


@pytest.fixture
def workspace_env(tmp_path, monkeypatch, ns):
    monkeypatch.setenv("MKTLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MKTLAB_SERVICE_NAMESPACE", ns)
    monkeypatch.delenv("MKTLAB_API_KEY", raising=False)
    monkeypatch.delenv("MKTLAB_DB_URL", raising=False)
    return tmp_path


def run(capsys, *args):
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out + out.err


def new_key(capsys, role, name):
    rc, out = run(capsys, "keys", "create", "--name", name, "--role", role)
    assert rc == 0, out
    return out.strip().splitlines()[-1]


def test_a_campaign_through_the_cli_with_keys_of_each_role(workspace_env, capsys):
    rc, out = run(capsys, "campaign", "list")
    assert rc == 2
    assert "API key missing" in out
    assert "mktlab keys local-admin" in out
    rc, out = run(capsys, "keys", "local-admin")
    assert rc == 0
    assert "admin.key" in out
    ops, appr, analyst = (
        new_key(capsys, r, n)
        for r, n in (("operator", "olga"), ("approver", "pia"), ("analyst", "ann"))
    )
    spec = make_spec(audience=None)
    spec["strategy"]["rules"] = {"name": "r", "rules": [
        {"id": "viewed", "when": {"event": "view"}, "then": [{"issue_coupon": {"coupon": spec["campaign_id"], "value": 5}}]}]}  # fmt: skip
    f = workspace_env / "c.yaml"
    f.write_text(yaml.safe_dump(spec))
    cid = spec["campaign_id"]
    rc, out = run(capsys, "campaign", "create", str(f), "--key", analyst)
    assert rc == 2
    assert "role 'analyst' may not campaign.create" in out
    rc, out = run(capsys, "campaign", "create", str(f), "--key", ops)
    assert rc == 0
    assert f"{cid}\tv1\tdraft" in out
    assert run(capsys, "campaign", "submit", cid, "--key", ops)[0] == 0
    rc, out = run(capsys, "campaign", "approve", cid, "--key", "mk_000000000000_" + "a" * 32)
    assert rc == 2
    assert "API key not recognised or revoked" in out
    rc, out = run(capsys, "campaign", "approve", cid, "--key", appr)
    assert rc == 0
    assert "approved" in out
    rc, out = run(capsys, "campaign", "launch", cid, "--key", ops)
    assert rc == 2
    assert "no sandbox simulation of this version" in out
    events = workspace_env / "events.csv"
    now = time.time()
    events.write_text("user_id,ts,event\n" + "".join(f"u{i},{now + i},view\n" for i in range(50)))
    rc, out = run(capsys, "campaign", "simulate", cid, "--events", str(events), "--key", ops)
    assert rc == 0, out
    assert "predicted: spend" in out
    assert run(capsys, "campaign", "launch", cid, "--rollout", "0.2", "--key", ops)[0] == 0
    rc, out = run(capsys, "campaign", "watch", "--once", "--key", ops)
    assert rc == 0, out
    assert f"{cid}: issued 0, spend 0.00; users treated 0" in out  # what the breakers judged
    assert "watched 1 campaign(s)" in out
    rc, out = run(capsys, "campaign", "pause", cid, "--reason", "check", "--key", ops)
    assert rc == 0
    assert "paused (check)" in out
    rc, out = run(capsys, "campaign", "history", cid, "--key", analyst)
    assert rc == 0
    for word in ("campaign.create", "campaign.approve", "campaign.launch", "olga", "pia", "False"):
        assert word in out
