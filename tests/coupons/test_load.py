"""Correctness under load and under a Redis crash (real servers, several processes)."""

from __future__ import annotations

import threading
import time

import pytest

from mktlab.coupons import CouponIssuer, Ledger
from mktlab.coupons.connection import connection_url
from mktlab.coupons.simulate import SimulationConfig, simulate

from .conftest import RedisProcess, redis_server_binary

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_eight_processes_fifty_thousand_requests_each(redis_client, ns, tmp_path):
    cfg = SimulationConfig(
        stock=100_000,
        n_requests=8 * 50_000,
        duplicate_rate=0.10,
        retry_rate=0.0,
        workers=8,
        shards=4,
        batch_size=1024,
        arrival="herd",
        namespace=ns,
        seed=11,
    )
    report = simulate(
        cfg, redis=connection_url(redis_client), ledger=f"sqlite:///{tmp_path / 'l.db'}"
    )
    assert report.distinct_users > cfg.stock
    assert report.issued == min(cfg.stock, report.distinct_users) == 100_000
    assert report.duplicates == 0
    assert report.over_issued == 0
    assert report.gave_up == 0
    assert report.ledger_issued == report.redis_issued == report.issued
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    rows = ledger.rows(report.campaign_id)
    assert rows["user_id"].is_unique
    assert len(rows) == 100_000
    # every coupon a client was told about is in the ledger, under the same code
    seen = report.frame[report.frame["status"] == "issued"].drop_duplicates("user_id")
    assert dict(zip(seen["user_id"], seen["coupon_code"])) == dict(
        zip(rows["user_id"], rows["coupon_code"])
    )
    assert set(report.rejects) <= {"duplicate", "out_of_stock"}
    ledger.dispose()


def test_redis_sigkill_mid_sale_then_restart_empty_and_reconcile(tmp_path):
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary to start (and kill) a server of our own")
    server = RedisProcess(tmp_path / "redis").start()
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    cid = "fault-sale"
    cfg = SimulationConfig(
        stock=3_000,
        n_requests=12_000,
        rate=3_000.0,  # open loop over ~4 s, so the crash lands mid-sale
        arrival="steady",
        workers=2,
        shards=4,
        batch_size=64,
        campaign_id=cid,
        namespace="fault",
        give_up_after=90.0,
        seed=5,
    )
    out: dict = {}

    def run():
        try:
            out["r"] = simulate(cfg, redis=server.url, ledger=ledger_url)
        except BaseException as exc:  # surfaced by the assertions below
            out["error"] = exc

    runner = threading.Thread(target=run)
    runner.start()
    ledger = Ledger(ledger_url)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and "error" not in out:
            try:
                if ledger.count(cid) >= 600:
                    break
            except Exception:  # the campaign table may not exist yet
                pass
            time.sleep(0.05)
        assert "error" not in out, out.get("error")
        before_crash = ledger.count(cid)
        assert 0 < before_crash < cfg.stock
        server.kill()  # SIGKILL: Redis loses everything, including unrecorded decisions
        time.sleep(0.5)
        server.start()  # empty: no RDB, no AOF
        report = CouponIssuer(redis=server.url, ledger=ledger, namespace="fault").reconcile(cid)
        assert report.redis_was_empty
        assert report.ledger_issued >= before_crash
        runner.join(timeout=240)
        assert not runner.is_alive()
        assert "error" not in out, out.get("error")
        sim = out["r"]
        rows = ledger.rows(cid)
        assert len(rows) <= cfg.stock
        assert rows["user_id"].is_unique  # no user twice
        # ledger complete: every coupon any client was told about is recorded
        told = sim.frame[sim.frame["status"] == "issued"]
        assert set(told["coupon_code"]) <= set(rows["coupon_code"])
        assert sim.gave_up == 0
        assert sim.duplicates == 0
        # demand exceeded stock, and the restart lost none of it for good
        assert len(rows) == cfg.stock, (sim.rejects, report.to_dict(), sim.errors)
        final = CouponIssuer(redis=server.url, ledger=ledger, namespace="fault").reconcile(cid)
        assert final.consistent
        assert final.ledger_issued == cfg.stock
    finally:
        runner.join(timeout=240)
        ledger.dispose()
        server.stop()
