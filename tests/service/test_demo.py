"""`make demo`'s last stage: serve the champions, talk to the live service, stop on request."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_run_service_demo_answers_then_exits(service_env, served_models, capsys):
    from mktlab.service.server import free_port
    from mktlab.service.walkthrough import DEMO_CAMPAIGN, run_service_demo

    out = run_service_demo(exit_after=True, port=free_port(), n_users=3, campaign_stock=2)
    a = out["answers"]
    assert a["healthz"][0][0] == 200
    assert a["healthz"][0][1]["models"]["uplift"]["mlflow_version"]
    assert a["uplift"][0][0] == 200
    assert len(a["uplift"][0][1]) == 3
    assert a["next_action"][0][1]["source"] == "fallback_rule"
    assert a["attribute"][0][0] == 200
    issues = [body for status, body in a["issue"] if status == 200]
    assert len(issues) == 4
    assert issues[-1]["replayed"] is True
    assert issues[-1]["status"] == issues[0]["status"]
    st = a["campaign"][0][1]
    assert st["campaign_id"] == DEMO_CAMPAIGN
    assert st["issued"] <= 2
    assert st["issued"] == sum(b["status"] == "issued" and not b["replayed"] for b in issues)
    printed = capsys.readouterr().out
    assert "POST /issue" in printed
    assert "stopping the service" in printed
    import urllib.request

    with pytest.raises(OSError):
        urllib.request.urlopen(out["url"] + "/readyz", timeout=2)
