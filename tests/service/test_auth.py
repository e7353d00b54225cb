"""Credentials on the real ``bentoml serve``: who may call what, and every refusal audited."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.campaigns.conftest import make_spec
from tests.service.conftest import make_key


def issue_body(**kw):
    return {
        "campaign_id": "nope",
        "user_id": "U0001",
        "request_id": f"r-{uuid.uuid4().hex[:8]}",
        **kw,
    }


def audit(action=None):
    from mktlab.campaigns.db import CampaignDB

    time.sleep(0.8)  # the service writes audit rows in batches every 0.5 s
    return CampaignDB().audit_log(action=action)


@pytest.mark.parametrize("key", [None, "garbage", "mk_000000000000_" + "x" * 32])
def test_no_or_unknown_key_is_401_with_one_answer(http, key):
    status, body = http.post("/issue", issue_body(), key=key)
    assert status == 401
    assert body["type"] == "AuthError"
    if key is None:
        assert body["error"].startswith("API key missing")
    else:
        assert body["error"] == "API key not recognised or revoked"


def test_probes_and_docs_stay_open(http):
    for path in ("/healthz", "/readyz", "/metrics", "/docs.json"):
        status, _ = http.get(path, key=None)
        assert status == 200, path


def test_a_key_of_the_wrong_role_is_403_naming_what_is_missing(http):
    _, analyst = make_key("analyst", "dashboards")
    status, body = http.post("/issue", issue_body(), key=analyst)
    assert status == 403
    assert body["error"] == "role 'analyst' may not coupons.issue; needs one of: app, admin"
    _, app = make_key("app", "shop")
    status, body = http.post("/campaigns", {"spec": make_spec()}, key=app)
    assert status == 403
    assert "role 'app' may not campaign.create" in body["error"]
    log = audit()
    refused = log[~log["ok"]]
    assert {"dashboards", "shop"} <= set(refused["actor"])
    assert "coupons.issue" in set(refused[refused["actor"] == "dashboards"]["action"])


def test_an_app_key_issues_and_each_issue_is_audited(http):
    _, app = make_key("app", "shop-2")
    status, body = http.post("/issue", issue_body(), key=app)
    assert status == 404  # authenticated: the unknown campaign answers now
    assert "no such campaign" in body["error"]
    log = audit("coupons.issue")
    assert (log["actor"] == "shop-2").any()


def test_a_revoked_key_is_refused_within_a_second(http):
    from mktlab.campaigns.access import KeyStore
    from mktlab.campaigns.db import CampaignDB
    from mktlab.campaigns.roles import Principal

    key_id, app = make_key("app", "to-revoke")
    assert http.post("/issue", issue_body(), key=app)[0] == 404
    KeyStore(CampaignDB()).revoke(key_id, Principal("tests", "admin"))
    time.sleep(1.2)  # the service caches a good key for 1 s
    status, body = http.post("/issue", issue_body(), key=app)
    assert status == 401
    assert body["error"] == "API key not recognised or revoked"


def test_the_lifecycle_over_http_acts_as_the_key_holder(http):
    _, ops = make_key("operator", "olga")
    _, appr = make_key("approver", "pia")
    spec = make_spec(audience=None)
    status, rec = http.post("/campaigns", {"spec": spec}, key=ops)
    assert status == 200, rec
    assert (rec["state"], rec["owner"]) == ("draft", "olga")
    cid = rec["campaign_id"]
    assert http.post(f"/campaigns/{cid}/launch", {}, key=ops)[0] == 409  # not approved
    assert http.post(f"/campaigns/{cid}/submit", {}, key=ops)[1]["state"] == "in_review"
    assert http.post(f"/campaigns/{cid}/approve", {}, key=ops)[0] == 403  # not an approver
    status, rec = http.post(f"/campaigns/{cid}/approve", {"note": "ok"}, key=appr)
    assert status == 200, rec
    assert rec["state"] == "approved"
    assert http.post(f"/campaigns/{cid}/fly", {}, key=ops)[0] == 404
    status, hist = http.get(f"/campaigns/{cid}/history", key=appr)
    assert status == 200
    assert [h["actor"] for h in hist if h["ok"]] == ["olga", "olga", "pia"]
    refused = [h for h in hist if not h["ok"]]
    assert [h["action"] for h in refused] == ["campaign.launch"]
    status, _body = http.get(f"/campaigns/{cid}/record", key=None)
    assert status == 401
