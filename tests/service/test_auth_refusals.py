"""Refused calls on the real ``bentoml serve`` change nothing and are audited.

What a client with wrong keys we do not see would try: no key, a garbage key, a
well-formed key that never existed, a revoked key, the key in the wrong header scheme,
a key of the wrong role. Each is refused, no coupon leaves the stock, and the attempt is
in the audit log. (Complements ``test_auth.py``.)
"""

from __future__ import annotations

import time
import uuid

import pytest

from mktlab.coupons import Campaign
from tests.service.conftest import make_key

CAMPAIGN = "auth-stock"
NOT_RECOGNISED = "API key not recognised or revoked"


def _body(user: str = "U0001") -> dict:
    return {"campaign_id": CAMPAIGN, "user_id": user, "request_id": f"r-{uuid.uuid4().hex[:10]}"}


def _audit():
    from mktlab.campaigns.db import CampaignDB

    time.sleep(0.8)  # the service writes request-path audit rows in batches (0.5 s)
    return CampaignDB().audit_log()


def test_refused_issue_requests_issue_nothing_and_are_audited(http, issuer):
    from mktlab.campaigns.access import KeyStore
    from mktlab.campaigns.db import CampaignDB
    from mktlab.campaigns.roles import Principal

    issuer.create_campaign(Campaign(CAMPAIGN, stock=5, face_value=1.0))
    revoked_id, revoked = make_key("app", "revoked-shop")
    KeyStore(CampaignDB()).revoke(revoked_id, Principal("tests", "admin"))
    _, analyst = make_key("analyst", "refused-analyst")
    before = len(_audit())
    tries = {
        "none": dict(key=None),
        "garbage": dict(key="not-a-key"),
        "well-formed unknown": dict(key="mk_0123456789ab_" + "A" * 32),
        "revoked": dict(key=revoked),
        "basic scheme": dict(key=None, headers={"Authorization": "Basic dXNlcjpwYXNz"}),
    }
    for what, kw in tries.items():
        status, body = http.post("/issue", _body(), **kw)
        assert status == 401, what
        assert body["type"] == "AuthError", what
        assert set(body) == {"error", "type", "detail"}, what
        if what in ("none", "basic scheme"):
            assert body["error"].startswith("API key missing"), what
        else:  # one answer: it does not tell which keys exist or existed
            assert body["error"] == NOT_RECOGNISED, what
    status, body = http.post("/issue", _body(), key=analyst)
    assert status == 403
    assert "role 'analyst' may not coupons.issue" in body["error"]
    assert issuer.ledger.count(CAMPAIGN) == 0  # nothing changed
    log = _audit().iloc[before:] if before else _audit()
    refused = log[~log["ok"].astype(bool)]
    assert len(refused) >= len(tries) + 1
    assert (refused["actor"] == "anonymous").sum() >= 3  # none, garbage, basic scheme
    assert (refused["actor"] == f"key:{revoked_id}").any()
    assert (refused["actor"] == "refused-analyst").any()
    assert not log["reason"].fillna("").str.contains(revoked[-20:], regex=False).any()


def test_the_key_works_in_x_api_key_and_the_refusal_names_the_scheme(http, issuer):
    _, app = make_key("app", "header-shop")
    status, body = http.post("/issue", _body("U0002"), key=None, headers={"X-API-Key": app})
    assert status == 200, body
    status, body = http.post("/issue", _body("U0003"), key=None)
    assert status == 401
    assert "Authorization: Bearer" in body["error"]
    assert "X-API-Key" in body["error"]


def test_401_carries_www_authenticate(server):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(server.url + "/issue", data=b"{}", method="POST")
    req.add_header("Content-Type", "application/json")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=30)
    assert info.value.code == 401
    assert info.value.headers.get("WWW-Authenticate", "").startswith("Bearer")
