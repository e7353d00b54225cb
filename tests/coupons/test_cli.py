from __future__ import annotations

import json

import pytest

from mktlab.cli import main
from mktlab.coupons.connection import connection_url

pytestmark = pytest.mark.integration


def test_create_status_reconcile_simulate(redis_client, ns, tmp_path, capsys):
    common = [
        "--redis-url",
        connection_url(redis_client),
        "--ledger-url",
        f"sqlite:///{tmp_path / 'l.db'}",
        "--namespace",
        ns,
    ]
    assert main(["coupons", "create", "cli-sale", "--stock", "50", "--shards", "2", *common]) == 0
    created = json.loads(capsys.readouterr().out)
    assert (created["stock"], created["remaining"], created["ready"]) == (50, 50, True)
    assert main(["coupons", "status", "cli-sale", "--shards", *common]) == 0
    assert len(json.loads(capsys.readouterr().out)["shards"]) == 2
    assert main(["coupons", "reconcile", "cli-sale", *common]) == 0
    assert json.loads(capsys.readouterr().out)["consistent"] is True
    args = ["coupons", "simulate", "--stock", "100", "--requests", "400", "--workers", "0", *common]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["issued"] == 100
    assert report["duplicates"] == 0


def test_bad_input_is_a_one_line_error(redis_client, ns, tmp_path, capsys):
    common = [
        "--redis-url",
        connection_url(redis_client),
        "--ledger-url",
        f"sqlite:///{tmp_path / 'l.db'}",
        "--namespace",
        ns,
    ]
    assert main(["coupons", "create", "x", "--stock", "0", *common]) == 2
    assert "Campaign.stock=0" in capsys.readouterr().err
    assert main(["coupons", "status", "missing", *common]) == 2
    assert "missing" in capsys.readouterr().err
