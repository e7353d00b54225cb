"""The campaign lifecycle on a real database (SQLite and PostgreSQL) and a real Redis issuer."""

from __future__ import annotations

import re
import threading

import pytest

from mktlab.campaigns.checks import CampaignRefused
from mktlab.campaigns.rollout import CampaignStates, in_rollout, read_state
from mktlab.errors import ConflictError, NotFoundError, PermissionDeniedError, ValidationError
from tests.campaigns.conftest import ALICE, APP, BOB, CAROL, DAN, make_spec


def simulated(lc, cid, spend=1000.0):
    s = lc.strategy(cid)
    return lc.record_simulation(
        cid,
        ALICE,
        {"spend": spend, "roi": 0.4, "reach": 300, "strategy_fingerprint": s.fingerprint()},
    )


def to_approved(lc, spec, *approvers):
    cid = lc.create(spec, ALICE)["campaign_id"]
    lc.submit(cid, ALICE)
    for a in approvers or (BOB,):
        lc.approve(cid, a)
    return cid


def test_a_campaign_from_draft_to_archive(lifecycle, issuer, redis_client, ns):
    lc = lifecycle
    rec = lc.create(make_spec(), ALICE)
    cid = rec["campaign_id"]
    assert (rec["state"], rec["version"], rec["owner"]) == ("draft", 1, "alice")
    assert lc.submit(cid, ALICE)["state"] == "in_review"
    assert lc.approve(cid, BOB, note="fine")["state"] == "approved"
    simulated(lc, cid)
    rec = lc.launch(cid, ALICE, rollout=0.1)
    assert (rec["state"], rec["rollout"], rec["launched_version"]) == ("gray", 0.1, 1)
    # made real: the issuer's campaign, the strategy in the catalog, the published state
    assert issuer.status(cid)["stock"] == 1000
    assert lc.catalog.get(cid).campaign_id == cid
    assert read_state(redis_client, ns, cid) == {
        "state": "gray",
        "rollout": 0.1,
        "version": 1,
        "salt": cid,
    }
    assert lc.ramp(cid, ALICE, 0.5)["rollout"] == 0.5
    assert lc.ramp(cid, ALICE, 1.0)["state"] == "full"
    rec = lc.pause(cid, ALICE, reason="creative review")
    assert (rec["state"], rec["state_reason"]) == ("paused", "creative review")
    assert issuer.status(cid)["paused"] is True
    assert read_state(redis_client, ns, cid)["state"] == "paused"
    assert lc.resume(cid, ALICE)["state"] == "full"
    assert issuer.status(cid)["paused"] is False
    assert lc.end(cid, ALICE, why="done")["state"] == "ended"
    assert lc.archive(cid, ALICE)["state"] == "archived"
    log = lc.history(cid)
    assert list(log["action"]) == [
        "campaign.create", "campaign.submit", "campaign.approve", "campaign.simulate", "campaign.launch",
        "campaign.ramp", "campaign.ramp", "campaign.pause", "campaign.resume", "campaign.end", "campaign.archive",
    ]  # fmt: skip
    assert log["ok"].all()
    assert list(log["actor"])[:3] == ["alice", "alice", "bob"]
    assert log.iloc[4]["to_state"] == "gray"
    assert log.iloc[4]["detail"]["simulation"]["spend"] == 1000.0


def test_illegal_transitions_are_refused_with_the_reason_and_audited(lifecycle):
    lc = lifecycle
    cid = lc.create(make_spec(), ALICE)["campaign_id"]
    with pytest.raises(
        ConflictError, match="cannot launch while draft; launch starts from approved"
    ):
        lc.launch(cid, ALICE)
    with pytest.raises(ConflictError, match="cannot pause while draft"):
        lc.pause(cid, ALICE, reason="x")
    assert lc.get(cid)["state"] == "draft"
    log = lc.history(cid)
    refused = log[~log["ok"]]
    assert list(refused["action"]) == ["campaign.launch", "campaign.pause"]
    assert "cannot launch while draft" in refused.iloc[0]["reason"]
    with pytest.raises(NotFoundError, match="'nope': not in the registry"):
        lc.submit("nope", ALICE)


def test_who_may_do_what(lifecycle):
    lc = lifecycle
    with pytest.raises(
        PermissionDeniedError,
        match=re.escape("role 'approver' may not campaign.create; needs one of: operator, admin"),
    ):
        lc.create(make_spec(), BOB)
    cid = lc.create(make_spec(), ALICE)["campaign_id"]
    lc.submit(cid, ALICE)
    with pytest.raises(
        PermissionDeniedError, match=re.escape("role 'analyst' may not campaign.approve")
    ):
        lc.approve(cid, DAN)
    with pytest.raises(
        PermissionDeniedError, match=re.escape("role 'app' may not campaign.approve")
    ):
        lc.approve(cid, APP)
    from mktlab.campaigns.roles import Principal

    with pytest.raises(CampaignRefused, match="'alice' owns the campaign and cannot approve it"):
        lc.approve(cid, Principal("alice", "admin"))  # not even as an admin
    assert lc.get(cid)["state"] == "in_review"
    assert lc.get(cid)["approvals"] == []
    log = lc.history(cid)
    assert list(log[~log["ok"]]["actor"]) == ["dan", "shop-app", "alice"]


def test_big_budgets_need_two_distinct_approvers(lifecycle):
    lc = lifecycle
    cid = to_approved(lc, make_spec(max_spend=20_000.0), BOB)
    rec = lc.get(cid)
    assert rec["state"] == "in_review"
    assert rec["state_reason"] == "1 of 2 approvals"
    with pytest.raises(ConflictError, match="'bob' approved version 1 already"):
        lc.approve(cid, BOB)
    simulated(lc, cid)
    lc.approve(cid, CAROL)
    assert lc.get(cid)["state"] == "approved"
    assert lc.get(cid)["approvals"] == ["bob", "carol"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_spend": 60_000.0}, "budget: max_spend 60,000.00 is above the ceiling 50,000.00"),
        (
            {"template": "A guaranteed win for {name}"},
            "sensitive_words: template 'cart' body contains \\['guaranteed'\\]",
        ),
        ({"audience": "martians"}, "audience: unknown audience 'martians'"),
    ],
)
def test_definitions_that_break_a_rule_are_refused_and_nothing_is_stored(
    lifecycle, change, message
):
    spec = make_spec(**change)
    with pytest.raises(CampaignRefused, match=message):
        lifecycle.create(spec, ALICE)
    with pytest.raises(NotFoundError):
        lifecycle.get(spec["campaign_id"])
    log = lifecycle.db.audit_log(spec["campaign_id"])
    assert list(log["ok"]) == [False]
    assert message.split(":")[0] in log.iloc[0]["reason"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"max_spend": -5.0}, "strategy.budget.max_spend: -5.0 is less than the minimum of 0"),
        ({"max_spend": 0.0}, "needs a spending ceiling > 0"),
        ({"start": 2_000_000_000, "end": 1_900_000_000}, "end .* must be after start"),
    ],
)
def test_malformed_specs_name_the_field(lifecycle, bad, message):
    with pytest.raises(ValidationError, match=message):
        lifecycle.create(make_spec(**bad), ALICE)


def test_launch_needs_a_simulation_of_exactly_this_version(lifecycle):
    lc = lifecycle
    cid = to_approved(lc, make_spec())
    with pytest.raises(CampaignRefused, match="simulation: no sandbox simulation of this version"):
        lc.launch(cid, ALICE)
    with pytest.raises(CampaignRefused, match="of another strategy definition"):
        lc.record_simulation(
            cid, ALICE, {"spend": 1.0, "reach": 1, "roi": 0.1, "strategy_fingerprint": "0" * 16}
        )
    simulated(lc, cid, spend=9_999.0)
    with pytest.raises(
        CampaignRefused, match=re.escape("predicted spend 9,999.00 is above the budget 5,000.00")
    ):
        lc.launch(cid, ALICE)
    simulated(lc, cid, spend=900.0)
    assert lc.launch(cid, ALICE, rollout=0.2)["state"] == "gray"
    assert lc.get(cid)["simulation"]["spend"] == 900.0


def test_overlapping_campaigns_are_refused_unless_both_stack(lifecycle):
    lc = lifecycle
    first = to_approved(lc, make_spec(audience="young"))
    simulated(lc, first)
    lc.launch(first, ALICE, rollout=1.0)
    clash = lc.create(make_spec(audience="vip"), ALICE)["campaign_id"]  # 100 uids shared with young
    lc.submit(clash, ALICE)
    with pytest.raises(
        CampaignRefused, match=f"overlaps running campaign '{first}'.*100 user\\(s\\) are in both"
    ):
        lc.approve(clash, BOB)  # refused at review already
    assert lc.get(clash)["state"] == "in_review"
    apart = to_approved(lc, make_spec(audience="seniors"))  # nobody shared
    early = to_approved(lc, make_spec(audience="seniors"))
    simulated(lc, apart)
    assert lc.launch(apart, ALICE)["state"] == "gray"
    later = to_approved(
        lc, make_spec(audience="vip", start=1e10, end=1e10 + 86400)
    )  # another window
    simulated(lc, later)
    assert lc.launch(later, ALICE)["state"] == "scheduled"
    # approved while nothing clashed, launched after a clashing campaign went live: refused then
    simulated(lc, early)
    with pytest.raises(CampaignRefused, match=f"overlaps running campaign '{apart}'"):
        lc.launch(early, ALICE)


def test_stackable_coupons_may_overlap(lifecycle):
    lc = lifecycle
    a = to_approved(lc, make_spec(audience="young", stackable=True))
    simulated(lc, a)
    lc.launch(a, ALICE)
    b = to_approved(lc, make_spec(audience="vip", stackable=True))
    simulated(lc, b)
    assert lc.launch(b, ALICE)["state"] == "gray"


def test_every_change_is_a_new_version_with_a_diff_and_approvals_start_over(lifecycle):
    lc = lifecycle
    spec = make_spec()
    cid = lc.create(spec, ALICE)["campaign_id"]
    lc.submit(cid, ALICE)
    lc.reject(cid, BOB, why="rate too high")
    assert lc.get(cid)["state_reason"] == "rejected by bob: rate too high"
    spec["strategy"]["policy"]["rate"] = 0.3
    rec = lc.update(cid, spec, ALICE, why="lower rate")
    assert rec["version"] == 2
    assert rec["state"] == "draft"
    v = lc.versions(cid)
    assert [x["version"] for x in v] == [1, 2]
    assert v[1]["diff"] == {"strategy.policy.rate": {"old": 0.5, "new": 0.3}}
    assert v[1]["spec"]["strategy"]["version"] == 2  # decision keys name the campaign version
    with pytest.raises(ValidationError, match="equals version 2"):
        lc.update(cid, spec, ALICE)
    lc.submit(cid, ALICE)
    lc.approve(cid, BOB)
    assert lc.get(cid)["approvals"] == ["bob"]
    assert lc.get(cid)["version"] == 2


def test_concurrent_transitions_never_leave_two_states(lifecycle):
    lc = lifecycle
    cid = to_approved(lc, make_spec())
    simulated(lc, cid)
    lc.launch(cid, ALICE, rollout=0.1)
    results: list[str] = []
    barrier = threading.Barrier(6)

    def go(k):
        barrier.wait()
        try:
            if k % 2:
                lc.pause(cid, ALICE, reason=f"t{k}")
            else:
                lc.end(cid, ALICE, why=f"t{k}")
            results.append("ok")
        except (ConflictError, CampaignRefused) as exc:
            results.append(type(exc).__name__)

    threads = [threading.Thread(target=go, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log = lc.history(cid)
    taken = log[log["ok"] & log["action"].isin(["campaign.pause", "campaign.end"])]
    final = lc.get(cid)["state"]
    # every taken step started from the state the previous one left
    assert final in ("paused", "ended")
    assert list(taken["from_state"])[1:] == list(taken["to_state"])[:-1]
    assert taken.iloc[-1]["to_state"] == final
    assert results.count("ok") == len(taken)


def test_the_gate_follows_the_published_state_and_ramping_only_adds_users(
    lifecycle, redis_client, ns
):
    from mktlab.strategy import Eligibility, MemoryCapLedger

    lc = lifecycle
    cid = to_approved(lc, make_spec(audience=None))
    simulated(lc, cid)
    lc.launch(cid, ALICE, rollout=0.1)
    strategy = lc.catalog.get(cid)

    class Everyone:
        def in_audience(self, audience, user_id):
            return True

        def uplift(self, user_id):
            return None

    users = [f"u{i}" for i in range(4000)]

    def statuses():
        gate = CampaignStates(redis_client, ns, ttl=0)
        el = Eligibility(strategy, Everyone(), MemoryCapLedger(), gate=gate)
        return {u: el.check(u, "coupon", 1.0, f"k{u}", record=False).status for u in users}

    at10 = statuses()
    share = sum(s != "not_in_rollout" and s != "holdout" for s in at10.values()) / len(users)
    assert 0.07 < share < 0.11  # 10% of the 90% outside the holdout
    assert all(
        at10[u] == "not_in_rollout"
        for u in users
        if not in_rollout(u, cid, 0.1) and at10[u] != "holdout"
    )
    lc.ramp(cid, ALICE, 0.5)
    at50 = statuses()
    assert all(at50[u] != "not_in_rollout" for u in users if at10[u] not in ("not_in_rollout",))
    assert [u for u in users if at10[u] == "holdout"] == [u for u in users if at50[u] == "holdout"]
    lc.pause(cid, ALICE, reason="stop")
    assert set(statuses().values()) == {"holdout", "campaign_paused"}
