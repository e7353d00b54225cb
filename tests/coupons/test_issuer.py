"""Issuer behaviour against a real Redis (MKTLAB_REDIS_URL or the embedded server)."""

from __future__ import annotations

from collections import Counter

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mktlab.coupons import Campaign, CouponIssuer, Ledger, home_shard, reconcile
from mktlab.errors import NotFoundError, ServiceUnavailableError, ValidationError

pytestmark = pytest.mark.integration


def reasons(results):
    return Counter(r.status if r.issued else r.reason for r in results)


def test_hand_computed_sale(issuer, cid):
    issuer.create_campaign(Campaign(cid, stock=3, face_value=5.0))
    res = issuer.issue_many(cid, [(f"u{i}", f"r{i}") for i in range(5)])
    assert [r.status for r in res] == ["issued"] * 3 + ["denied"] * 2
    assert [r.reason for r in res[3:]] == ["out_of_stock", "out_of_stock"]
    assert all(r.seq == 1 for r in res[:3])
    assert len({r.coupon_code for r in res[:3]}) == 3
    st = issuer.status(cid)
    assert (st["issued"], st["remaining"], st["ledger_issued"], st["budget_used"]) == (
        3,
        0,
        3,
        15.0,
    )


def test_request_id_is_idempotent_and_users_cannot_claim_twice(issuer, cid):
    issuer.create_campaign(Campaign(cid, stock=10))
    first = issuer.issue(cid, "alice", "req-1")
    again = issuer.issue(cid, "alice", "req-1")
    assert first.issued
    assert again == first
    assert issuer.issue(cid, "alice", "req-2").reason == "duplicate"
    assert issuer.issue(cid, "bob", "req-1").reason == "request_conflict"
    assert issuer.status(cid)["issued"] == 1
    assert issuer.ledger.count(cid) == 1


def test_per_user_limit_numbers_the_coupons(issuer, cid):
    issuer.create_campaign(Campaign(cid, stock=10, per_user_limit=2))
    res = issuer.issue_many(cid, [("carol", "a"), ("carol", "b"), ("carol", "c")])
    assert [r.seq for r in res[:2]] == [1, 2]
    assert res[2].reason == "duplicate"
    assert sorted(issuer.ledger.rows(cid)["seq"]) == [1, 2]


def test_budget_breaker_stops_before_stock(issuer, cid):
    # cost 5, budget 20: four coupons are affordable out of ten
    issuer.create_campaign(Campaign(cid, stock=10, face_value=5.0, budget=20.0, shards=2))
    res = issuer.issue_many(cid, [(f"u{i}", f"r{i}") for i in range(6)])
    assert reasons(res) == {"issued": 4, "budget_exhausted": 2}
    assert issuer.status(cid)["budget_used"] == 20.0


def test_validity_window(issuer, cid):
    issuer.create_campaign(Campaign(cid, stock=5, start=1_000.0, end=2_000.0))
    assert issuer.issue(cid, "u1", "r1", now=999.0).reason == "not_started"
    assert issuer.issue(cid, "u1", "r2", now=2_000.0).reason == "expired"
    assert issuer.issue(cid, "u1", "r3", now=1_500.0).issued
    # a transient denial is not remembered: the same request succeeds once the sale opens
    assert issuer.issue(cid, "u2", "r4", now=10.0).reason == "not_started"
    assert issuer.issue(cid, "u2", "r4", now=1_000.0).issued


def test_pause_and_resume(issuer, cid):
    issuer.create_campaign(Campaign(cid, stock=5, shards=2))
    issuer.pause(cid)
    assert issuer.issue(cid, "u1", "r1").reason == "paused"
    assert issuer.status(cid)["paused"]
    issuer.resume(cid)
    assert issuer.issue(cid, "u1", "r1").issued


def test_eligibility_hook(issuer, cid):
    issuer.create_campaign(Campaign(cid, stock=5, eligibility=lambda u: u.startswith("vip")))
    assert issuer.issue(cid, "vip-1", "r1").issued
    assert issuer.issue(cid, "guest-1", "r2").reason == "ineligible"


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, None, 42, "new\nline", "a|b"])
def test_malformed_user_ids_are_refused_before_redis(issuer, cid, bad):
    issuer.create_campaign(Campaign(cid, stock=5))
    with pytest.raises(ValidationError, match="user_id"):
        issuer.issue_many(cid, [("ok-user", "r1"), (bad, "r2")])
    # nothing of the batch was applied, not even the good request
    assert issuer.status(cid)["issued"] == 0


def test_unknown_campaign(issuer):
    with pytest.raises(NotFoundError, match="nope"):
        issuer.issue("nope", "u1", "r1")
    with pytest.raises(NotFoundError):
        issuer.status("nope")


def test_campaign_ids_are_immutable(issuer, cid):
    issuer.create_campaign(Campaign(cid, stock=5))
    issuer.create_campaign(Campaign(cid, stock=5))  # same definition: fine
    with pytest.raises(ValidationError, match="already exists"):
        issuer.create_campaign(Campaign(cid, stock=6))


def test_redis_unreachable_leaves_no_partial_state(ledger, ns, cid):
    dead = redis.Redis(port=1, socket_connect_timeout=0.2, decode_responses=True)
    with pytest.raises(ServiceUnavailableError, match="Redis"):
        CouponIssuer(redis=dead, ledger=ledger, namespace=ns)
    with pytest.raises(ServiceUnavailableError, match="Redis"):
        CouponIssuer(redis="redis://127.0.0.1:1/0", ledger=ledger, namespace=ns)
    assert ledger.campaign_ids() == []


def test_sharded_fallback_spends_every_shard_without_duplicates(issuer, cid):
    shards = 4
    issuer.create_campaign(Campaign(cid, stock=8, shards=shards))
    # eight users whose home is shard 0: two from home stock, six through fallback
    users = [u for u in (f"user{i}" for i in range(1000)) if home_shard(u, shards) == 0][:9]
    res = issuer.issue_many(cid, [(u, f"r-{u}") for u in users[:8]])
    assert all(r.issued for r in res), reasons(res)
    assert Counter(r.shard for r in res) == {0: 2, 1: 2, 2: 2, 3: 2}
    assert issuer.issue(cid, users[8], "r-last").reason == "out_of_stock"
    # retries replay, second requests are duplicates
    assert issuer.issue_many(cid, [(u, f"r-{u}") for u in users[:8]]) == res
    assert reasons(issuer.issue_many(cid, [(u, f"again-{u}") for u in users[:8]])) == {
        "duplicate": 8
    }
    st = issuer.status(cid)
    assert (st["issued"], st["remaining"], st["pending"], st["ledger_issued"]) == (8, 0, 0, 8)


def _open_attempt(issuer, cid, user, rid, home):
    """Run only the first step of the fallback protocol, as a client that then dies."""
    keys = issuer._keys(cid, home)
    reply = issuer._run(
        [
            (
                [
                    keys["meta"],
                    keys["claims"],
                    keys["outbox"],
                    keys["pend"],
                    *issuer._req_keys(cid, home),
                ],
                ["issue", "1e9", 3600, home, "1", "", "", "", user, rid],
            )
        ]
    )[0]
    assert reply.startswith("F|1|")


def test_interrupted_fallback_is_resumed_by_a_retry(issuer, cid):
    issuer.create_campaign(Campaign(cid, stock=2, shards=2))
    home0 = [u for u in (f"p{i}" for i in range(100)) if home_shard(u, 2) == 0]
    assert issuer.issue(cid, home0[0], "a").shard == 0  # shard 0 is now empty
    _open_attempt(issuer, cid, home0[1], "b", 0)
    assert issuer.status(cid)["pending"] == 1
    # the claim is held: another request of this user cannot start a second attempt
    assert issuer.issue(cid, home0[1], "other").reason == "duplicate"
    r = issuer.issue(cid, home0[1], "b")  # the client's retry resumes the attempt
    assert r.issued
    assert r.shard == 1
    assert issuer.status(cid)["pending"] == 0
    assert issuer.ledger.count(cid) == 2


def test_reconcile_fences_and_releases_an_abandoned_attempt(issuer, cid):
    issuer.create_campaign(Campaign(cid, stock=3, shards=2))
    home0 = [u for u in (f"p{i}" for i in range(100)) if home_shard(u, 2) == 0]
    home1 = [u for u in (f"q{i}" for i in range(100)) if home_shard(u, 2) == 1]
    issuer.issue_many(cid, [(home0[0], "a"), (home0[1], "b")])  # shard 0 (stock 2) empty
    _open_attempt(issuer, cid, home0[2], "c", 0)
    report = reconcile(cid, issuer=issuer)
    assert (report.pending_confirmed, report.pending_released) == (0, 1)
    # the released user may try again and gets the last coupon on shard 1
    r = issuer.issue(cid, home0[2], "c2")
    assert r.issued
    assert r.shard == 1
    assert issuer.issue(cid, home1[0], "d").reason == "out_of_stock"
    assert issuer.ledger.count(cid) == 3


def test_outbox_mode_drains_and_the_backlog_bound_stops_issuance(redis_client, ledger, ns, cid):
    iss = CouponIssuer(redis=redis_client, ledger=ledger, namespace=ns, durability="outbox")
    iss.create_campaign(Campaign(cid, stock=100, max_backlog=5))
    res = iss.issue_many(cid, [(f"u{i}", f"r{i}") for i in range(8)])
    # nothing drains the outbox (as if the ledger were down): at most 5 unrecorded coupons
    assert reasons(res) == {"issued": 5, "ledger_backlog": 3}
    assert res[-1].transient
    assert ledger.count(cid) == 0
    assert iss.status(cid)["outbox_backlog"] == 5
    assert iss.drain(cid) == 5
    assert iss.drain(cid) == 0
    assert ledger.count(cid) == 5
    assert reasons(iss.issue_many(cid, [(f"u{i}", f"r{i}") for i in range(8)])) == {"issued": 8}


def test_reconcile_rebuilds_redis_after_state_loss(issuer, redis_client, ns, cid):
    issuer.create_campaign(Campaign(cid, stock=10, shards=3, per_user_limit=1))
    issuer.issue_many(cid, [(f"u{i}", f"r{i}") for i in range(6)])
    for key in redis_client.scan_iter(match=f"{ns}:*"):  # Redis forgets everything
        redis_client.delete(key)
    assert issuer.issue(cid, "u0", "again").reason == "not_ready"
    report = reconcile(cid, issuer=issuer)
    assert report.redis_was_empty
    assert report.ledger_issued == 6
    assert report.remaining_after == 4
    assert not report.consistent
    assert issuer.issue(cid, "u0", "again").reason == "duplicate"
    res = issuer.issue_many(cid, [(f"n{i}", f"n{i}") for i in range(6)])
    assert reasons(res) == {"issued": 4, "out_of_stock": 2}
    assert issuer.ledger.count(cid) == 10
    assert reconcile(cid, issuer=issuer).consistent


def test_prededuction_and_stranded_stock(redis_client, ledger, ns, cid):
    a = CouponIssuer(redis=redis_client, ledger=ledger, namespace=ns)
    b = CouponIssuer(redis=redis_client, ledger=ledger, namespace=ns)
    a.create_campaign(Campaign(cid, stock=40, shards=2, prededuct_chunk=10))
    assert reasons(a.issue_many(cid, [(f"a{i}", f"a{i}") for i in range(3)])) == {"issued": 3}
    assert reasons(b.issue_many(cid, [(f"b{i}", f"b{i}") for i in range(3)])) == {"issued": 3}
    st = a.status(cid)
    assert st["leased_outstanding"] == 14
    assert st["remaining"] == 20
    # process b "crashes" holding 7 leased coupons; a returns its unused 7 on close
    a.close()
    assert a.status(cid)["remaining"] == 27
    report = reconcile(cid, issuer=a)
    assert report.stranded_recovered == 7
    assert report.remaining_after == 34
    # b's lease was revoked by the new epoch: it leases again instead of over-issuing
    res = b.issue_many(cid, [(f"c{i}", f"c{i}") for i in range(40)])
    assert reasons(res) == {"issued": 34, "out_of_stock": 6}
    b.close()
    assert ledger.count(cid) == 40
    assert reconcile(cid, issuer=a).consistent


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    stock=st.integers(1, 12),
    shards=st.integers(1, 4),
    limit=st.integers(1, 2),
    ops=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 15)), min_size=1, max_size=40),
    batch=st.integers(1, 8),
)
def test_property_never_over_issues_or_double_issues(
    redis_client, tmp_path_factory, stock, shards, limit, ops, batch
):
    import uuid

    shards = min(shards, stock)
    ns = f"test-h{uuid.uuid4().hex[:8]}"
    led = Ledger(f"sqlite:///{tmp_path_factory.mktemp('h') / 'l.db'}")
    iss = CouponIssuer(redis=redis_client, ledger=led, namespace=ns, batch_size=3)
    try:
        iss.create_campaign(Campaign("h", stock=stock, shards=shards, per_user_limit=limit))
        reqs = [(f"u{u}", f"r{r}-{u}") for u, r in ops]
        answers: dict[str, object] = {}
        for s in range(0, len(reqs), batch):
            for (_user, rid), res in zip(
                reqs[s : s + batch], iss.issue_many("h", reqs[s : s + batch])
            ):
                if rid in answers:
                    assert res == answers[rid]  # a request id always gets its first answer
                answers[rid] = res
        issued = [r for r in answers.values() if r.issued]
        per_user = Counter(r.user_id for r in issued)
        distinct_wanting = Counter()
        for u, _ in {(u, rid) for u, rid in reqs}:
            distinct_wanting[u] += 1
        assert len(issued) <= stock
        assert all(n <= limit for n in per_user.values())
        # every shard is reachable through fallback, so nobody is turned away early
        want = sum(min(limit, n) for n in distinct_wanting.values())
        assert len(issued) == min(stock, want)
        st = iss.status("h")
        assert st["issued"] == st["ledger_issued"] == len(issued)
        assert st["remaining"] == stock - len(issued)
        assert st["pending"] == 0
    finally:
        led.dispose()
        for key in redis_client.scan_iter(match=f"{ns}:*"):
            redis_client.delete(key)


def test_recorded_outbox_entries_are_deleted_with_the_next_call(redis_client, ledger, ns, cid):
    """Ledger mode: XDEL of recorded entries rides on the next pipeline (one round trip)."""
    iss = CouponIssuer(redis=redis_client, ledger=ledger, namespace=ns)
    iss.create_campaign(Campaign(cid, stock=100))
    outbox = iss._keys(cid, 0)["outbox"]
    assert reasons(iss.issue_many(cid, [(f"u{i}", f"r{i}") for i in range(4)])) == {"issued": 4}
    assert ledger.count(cid) == 4
    assert redis_client.xlen(outbox) == 4  # recorded; deletion waits for the next call
    assert iss.issue(cid, "u9", "r9").issued
    assert redis_client.xlen(outbox) == 1  # the four went with this call; u9's waits
    assert iss.status(cid)["outbox_backlog"] == 0  # status flushes pending deletions
    # a drain meanwhile re-inserts nothing: the ledger ignores rows it already holds
    assert iss.drain(cid) == 0
    assert ledger.count(cid) == 5
