"""The sharded issuer on a real Redis Cluster: 3 masters with 1 replica each, on loopback.

The cluster is started by the test from ``redis-server`` (see ``cluster.py``); a master is
SIGKILLed mid-sale, its replica takes over, and ``reconcile`` restores exact counts.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import redis
from redis.cluster import RedisCluster

from mktlab.coupons import Campaign, CouponIssuer, Ledger, get_redis, home_shard
from mktlab.coupons.connection import connection_url
from mktlab.coupons.simulate import SimulationConfig, simulate
from mktlab.errors import ConfigError, ServiceUnavailableError

from .cluster import MISSING, LocalCluster, cluster_binaries
from .conftest import RedisProcess, free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(cluster_binaries() is None, reason=MISSING),
]

SHARD_KEYS = ("meta", "claims", "outbox", "pend", "takes")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """3 masters x 1 replica, shared by the tests that leave it healthy."""
    with LocalCluster(tmp_path_factory.mktemp("cluster"), masters=3, replicas=1) as lc:
        yield lc


def test_the_fixture_is_three_masters_with_a_replica_each(cluster):
    nodes = cluster.nodes()
    masters = [n for n in nodes if n["role"] == "master"]
    assert len(masters) == 3
    assert sum(n["slots"] for n in masters) == 16384
    for m in masters:
        assert cluster.replica_of(m["port"]) is not None


def test_a_campaigns_shards_land_on_different_masters(cluster, ledger):
    rc = get_redis(cluster.url)
    assert isinstance(rc, RedisCluster)
    iss = CouponIssuer(redis=rc, ledger=ledger, namespace="clu")
    cid = "cluster-sale"
    shards = 6
    iss.create_campaign(Campaign(cid, stock=60, shards=shards))
    owner = {}
    for k in range(shards):
        keys = [*iss._keys(cid, k).values(), *iss._req_keys(cid, k)]
        # every key one script call touches hashes to one slot (no CROSSSLOT)
        slots = {rc.keyslot(key) for key in keys}
        assert len(slots) == 1, keys
        owner[k] = cluster.master_of(keys[0])
    # shard tags are spread over the slot space: two shards per master of three
    assert sorted(Counter(owner.values()).values()) == [2, 2, 2]
    assert set(owner.values()) == set(cluster.master_ports())
    # the state really lives on that master: its own DBSIZE-free check, HGET on the node
    for k, port in owner.items():
        node = redis.Redis(port=port, decode_responses=True)
        assert node.hget(iss._keys(cid, k)["meta"], "shard") == str(k)
        node.close()
    # all requests from users of one home shard: the fallback crosses masters
    users = [u for u in (f"user{i}" for i in range(5000)) if home_shard(u, shards) == 2][:70]
    res = iss.issue_many(cid, [(u, f"r-{u}") for u in users])
    assert Counter(r.status for r in res) == {"issued": 60, "denied": 10}
    assert len({r.shard for r in res if r.issued}) == shards
    assert iss.issue_many(cid, [(u, f"r-{u}") for u in users]) == res  # replayed, not re-decided
    st = iss.status(cid)
    assert (st["issued"], st["remaining"], st["pending"], st["ledger_issued"]) == (60, 0, 0, 60)
    assert iss.reconcile(cid).consistent
    iss.close()


def test_multi_process_flash_sale_on_cluster(cluster, tmp_path):
    # tests/coupons/test_load.py's flash sale, smaller: demand above stock, duplicates
    cfg = SimulationConfig(
        stock=8_000,
        n_requests=4 * 6_000,
        duplicate_rate=0.10,
        retry_rate=0.02,
        workers=4,
        shards=6,
        batch_size=256,
        arrival="herd",
        namespace="clusim",
        seed=11,
    )
    report = simulate(cfg, redis=cluster.url, ledger=f"sqlite:///{tmp_path / 'l.db'}")
    assert report.distinct_users > cfg.stock
    assert report.issued == report.ledger_issued == report.redis_issued == cfg.stock
    assert report.duplicates == 0
    assert report.over_issued == 0
    assert report.gave_up == 0
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    rows = ledger.rows(report.campaign_id)
    assert rows["user_id"].is_unique
    seen = report.frame[report.frame["status"] == "issued"].drop_duplicates("user_id")
    assert dict(zip(seen["user_id"], seen["coupon_code"])) == dict(
        zip(rows["user_id"], rows["coupon_code"])
    )
    assert set(report.rejects) <= {"duplicate", "out_of_stock"}
    ledger.dispose()


def test_master_killed_mid_sale_fails_over_and_reconcile_restores_exact_counts(tmp_path):
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    cid = "failover-sale"
    cfg = SimulationConfig(
        stock=3_000,
        n_requests=10_000,
        rate=2_500.0,  # open loop over ~4 s, so the kill lands mid-sale
        arrival="steady",
        workers=2,
        shards=6,
        batch_size=64,
        campaign_id=cid,
        namespace="fo",
        give_up_after=60.0,
        seed=5,
    )
    with LocalCluster(tmp_path / "cluster", masters=3, replicas=1, node_timeout_ms=1000) as lc:
        out: dict = {}

        def run():
            try:
                out["r"] = simulate(cfg, redis=lc.url, ledger=ledger_url)
            except BaseException as exc:  # surfaced by the assertions below
                out["error"] = exc

        runner = threading.Thread(target=run)
        runner.start()
        ledger = Ledger(ledger_url)
        try:
            deadline = time.time() + 60
            while time.time() < deadline and "error" not in out:
                try:
                    if ledger.count(cid) >= 500:
                        break
                except Exception:  # the campaign table may not exist yet
                    pass
                time.sleep(0.02)
            assert "error" not in out, out.get("error")
            before = ledger.count(cid)
            assert 0 < before < cfg.stock
            probe = CouponIssuer(redis=lc.url, ledger=ledger, namespace="fo")
            victim = lc.master_of(probe._keys(cid, 0)["meta"])
            probe.close()
            lc.kill(victim)  # SIGKILL the master of shard 0 mid-sale
            promoted = lc.wait_failover(victim)
            assert promoted != victim
            assert victim not in lc.master_ports()
            runner.join(timeout=120)
            assert not runner.is_alive()
            assert "error" not in out, out.get("error")
            sim = out["r"]
            assert sim.gave_up == 0
            # issuance went on after the failover (redis-py re-reads the slot map and
            # retries; what it cannot hide reaches the workers as retryable errors)
            assert before < sim.ledger_issued
            report = CouponIssuer(redis=lc.url, ledger=ledger, namespace="fo").reconcile(cid)
            rows = ledger.rows(cid)
            assert len(rows) == cfg.stock, (sim.rejects, report.to_dict(), sim.errors)
            assert rows["user_id"].is_unique  # nobody twice
            # every coupon a client was told about is in the ledger, under that code
            told = sim.frame[sim.frame["status"] == "issued"]
            assert (told.groupby("user_id")["coupon_code"].nunique() == 1).all()  # retries replay
            told = told.drop_duplicates("user_id")
            assert (
                dict(zip(told["user_id"], told["coupon_code"])).items()
                <= dict(zip(rows["user_id"], rows["coupon_code"])).items()
            )
            assert sim.duplicates == 0
            assert sim.over_issued == 0
            final = CouponIssuer(redis=lc.url, ledger=ledger, namespace="fo")
            again = final.reconcile(cid)
            assert again.consistent, again.to_dict()
            st = final.status(cid)
            assert (st["issued"], st["ledger_issued"], st["remaining"]) == (cfg.stock,) * 2 + (0,)
            final.close()
        finally:
            runner.join(timeout=120)
            ledger.dispose()


def test_a_coupon_the_replica_lacks_is_never_answered_so_a_failover_cannot_lose_it(
    tmp_path, ledger
):
    # The replica is frozen and its link cut, so what the master decides next exists on
    # the master alone; then the master is SIGKILLed and the replica takes over. Answering
    # those decisions would lose them in the failover and hand the same users a second
    # coupon: the WAIT for the replica refuses to answer, and the retry decides once.
    with LocalCluster(tmp_path / "cluster", masters=3, replicas=1) as lc:
        iss = CouponIssuer(redis=lc.url, ledger=ledger, namespace="cut", replica_ack_timeout=0.5)
        cid = "cut-sale"
        iss.create_campaign(Campaign(cid, stock=50, shards=1))
        master = lc.master_of(iss._keys(cid, 0)["meta"])
        replica = lc.replica_of(master)
        users = [(f"cut{i}", f"a-{i}") for i in range(5)]
        lc.freeze(replica)
        node = redis.Redis(port=master)
        node.execute_command("CLIENT KILL TYPE replica")  # the frozen replica cannot reconnect
        node.close()
        with pytest.raises(ServiceUnavailableError, match="replica confirmation"):
            iss.issue_many(cid, users)
        assert ledger.count(cid) == 0  # nothing recorded, nobody told
        lc.kill(master)
        lc.thaw(replica)
        assert lc.wait_failover(master) == replica
        after = CouponIssuer(redis=lc.url, ledger=ledger, namespace="cut")
        first = after.issue_many(cid, users)  # the client retries the same request ids
        assert all(r.issued for r in first)
        again = after.issue_many(cid, [(u, f"b-{u}") for u, _ in users])  # new request ids
        assert [r.reason for r in again] == ["duplicate"] * len(users)
        rows = ledger.rows(cid)
        assert dict(zip(rows["user_id"], rows["coupon_code"])) == {
            r.user_id: r.coupon_code for r in first
        }
        assert after.status(cid)["issued"] == len(rows) == len(users)
        iss.close()
        after.close()


def test_a_cluster_url_that_does_not_answer_is_refused_before_issuing(ledger):
    url = f"redis+cluster://127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnavailableError, match="does not answer"):
        get_redis(url)
    with pytest.raises(ServiceUnavailableError, match="does not answer"):
        CouponIssuer(redis=url, ledger=ledger, namespace="nobody")
    assert ledger.campaign_ids() == []


def test_a_cluster_url_may_list_several_nodes_and_a_dead_one_is_skipped(cluster):
    dead = f"127.0.0.1:{free_port()}"
    rc = get_redis(f"redis+cluster://{dead},127.0.0.1:{cluster.alive()[-1]}")
    assert len(rc.get_primaries()) == 3
    again = get_redis(connection_url(rc))  # what worker processes are handed: every node
    assert {n.port for n in again.get_nodes()} == set(cluster.alive())
    rc.close()
    again.close()


def test_a_cluster_without_full_slot_coverage_is_refused_before_issuing(tmp_path, ledger):
    node = RedisProcess(
        tmp_path / "half", extra=("--cluster-enabled", "yes", "--cluster-config-file", "n.conf")
    ).start()
    try:
        c = redis.Redis(port=node.port)
        c.execute_command("CLUSTER ADDSLOTSRANGE", 0, 8191)  # half the key space
        deadline = time.time() + 10
        while int(c.cluster("info")["cluster_slots_assigned"]) != 8192:
            assert time.time() < deadline
            time.sleep(0.05)
        c.close()
        url = f"redis+cluster://127.0.0.1:{node.port}"
        with pytest.raises(ConfigError, match="8192 of 16384"):
            get_redis(url)
        with pytest.raises(ConfigError, match="does not cover every hash slot"):
            CouponIssuer(redis=url, ledger=ledger, namespace="half")
        assert ledger.campaign_ids() == []
    finally:
        node.stop()


def test_a_cluster_url_at_a_plain_redis_says_so(tmp_path):
    node = RedisProcess(tmp_path / "plain").start()
    try:
        with pytest.raises(ConfigError, match="without cluster mode"):
            get_redis(f"redis+cluster://127.0.0.1:{node.port}")
    finally:
        node.stop()
