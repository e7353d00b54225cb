"""The service over real HTTP: every endpoint, every denial reason, retries, bad input."""

from __future__ import annotations

import json
import threading

import pytest

from mktlab.coupons import Campaign
from mktlab.rules.model import FrequencyCap
from mktlab.strategy import Strategy, StrategyCatalog, TreatmentPolicy
from tests.service.conftest import USERS, VIP


def issue(http, cid, user, rid, **context):
    body = {"campaign_id": cid, "user_id": user, "request_id": rid}
    if context:
        body["context"] = context
    return http.post("/issue", body)


# ----------------------------------------------------------------------- health, docs
def test_healthz_reports_served_versions(http, served_models):
    status, body = http.get("/healthz")
    assert status == 200
    assert body["status"] == "ok"
    assert body["redis"] == "ok"
    assert body["models"]["uplift"]["mlflow_version"] == served_models["uplift_version"]
    assert body["models"]["attribution"]["mlflow_version"] == "1"
    assert body["models"]["rl_policy"] is None
    assert body["endpoints"]["next_action"] == "fallback_rule"


def test_openapi_lists_every_endpoint(http):
    status, spec = http.get("/docs.json")
    assert status == 200
    for path in ("/uplift", "/next_action", "/attribute", "/issue", "/campaigns/{campaign_id}"):
        assert path in spec["paths"], path
    row = spec["components"]["schemas"]["UpliftFeatures"]
    assert row["required"] == ["x0", "x1", "x2", "x3", "x4", "region"]


# ----------------------------------------------------------------------------- uplift
def test_uplift_matches_the_registered_model(http, served_models, features):
    rows = [features(1.5), features(-1.5), {**features(0.3), "region": "east"}]
    status, body = http.post("/uplift", {"rows": rows})
    assert status == 200
    assert len(body) == 3
    import pandas as pd

    expected = served_models["model"].predict(pd.DataFrame(rows))
    for ans, (_, exp) in zip(body, expected.iterrows()):
        assert ans["uplift"] == pytest.approx(exp["uplift"], abs=1e-9)
        assert ans["p1"] - ans["p0"] == pytest.approx(ans["uplift"], abs=1e-9)
        assert ans["quadrant"] == exp["quadrant"]
        assert ans["treat"] == (ans["uplift"] >= 0.05)
    assert body[0]["uplift"] > body[1]["uplift"]  # the planted effect: x0 > 0 responds


@pytest.mark.parametrize(
    ("row_change", "field", "message"),
    [
        ({"x0": "lots"}, "rows[0].x0", "valid number"),
        ({"x4": None}, "rows[0].x4", "valid number"),
        ({"age": 3}, "rows[0].age", "Extra inputs"),
        ({"region": 5}, "rows[0].region", "valid string"),
    ],
)
def test_uplift_bad_features_are_422_naming_the_field(http, features, row_change, field, message):
    row = {**features(1.0), **row_change}
    status, body = http.post("/uplift", {"rows": [row]})
    assert status == 422
    assert field in body["error"]
    assert message in body["error"]


def test_uplift_missing_feature_is_named(http, features):
    row = features(1.0)
    del row["x2"]
    status, body = http.post("/uplift", {"rows": [row]})
    assert status == 422
    assert "rows[0].x2: Field required" in body["error"]


def test_uplift_batch_limit_and_body_limit(http, features):
    status, body = http.post("/uplift", {"rows": [features(0.1)] * 51})
    assert status == 422
    assert "rows" in body["error"]
    assert "at most 50" in body["error"]
    status, body = http.post("/uplift", {"rows": []})
    assert status == 422
    assert "rows" in body["error"]
    big = json.dumps({"rows": [features(0.1)] * 2000}).encode()
    status, body = http.post("/uplift", raw=big)
    assert status == 413
    assert "exceeds the limit" in body["error"]


def test_chunked_bodies_are_limited_too(http, features):
    """Without Content-Length (Transfer-Encoding: chunked) the limit still holds."""

    def chunked(payload: bytes, size: int = 65_536):
        return (payload[i : i + size] for i in range(0, len(payload), size))

    big = json.dumps({"rows": [features(0.1)] * 1_400}).encode()  # just over the 100 kB limit
    assert 100_000 < len(big) < 120_000
    status, body = http.post("/uplift", raw=chunked(big, 8_192))
    assert status == 413
    assert "chunked request body exceeds the limit" in body["error"]
    small = json.dumps({"rows": [features(0.1)] * 3}).encode()
    status, body = http.post("/uplift", raw=chunked(small, 100))
    assert status == 200, body
    assert len(body) == 3


def test_malformed_json_is_400(http):
    status, body = http.post("/uplift", raw=b'{"rows": [')
    assert status == 400
    assert "malformed JSON" in body["error"]
    status, body = http.post("/issue", raw=b"not json")
    assert status == 400
    assert "malformed JSON" in body["error"]


# ------------------------------------------------------------------------ next action
def test_next_action_states_its_fallback_rule(http, features):
    status, yes = http.post("/next_action", {"state": features(1.5), "user_id": "U0001"})
    assert status == 200
    assert yes["source"] == "fallback_rule"
    assert yes["model_version"] is None
    assert "no rl_policy@champion" in yes["note"]
    assert yes["action"] == ("coupon" if yes["uplift"] >= 0.05 else "none")
    _, no = http.post("/next_action", {"state": features(-1.5)})
    assert no["action"] == ("coupon" if no["uplift"] >= 0.05 else "none")
    assert yes["uplift"] > no["uplift"]
    status, body = http.post("/next_action", {"user_id": "U1"})
    assert status == 422
    assert "state" in body["error"]


# ------------------------------------------------------------------------ attribution
def test_attribute_credits_sum_to_conversions(http):
    journeys = [
        {"path": ["ch00", "ch02"]},
        {"path": "ch01 > ch03 > ch01", "conversions": 2},
        {"path": ["ch03"]},
    ]
    status, body = http.post("/attribute", {"journeys": journeys})
    assert status == 200
    assert body["model_version"] == "1"
    sums = [sum(c.values()) for c in body["credits"]]
    assert sums == pytest.approx([1.0, 2.0, 1.0])
    assert body["credits"][2] == {"ch03": pytest.approx(1.0)}
    assert sum(body["totals"].values()) == pytest.approx(4.0)
    assert set(body["credits"][1]) == {"ch01", "ch03"}


@pytest.mark.parametrize(
    ("journeys", "field"),
    [([], "journeys"), ([{"path": []}], "journeys[0].path"), ([{"path": ["a"], "conversions": -1}], "journeys[0].conversions"),
     ([{"paths": ["a"]}], "journeys[0].path")],
)  # fmt: skip
def test_attribute_bad_journeys_are_422(http, journeys, field):
    status, body = http.post("/attribute", {"journeys": journeys})
    assert status == 422
    assert field in body["error"]


# ---------------------------------------------------------------------------- issuance
@pytest.fixture(scope="module")
def campaigns(issuer):
    issuer.create_campaign(Campaign("open", stock=3, face_value=5.0))
    issuer.create_campaign(Campaign("budget", stock=10, face_value=5.0, budget=10.0))
    issuer.create_campaign(Campaign("targeted", stock=100, face_value=2.0))
    issuer.create_campaign(Campaign("capped_a", stock=100))
    issuer.create_campaign(Campaign("capped_b", stock=100))
    issuer.create_campaign(Campaign("rush", stock=10, shards=2))
    catalog = StrategyCatalog()
    up = TreatmentPolicy("uplift_threshold", model="uplift", threshold=0.05)
    catalog.save(Strategy("targeted-s", up, audience="vip", campaign_id="targeted"), replace=True)
    catalog.save(
        Strategy("capped-b", TreatmentPolicy("all"), campaign_id="capped_b",
                 caps=(FrequencyCap("coupon", 1, 3600),)),  # fmt: skip
        replace=True,
    )
    return issuer


def test_issue_then_retry_then_duplicate_then_out_of_stock(http, campaigns):
    s, first = issue(http, "open", "U0001", "open-1")
    assert s == 200
    assert first["status"] == "issued"
    assert first["coupon_code"]
    assert first["seq"] == 1
    s, again = issue(http, "open", "U0001", "open-1")
    assert again["replayed"] is True
    assert {k: v for k, v in again.items() if k != "replayed"} == {
        k: v for k, v in first.items() if k != "replayed"
    }
    s, dup = issue(http, "open", "U0001", "open-2")
    assert (dup["status"], dup["reason"]) == ("denied", "duplicate")
    for i, u in enumerate(["U0002", "U0003"]):
        assert issue(http, "open", u, f"open-u{i}")[1]["status"] == "issued"
    s, out = issue(http, "open", "U0004", "open-4")
    assert (out["status"], out["reason"]) == ("denied", "out_of_stock")
    s, st = http.get("/campaigns/open")
    assert s == 200
    assert (st["stock"], st["issued"], st["remaining"], st["budget_used"], st["ledger_issued"]) == (
        3,
        3,
        0,
        15.0,
        3,
    )


def test_budget_exhausted(http, campaigns):
    answers = [issue(http, "budget", u, f"b-{u}")[1] for u in USERS[:3]]
    assert [a["status"] for a in answers] == ["issued", "issued", "denied"]
    assert answers[2]["reason"] == "budget_exhausted"
    _, st = http.get("/campaigns/budget")
    assert st["budget"] == 10.0
    assert st["budget_used"] == 10.0
    assert st["issued"] == 2


def test_audience_and_uplift_eligibility(http, campaigns):
    outsider = USERS[-1]  # not in "vip"
    assert outsider not in VIP
    _, a = issue(http, "targeted", outsider, "t-out")
    assert (a["status"], a["reason"]) == ("denied", "not_in_audience")
    # VIP users from the stored profiles: odd ones respond (issued), even ones do not
    _, low = issue(http, "targeted", "U0002", "t-2")
    assert (low["status"], low["reason"]) == ("denied", "low_uplift")
    assert low["uplift"] < 0.05
    _, high = issue(http, "targeted", "U0003", "t-3")
    assert high["status"] == "issued"
    assert high["uplift"] >= 0.05
    # features given in the context win over the stored profile
    _, ctx = issue(
        http,
        "targeted",
        "U0004",
        "t-4",
        features={"x0": 1.5, "x1": 0, "x2": 0, "x3": 0, "x4": 0, "region": "south"},
    )
    assert ctx["status"] == "issued"
    # a denial is answered the same way on retry
    assert issue(http, "targeted", "U0002", "t-2")[1] == {**low, "replayed": True}
    _, st = http.get("/campaigns/targeted")
    assert st["strategy"]["audience"] == "vip"
    assert st["issued"] == 2


def test_frequency_cap_counts_coupons_across_campaigns(http, campaigns):
    _, a = issue(http, "capped_b", "U0010", "f-1")
    assert a["status"] == "issued"
    _, b = issue(http, "capped_b", "U0010", "f-2")
    assert (b["status"], b["reason"]) == ("denied", "capped")
    assert issue(http, "capped_b", "U0011", "f-3")[1]["status"] == "issued"
    # a coupon of another campaign (without a cap of its own) counts too
    assert issue(http, "capped_a", "U0012", "f-4")[1]["status"] == "issued"
    _, c = issue(http, "capped_b", "U0012", "f-5")
    assert (c["status"], c["reason"]) == ("denied", "capped")


def test_request_id_reused_for_another_user_is_refused(http, campaigns):
    issue(http, "capped_a", "U0020", "reuse-1")
    _, body = issue(http, "capped_a", "U0021", "reuse-1")
    assert (body["status"], body["reason"]) == ("denied", "request_conflict")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"campaign_id": "open", "user_id": "U1"}, 422, "request_id: Field required"),
        ({"campaign_id": "bad id!", "user_id": "U1", "request_id": "r"}, 422, "campaign_id"),
        ({"campaign_id": "open", "user_id": "", "request_id": "r"}, 422, "user_id"),
        (
            {
                "campaign_id": "open",
                "user_id": "U1",
                "request_id": "r",
                "context": {"features": [1]},
            },
            422,
            "context.features",
        ),
        ({"campaign_id": "nope", "user_id": "U1", "request_id": "r"}, 404, "nope"),
    ],
)
def test_issue_bad_requests(http, campaigns, body, status, field):
    s, ans = http.post("/issue", body)
    assert s == status
    assert field in ans["error"]


def test_unknown_campaign_status_is_404(http, campaigns):
    s, body = http.get("/campaigns/nope")
    assert s == 404
    assert "nope" in body["error"]


def test_concurrent_rush_never_over_issues(http, campaigns, issuer):
    results = []
    lock = threading.Lock()

    def worker(k):
        for j in range(5):
            ans = issue(http, "rush", f"R{k:02d}{j}", f"rush-{k}-{j}")[1]
            with lock:
                results.append(ans)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    issued = [r for r in results if r["status"] == "issued"]
    assert len(results) == 40
    assert len(issued) == 10
    assert {r["reason"] for r in results if r["status"] == "denied"} == {"out_of_stock"}
    assert issuer.ledger.count("rush") == 10
    assert len({r["coupon_code"] for r in issued}) == 10


def test_metrics_count_issuance_outcomes(http, campaigns):
    issue(http, "open", "U0030", "m-1")  # out of stock by now
    s, text = http.get("/metrics")
    assert s == 200
    assert (
        'mktlab_issue_outcomes_total{reason="out_of_stock",replayed="false",status="denied"}'
        in text
    )
    assert 'mktlab_endpoint_seconds_bucket{endpoint="issue"' in text
    assert "bentoml_service_request_total" in text
