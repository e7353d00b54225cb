"""Redis dies under the service: 503 with a reason, nothing issued, health says so."""

from __future__ import annotations

from mktlab.coupons import Campaign

OWN_REDIS = True  # this module kills its Redis: never the shared one


def test_redis_down_is_503_and_issues_nothing(http, issuer, service_env):
    issuer.create_campaign(Campaign("fragile", stock=5))
    ok = http.post("/issue", {"campaign_id": "fragile", "user_id": "U0001", "request_id": "ok-1"})
    assert ok[0] == 200
    assert ok[1]["status"] == "issued"
    before = issuer.ledger.count("fragile")

    service_env["redis"].kill()  # SIGKILL: no goodbye to clients

    for i in range(3):
        status, body = http.post(
            "/issue", {"campaign_id": "fragile", "user_id": f"U01{i}", "request_id": f"down-{i}"}
        )
        assert status == 503
        assert "Redis" in body["error"]
        assert body["type"] == "ServiceUnavailableError"
    assert issuer.ledger.count("fragile") == before == 1
    status, health = http.get("/healthz")
    assert status == 200
    assert health["status"] == "degraded"
    assert health["redis"].startswith("unavailable")
    assert health["endpoints"]["issue"] == "unavailable (Redis)"
    status, body = http.get("/campaigns/fragile")
    assert status == 503
    # scoring does not need Redis
    row = {"x0": 1.0, "x1": 0.0, "x2": 0.0, "x3": 0.0, "x4": 0.0, "region": "north"}
    assert http.post("/uplift", {"rows": [row]})[0] == 200
